"""Modes: what a run does, `python -m lab experiment=... mode=<name>`. Each is a class following the `Mode`
contract (lab.contracts), registered by name in the config's `modes` node (conf/config.yaml):

    modes:
      train: lab.modes.train.Train
      predict: lab.modes.predict.Predict
      ...

`mode` is a config group: `mode=<name>` picks `conf/mode/<name>.yaml`, which sets the key `mode` and holds that
mode's own settings (`predict:`, `explain:`, `attack:`, `compress:` for prune and export), so a run carries the
settings of its own mode only. A mode of one's own plugs in by configuration alone: a `mode/<name>.yaml` in one's
config folder (`--config-dir`) that sets `mode: <name>`, adds `modes.<name>: <package.module.Class>` and its
settings.
"""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig

from lab.contracts import Mode
from lab.errors import ConfigError


def mode_names(cfg: DictConfig) -> list[str]:
    """The modes the config registers."""
    return list(cfg.get("modes") or {})


def load_mode(cfg: DictConfig) -> Mode:
    """The Mode that `cfg.mode` names (a fresh instance); ConfigError naming the valid choices."""
    name, registered = cfg.get("mode"), cfg.get("modes") or {}
    if not isinstance(name, str) or name not in registered:
        raise ConfigError(f"mode={name!r} is not valid; valid choices: {', '.join(mode_names(cfg))} (the config's "
                          "`modes` node; a mode of your own: a mode/<name>.yaml in your --config-dir that sets `mode: <name>` and "
                          "`modes.<name>: <package.module.Class>`).")
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
