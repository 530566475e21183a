"""Modes: what a run does, `python -m lab experiment=... mode=<name>`. Each is a class following the `Mode`
contract (lab.contracts). `mode` is a config group: `mode=<name>` picks `conf/mode/<name>.yaml`, which sets the key
`mode`, names the mode's class in the `modes` node and holds the mode's own settings (`predict:`, `explain:`,
`attack:`, `compress:` for prune and export), so a run carries its own mode alone:

    mode: predict
    modes:
      predict: lab.modes.predict.Predict
    predict:
      batch_size: 256
      ...

A mode of one's own plugs in by configuration alone, the same way: a `mode/<name>.yaml` in one's config folder
(`--config-dir`).
"""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig

from lab.contracts import Mode
from lab.errors import ConfigError


def load_mode(cfg: DictConfig) -> Mode:
    """The Mode that `cfg.mode` names (a fresh instance); ConfigError naming the valid choices."""
    name, registered = cfg.get("mode"), cfg.get("modes") or {}
    if not isinstance(name, str) or name not in registered:
        from lab.validate import group_options

        raise ConfigError(f"mode={name!r} names no class: the config's `modes` node has no {name!r}. A mode's file, "
                          "mode/<name>.yaml (yours: in your --config-dir), sets `mode: <name>` and `modes.<name>: "
                          f"<package.module.Class>`; the lab's modes: {', '.join(group_options('mode'))}.")
    path = registered[name]
    try:
        cls = get_class(str(path))
    except Exception as e:
        raise ConfigError(f"modes.{name}={path!r} cannot be imported ({type(e).__name__}: {e}); name a class "
                          "that follows lab.contracts.Mode, as <package.module.Class>.") from None
    if not (isinstance(cls, type) and issubclass(cls, Mode)):
        raise ConfigError(f"modes.{name}={path!r} is not a lab.contracts.Mode subclass; a mode is a class with "
                          "run(runner, context, ckpt_path) (see lab.contracts.Mode).")
    return cls()
