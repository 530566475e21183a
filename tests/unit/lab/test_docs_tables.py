"""The docs' hand-written tables agree with conf/: the config-group table of docs/configuration.md lists every
option of each group, and each mode-settings row (`predict.batch_size | 256 | ...`) shows the default of its
conf/mode/<mode>.yaml."""

import re

import pytest
import yaml

from lab.paths import CONFIG_DIR, ROOT
from lab.resume import mode_settings
from lab.validate import group_options

ROW = re.compile(r"^\| (?P<first>[^|]+?) \| (?P<second>(?:[^|\\]|\\\|)+?) \|", flags=re.M)


def group_rows() -> list[tuple[str, set[str]]]:
    """(group, the options its row names) of docs/configuration.md's table."""
    out = []
    for m in ROW.finditer((ROOT / "docs/configuration.md").read_text()):
        groups = re.findall(r"`([\w/]+)`", m["first"])
        if not groups or m["first"].strip() == "group":
            continue
        options = set(re.findall(r"`([\w]+)`", m["second"]))
        out += [(g, options) for g in groups]
    return out


def settings_rows() -> list[tuple[str, str, str]]:
    """(file, key, default as written) of every docs table row whose key is a mode's setting."""
    out = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        for m in ROW.finditer(path.read_text()):
            key = m["first"].strip().strip("`")
            if key.split(".")[0] in mode_settings() and "." in key:
                out.append((path.name, key, m["second"].strip().strip("`")))
    return out


def test_the_tables_are_read():
    assert {g for g, _ in group_rows()} >= {"data", "model", "agent", "env", "mode", "trainer", "logger"}
    assert len(settings_rows()) >= 13


@pytest.mark.parametrize(("group", "options"), group_rows(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_of_a_group_is_listed(group, options):
    if group.startswith("hydra/"):  # Hydra's own plugins (basic, joblib, submitit_*) beside the lab's options
        assert set(group_options(group)) <= options
    else:
        assert options == set(group_options(group))


def default_of(key: str):
    node, name = key.split(".", 1)
    values = [yaml.safe_load(f.read_text())[node][name] for f in sorted((CONFIG_DIR / "mode").glob("*.yaml"))
              if name in (yaml.safe_load(f.read_text()).get(node) or {})]
    assert values, f"{key} is in no conf/mode/*.yaml"
    return values[0]


@pytest.mark.parametrize(("page", "key", "shown"), settings_rows())
def test_a_settings_row_shows_the_configured_default(page, key, shown):
    assert yaml.safe_load(shown) == default_of(key), f"docs/{page}: {key} shows {shown}"
