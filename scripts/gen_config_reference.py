"""The configuration reference of the docs, generated from conf/: one Markdown page per config group.

For every config group (a folder of conf/: agent, data, model, env, ...) it lists the group's options (its
YAML files, sub-groups such as model/backbone included), and for each option its defaults list and every key
it sets, as the command line writes it (`data.batch_size`), with the value in the file and the file's own
`#` comments. The docs build runs it (docs/hooks/config_reference.py), so the pages are never stale:

    python scripts/gen_config_reference.py                 # list the pages it would write
    python scripts/gen_config_reference.py -o site_ref/    # write them (one .md per group, and index.md)
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# What each group is for, shown at the top of its page (a group not named here gets no sentence).
GROUP_NOTES = {
    "agent": "RL agents of the `rl` family (the lab's PPO, DQN, SAC, and Stable-Baselines3's); each names its runner.",
    "callbacks": "Lightning callbacks: checkpoints, early stopping, learning-rate monitor, progress.",
    "data": "Data modules (images, sequences, tables, generated tasks) and their augmentations (`data/augment`).",
    "env": "Gymnasium environments of the `rl` family (`agents/common/envs.py` `EnvConfig`).",
    "experiment": "Presets: `python -m lab experiment=<name>`. Each starts from a family and overrides groups and keys.",
    "family": "What an experiment starts from: its config groups, its runner and `optimized_metric`.",
    "hparams_search": "Hyperparameter searches of the lab's Optuna sweeper, run with `-m`.",
    "hydra": "Hydra's own settings: output folders, the sweep summary callback, launchers and the Optuna sweeper.",
    "logger": "Experiment loggers: W&B, CSV, TensorBoard.",
    "mode": "What a run does (`mode=<name>`): each file sets `mode` and holds that mode's own settings; the classes are registered in `modes` (conf/config.yaml).",
    "model": "Models and their sub-groups (backbones, networks, optimizers, schedulers).",
    "paths": "Where data and logs go.",
    "trainer": "Lightning `Trainer` arguments (any of them can be set: `trainer.precision=bf16-mixed`).",
}


@dataclass
class Key:
    """One key an option sets: its dotted path, its value as written, and its comments."""

    path: str
    value: str | None  # None: a mapping (its keys follow)
    comment: str = ""


@dataclass
class Option:
    """One YAML file of a group."""

    group: str  # e.g. model/backbone
    name: str  # e.g. cnn
    file: Path
    package: str  # where its keys go: "" for _global_, else e.g. model.backbone
    header: str = ""
    defaults: list[tuple[str, str]] = field(default_factory=list)  # (entry, comment)
    keys: list[Key] = field(default_factory=list)


def split_comment(text: str) -> tuple[str, str]:
    """`value  # comment` -> (value, comment); a `#` inside quotes or not after a space is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1:].strip()
    return text.rstrip(), ""


KEY = re.compile(r"""^(?P<key>'[^']*'|"[^"]*"|[^\s#'"\-][^:]*?|-[^\s][^:]*?):(?:\s+(?P<rest>.*))?$""")


def header_comment(lines: list[str]) -> tuple[str, int]:
    """The comment lines a file starts with (less Hydra's `@package` line), and the index of the first other line."""
    header: list[str] = []
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        line = lines[i].strip().lstrip("#").strip()
        if not line.startswith("@package"):
            header.append(line)
        i += 1
    return " ".join(header).strip(), i


def parse_lines(text: str) -> tuple[str, list[tuple[list[str], str | None, str]], dict[str, list[tuple[str, str]]]]:
    """The file's header comment, each key as (path, raw value or None, comment), and each block list's items.

    A comment on the lines right above a key, or on a key's line, is that key's; a comment line indented under
    a key's inline comment continues it. Block scalars (`|`, `>`) are shown as their text's first line.
    """
    lines = text.splitlines()
    header, i = header_comment(lines)
    keys: list[tuple[list[str], str | None, str]] = []
    lists: dict[str, list[tuple[str, str]]] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings that enclose the current line
    pending: list[str] = []  # comment lines waiting for the next key
    last_inline = None  # (indent of the key, index in keys) of the last key with an inline comment
    block_indent = None  # inside a block scalar deeper than this indentation
    for line in lines[i:]:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped:
            pending, last_inline = [], None
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if last_inline is not None and indent > last_inline[0] and not pending:
                path, value, old = keys[last_inline[1]]
                keys[last_inline[1]] = (path, value, f"{old} {comment}".strip())
            elif not comment.startswith("@package"):
                pending.append(comment)
            continue
        if stripped.startswith("- ") or stripped == "-":
            while stack and stack[-1][0] > indent:
                stack.pop()
            if stack:
                item, comment = split_comment(stripped[1:].strip())
                lists.setdefault(".".join(k for _, k in stack), []).append((item, " ".join([*pending, comment]).strip()))
            pending, last_inline = [], None
            continue
        match = KEY.match(stripped)
        if not match:  # a continuation of a flow value: nothing to document on its own
            continue
        key = match["key"].strip("'\"")
        value, comment = split_comment(match["rest"] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        comment = " ".join([*pending, comment]).strip()
        pending = []
        if value in ("|", "|-", "|+", ">", ">-", ">+"):
            block_indent = indent
            value = "(text)"
        keys.append((path, value or None, comment))
        last_inline = (indent, len(keys) - 1) if match["rest"] and split_comment(match["rest"])[1] else None
        if not value:
            stack.append((indent, key))
    return header, keys, lists


def flow(value) -> str:
    """A value in YAML's one-line flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def leaves(node, prefix: list[str]):
    """(path, value) of every scalar or list under a loaded mapping, mappings too (value None), in file order."""
    for key, value in node.items():
        path = [*prefix, str(key)]
        if isinstance(value, dict) and value:
            yield path, None
            yield from leaves(value, path)
        else:
            yield path, value


def load_option(file: Path) -> Option:
    group = file.parent.relative_to(CONF).as_posix()
    group = "" if group == "." else group
    text = file.read_text()
    package_line = re.search(r"^#\s*@package\s+(\S+)", text, flags=re.M)
    package = package_line[1] if package_line else group.replace("/", ".")
    if package in ("_global_", "_here_") or not group and not package_line:
        package = ""
    elif package == "_group_":
        package = group.replace("/", ".")
    header, raw_keys, lists = parse_lines(text)
    data = yaml.safe_load(text) or {}
    raw = {".".join(path): (value, comment) for path, value, comment in raw_keys}
    option = Option(group=group, name=file.stem, file=file, package=package, header=header)
    for entry in data.get("defaults", []) or []:
        entry_text = flow(entry).strip("{}") if isinstance(entry, dict) else str(entry)
        comments = [c for item, c in lists.get("defaults", []) if c and _same_entry(item, entry)]
        option.defaults.append((entry_text, comments[0] if comments else ""))
    for path, value in leaves({k: v for k, v in data.items() if k != "defaults"}, []):
        dotted = ".".join(path)
        raw_value, comment = raw.get(dotted, (None, ""))
        if value is None and isinstance(_get(data, path), dict):
            shown = None
        elif isinstance(value, list) and dotted in lists:
            shown = flow(value)
            items = [f"{item}: {c}" for item, c in lists[dotted] if c]
            comment = "; ".join([comment, *items]).strip("; ")
        elif raw_value is not None and raw_value != "(text)":
            shown = raw_value
        elif raw_value == "(text)":
            shown = (str(value).splitlines() or [""])[0] + (" ..." if "\n" in str(value) else "")
        else:
            shown = flow(value)
        full = ".".join(p for p in [package, dotted] if p)
        option.keys.append(Key(full, shown, comment))
    return option


def _same_entry(item: str, entry) -> bool:
    if isinstance(entry, dict):
        key, value = next(iter(entry.items()))
        return bool(re.fullmatch(rf"{re.escape(str(key))}\s*:\s*{re.escape(str(value))}", item))
    return item.strip() == str(entry)


def _get(data, path):
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def groups(conf: Path = CONF) -> dict[str, list[Path]]:
    """Top-level group -> its YAML files (sub-groups' included); "config" for the primary config."""
    out: dict[str, list[Path]] = {"config": sorted(conf.glob("*.yaml"))}
    for folder in sorted(p for p in conf.iterdir() if p.is_dir()):
        files = sorted(folder.rglob("*.yaml"), key=lambda f: (f.parent != folder, f.parent.as_posix(), f.stem))
        if files:
            out[folder.name] = files
    return out


def escape(text: str) -> str:
    """Plain Markdown text: code spans kept, HTML-like and emphasis characters escaped (in a table cell)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
            continue
        part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        part = re.sub(r"([\\*_\[\]|`])", r"\\\1", part)
        out.append(part)
    return "".join(out)


def code(text: str) -> str:
    """`text` as a code span in a table cell."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_option(option: Option, heading: str = "##") -> str:
    rel = option.file.relative_to(ROOT).as_posix()
    title = f"{option.group}/{option.name}" if option.group else option.name
    out = [f"{heading} `{title}`", ""]
    where = f"`{rel}`"
    where += f", keys under `{option.package}`" if option.package else ", keys at the top level (`_global_`)"
    out += [where, ""]
    if option.header:
        out += [escape(option.header), ""]
    if option.defaults:
        out += ["Defaults list: " + ", ".join(
            code(entry) + (f" ({escape(comment)})" if comment else "") for entry, comment in option.defaults), ""]
    if option.keys:
        out += ["| key | default | comment |", "|---|---|---|"]
        for key in option.keys:
            value = "" if key.value is None else code(key.value)
            out.append(f"| {code(key.path)} | {value} | {escape(key.comment)} |")
        out.append("")
    return "\n".join(out)


def render_group(name: str, files: list[Path]) -> str:
    options = [load_option(f) for f in files]
    if name == "config":
        out = ["# Primary config (`conf/config.yaml`)", "",
               "The config every run starts from; its defaults list picks one option of each group.", ""]
        return "\n".join(out + [render_option(o) for o in options])
    out = [f"# `{name}` config group", ""]
    if name in GROUP_NOTES:
        out += [GROUP_NOTES[name], ""]
    by_group: dict[str, list[Option]] = {}
    for o in options:
        by_group.setdefault(o.group, []).append(o)
    out += ["| group | options | choose with |", "|---|---|---|"]
    for group, opts in by_group.items():
        names = ", ".join(f"[`{o.name}`](#{anchor(o)})" for o in opts)
        out.append(f"| `{group}` | {names} | `{group}=<option>` |")
    out += ["", "Generated from `conf/` when the docs are built (`scripts/gen_config_reference.py`): every key an "
            "option sets, as a command-line override writes it, with the value in its file and the file's comments.",
            ""]
    out += [render_option(o) for o in options]
    return "\n".join(out)


def anchor(option: Option) -> str:
    """The id Python-Markdown's toc gives the option's heading (`model/backbone/cnn` -> modelbackbonecnn)."""
    title = f"{option.group}/{option.name}"
    return re.sub(r"[^\w-]", "", title.lower().replace(" ", "-"))


def render_index(all_groups: dict[str, list[Path]]) -> str:
    out = ["# Configuration reference", "",
           "Every config group of `conf/`, its options and the keys each option sets, with their defaults and "
           "the YAML files' own comments. These pages are generated from `conf/` at every docs build "
           "(`scripts/gen_config_reference.py`, run by `docs/hooks/config_reference.py`), so they match the "
           "checkout. See [Config groups](../../configuration.md) for how the groups fit together.", "",
           "| group | options | what for |", "|---|---|---|"]
    for name, files in all_groups.items():
        count = f"{len(files)} file{'s' if len(files) != 1 else ''}"
        link = "config.md" if name == "config" else f"{name}.md"
        note = "the primary config: defaults of every group, top-level keys" if name == "config" else \
            GROUP_NOTES.get(name, "")
        label = "`config.yaml`" if name == "config" else f"`{name}`"
        out.append(f"| [{label}]({link}) | {count} | {escape(note) if '`' not in note else note} |")
    return "\n".join(out) + "\n"


def pages(conf: Path = CONF) -> dict[str, str]:
    """Page name (relative to the reference folder) -> Markdown: index.md and one page per group."""
    all_groups = groups(conf)
    out = {"index.md": render_index(all_groups)}
    for name, files in all_groups.items():
        out[f"{name}.md"] = render_group(name, files)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the pages into this folder")
    args = parser.parse_args()
    for name, text in pages().items():
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / name).write_text(text)
        print(f"{name}: {len(text.splitlines())} lines")


if __name__ == "__main__":
    main()
