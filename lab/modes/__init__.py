"""Modes that work on a trained checkpoint: `python -m lab experiment=... mode=<name> ckpt_path=...`.

`train` and `eval` are lab.run's own. Every other mode is a module here, named in CHECKPOINT_MODES, that
follows the `CheckpointMode` contract (lab.modes.base): `check_settings(cfg)` before anything is built,
`check(runner, cfg)` once the runner has built its pieces (before any output is written), and
`run(runner, context, ckpt_path)` returning the mode's metrics. Its settings live in the config node of the
same name (`predict:`, `explain:`, `attack:`; `compress:` for prune and export).
"""

from __future__ import annotations

import importlib

from lab.modes.base import CheckpointMode

CHECKPOINT_MODES: dict[str, str] = {
    "prune": "lab.modes.compress",
    "export": "lab.modes.compress",
    "predict": "lab.modes.predict",
    "explain": "lab.modes.explain",
    "attack": "lab.modes.attack",
}
MODES = ("train", "eval", *CHECKPOINT_MODES)


def checkpoint_mode(name: str) -> CheckpointMode | None:
    """The module of a checkpoint mode (None for train and eval)."""
    path = CHECKPOINT_MODES.get(name)
    return importlib.import_module(path) if path else None  # type: ignore[return-value]
