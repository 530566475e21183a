"""MkDocs hooks of the docs build (mkdocs.yml `hooks:`).

- The configuration reference, `reference/config/*.md`, is generated from conf/ by
  scripts/gen_config_reference.py at every build (never written into docs/), and its nav section lists one page
  per config group, whatever groups conf/ has.
- Figures that live beside the scripts that make them (scripts/results/*.png) are linked from the pages as
  `../scripts/results/<file>` (so the Markdown reads on GitHub) and copied into the site as assets/results/.
- In table rows, `\\|` inside a code span is GitHub's way to write a pipe there; Python-Markdown already keeps
  pipes in code spans out of the cell split, so the backslash is dropped for the site.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = "reference/config"
RESULTS = ROOT / "scripts" / "results"


@cache
def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "scripts" / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _expand(nav, index: str, section: list) -> bool:
    """Replace the nav entry whose page is `index` with a section of `section`'s pages (in place)."""
    for i, entry in enumerate(nav):
        if isinstance(entry, dict):
            (title, value), = entry.items()
            if value == index:
                nav[i] = {title: section}
                return True
            if isinstance(value, list) and _expand(value, index, section):
                return True
        elif isinstance(entry, list) and _expand(entry, index, section):
            return True
    return False


def on_config(config):
    index = f"{REFERENCE}/index.md"
    names = list(_generator().groups())
    section = [index] + [{("config.yaml" if n == "config" else n): f"{REFERENCE}/{n}.md"} for n in names]
    if config.nav is not None and not _expand(config.nav, index, section):
        raise ValueError(f"mkdocs.yml's nav has no entry for {index}, where the configuration reference goes")
    return config


def on_files(files, config):
    _generator.cache_clear()  # `mkdocs serve`: the pages of conf/ as it is now
    for name, text in _generator().pages().items():
        files.append(File.generated(config, f"{REFERENCE}/{name}", content=text))
    for image in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"assets/results/{image.name}", abs_src_path=str(image)))
    return files


RESULT_LINK = re.compile(r"\]\((?:\.\./)+scripts/results/([^)\s]+)\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")
    markdown = RESULT_LINK.sub(lambda m: f"]({'../' * depth}assets/results/{m[1]})", markdown)
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("|") and "\\|" in line:
            lines[i] = CODE_SPAN.sub(lambda m: m[1] + m[2].replace("\\|", "|") + m[1], line)
    return "\n".join(lines)
