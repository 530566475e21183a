"""Where the checkout lives: `conf/`, `data/` and `logs/` are found from it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "conf"


def default_data_dir() -> Path:
    return ROOT / "data"
