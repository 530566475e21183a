"""Every `python -m lab` command of the README composes from the real conf/ and passes validation."""

import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from lab.paths import CONFIG_DIR, ROOT
from lab.validate import validate


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```\n(.*?)^```", text, flags=re.M | re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("python -m lab ") and "--config-dir" not in line]


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


def test_the_readme_has_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_composes_and_validates(command):
    overrides = overrides_of(command)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/unused"
    validate(cfg)  # resume=true etc. need earlier runs, which the smoke tests cover
