"""Every `python -m lab` command of the README and of the docs (docs/**/*.md) composes from the real conf/ and
passes validation."""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from lab.paths import CONFIG_DIR, ROOT
from lab.validate import validate

# The README had this many commands (80, 75 distinct) before its reference moved into docs/: the move lost none.
COMMANDS_BEFORE_THE_DOCS = 80


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fenced_lines(path: Path) -> list[str]:
    """The lines of the file's fenced code blocks (any language tag), comments cut."""
    blocks = re.findall(r"^```[\w+-]*\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    return [re.split(r"\s+#", line)[0].strip() for block in blocks for line in block.splitlines()]


def commands_of(path: Path) -> list[str]:
    """The `python -m lab ...` lines of the file's fenced code blocks."""
    return [line for line in fenced_lines(path) if line.startswith("python -m lab ") and "--config-dir" not in line]


def doc_commands() -> list[tuple[str, str]]:
    """(file, command) for every command of every page, in order; duplicates kept."""
    return [(str(path.relative_to(ROOT)), c) for path in doc_files() for c in commands_of(path)]


def distinct_commands() -> dict[str, str]:
    """command -> the first file that shows it."""
    out: dict[str, str] = {}
    for where, command in doc_commands():
        out.setdefault(command, where)
    return out


def overrides_of(command: str) -> list[str]:
    """The command's overrides as one job of it: the first value of each sweep; placeholders filled."""
    args = [a for a in shlex.split(command)[3:] if a not in ("-m", "--help")]
    out = []
    for a in args:
        key, _, value = a.partition("=")
        if "<" in value or value == "DIR":  # ckpt_path=<path>, data.root=DIR: a file the reader supplies
            value = str(ROOT / "README.md") if key == "ckpt_path" else str(ROOT / "conf")
        if value.startswith("range("):  # Hydra's range sweep: its first value (the start, 0 when only a stop)
            value = value[len("range("):].split(",")[0] if "," in value else "0"
        if "," in value and not value.startswith("["):
            value = value.split(",")[0]
        out.append(f"{key}={value}")
    return out


def test_the_docs_keep_every_command_the_readme_had():
    commands = doc_commands()
    assert len(commands) >= COMMANDS_BEFORE_THE_DOCS, f"{len(commands)} commands in README.md and docs/"
    assert sum(where != "README.md" for where, _ in commands) >= COMMANDS_BEFORE_THE_DOCS  # docs/ alone
    assert any(where == "README.md" for where, _ in commands)  # the README keeps a usage block


def test_fenced_blocks_with_a_language_tag_count(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\npython -m lab experiment=cnn_mnist  # one\n```\n\n```\npython -m lab -m seed=0,1\n```\n")
    assert commands_of(page) == ["python -m lab experiment=cnn_mnist", "python -m lab -m seed=0,1"]


@pytest.mark.parametrize(("where", "command"), [(w, c) for c, w in distinct_commands().items()])
def test_doc_command_composes_and_validates(where, command):
    overrides = overrides_of(command)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/unused"
    validate(cfg)  # resume=true etc. need earlier runs, which the smoke tests cover


def test_the_config_reference_lists_every_option_and_key():
    """scripts/gen_config_reference.py, which the docs build runs: a page per group, every YAML file of conf/ on it,
    keys with their values and comments."""
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "scripts" / "gen_config_reference.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen
    spec.loader.exec_module(gen)
    pages = gen.pages(CONFIG_DIR)
    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    assert {f"{g}.md" for g in groups} | {"index.md", "config.md"} == set(pages)
    text = "\n".join(pages.values())
    for file in CONFIG_DIR.rglob("*.yaml"):
        assert f"`{file.relative_to(ROOT).as_posix()}`" in text
    assert re.search(r"^\| `optuna\.storage` \| `null` \|", pages["config.md"], flags=re.M)  # the primary config's
    assert re.search(r"^\| `predict\.batch_size` \| `\d+` \| \w", pages["mode.md"], flags=re.M)  # value, comment
