"""Checks on a composed config that must fail before anything is built or trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from lab.checks import check_choice, check_number
from lab.errors import ConfigError, building
from lab.paths import CONFIG_DIR


def group_options(group: str) -> list[str]:
    """The valid choices for `group=<name>` (e.g. 'model/optimizer'): the lab's and, inside a Hydra run,
    those of every config folder on its search path (a user's `--config-dir`, `hydra.searchpath`)."""
    folders = [CONFIG_DIR]
    if HydraConfig.initialized():
        folders += [Path(s.path) for s in HydraConfig.get().runtime.config_sources if s.schema == "file"]
    return sorted({p.stem for folder in folders for p in (folder / group).glob("*.yaml")})


def check_used(cfg: DictConfig, runner: Any) -> None:
    """A runner with its own loop uses no `trainer` or `callbacks` settings (but `runner.uses_trainer_keys`):
    overriding one on the command line is an error, not silently ignored."""
    if runner.uses_trainer or not HydraConfig.initialized():
        return
    used = {f"trainer.{k}" for k in runner.uses_trainer_keys}
    keys = {o: o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task}
    unused = [o for o, k in keys.items() if k.split(".")[0].split("/")[0] in ("trainer", "callbacks") and k not in used]
    if unused:
        raise ConfigError(f"{', '.join(unused)}: `{cfg.runner._target_}` runs its own training loop and uses no "
                          f"trainer or callbacks settings (but {', '.join(sorted(used)) or 'none'}); remove the override.")


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _check_choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    with building(key):
        check_choice(key, _get(cfg, key), choices)


def _check_number(cfg: DictConfig, key: str, minimum: float, integer: bool = False, strict: bool = True) -> None:
    value = _get(cfg, key)
    if value is not None:
        with building(key):
            check_number(key, value, minimum, integer, strict)


def _check_target(cfg: DictConfig, key: str, base: tuple[type, ...], group: str) -> None:
    node = _get(cfg, key)
    if node is None:
        return
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    valid = f"choose one with `{group}=<name>`: {', '.join(group_options(group))}"
    try:
        cls = get_class(str(target))
    except Exception:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported; {valid}.") from None
    if not issubclass(cls, base):
        raise ConfigError(f"{key}._target_={target!r} is not a {' or '.join(b.__name__ for b in base)}; {valid}.")


def _check_optimizer(cfg: DictConfig, key: str) -> None:
    """Build the optimizer node on a dummy parameter, so its own checks (betas, momentum, eps, ...) fail
    now, naming the key, rather than when training starts."""
    node = _get(cfg, key)
    if not isinstance(node, DictConfig) or not node.get("_partial_"):
        return
    from lab.instantiate import instantiate

    factory = instantiate(node, key)
    try:
        factory([torch.nn.Parameter(torch.zeros(1))], **({} if "lr" in node else {"lr": 1e-3}))
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"Invalid config under `{key}`: {e}") from None


def optimizer_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """The keys of every optimizer node in the config: one named `optimizer` or `optimizer_<name>` (a GAN's
    optimizer_g and optimizer_d), at any depth (model.optimizer, agent.optimizer, ...); nothing is resolved."""
    keys = []
    for k in cfg.keys():
        key, node = f"{prefix}{k}", cfg._get_node(k)
        if key == "hydra" or not isinstance(node, DictConfig) or node._is_none():
            continue
        if str(k) == "optimizer" or str(k).startswith("optimizer_"):
            keys.append(key)
        else:
            keys += optimizer_keys(node, f"{key}.")
    return keys


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key, the value and the valid choices for the first problem found."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required and not set (`???` in its YAML); add "
                          f"{' '.join(k + '=<value>' for k in missing)}.")
    from lab.modes import load_mode

    mode = load_mode(cfg)
    _check_choice(cfg, "optimized_mode", ("max", "min"))
    if not isinstance(_get(cfg, "resume"), bool):
        raise ConfigError(f"resume={_get(cfg, 'resume')!r} is not valid; valid choices: true, false.")
    ckpt = _get(cfg, "ckpt_path")
    if mode.needs_checkpoint and not ckpt:
        raise ConfigError(f"mode={cfg.mode} needs ckpt_path=<path to a .ckpt file> (e.g. a run's "
                          "checkpoints/last.ckpt).")
    mode.check_settings(cfg)
    if ckpt and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt!r} is not a file; pass the path of a .ckpt from a run's checkpoints/ folder.")
    _check_number(cfg, "seed", 0, integer=True, strict=False)

    _check_number(cfg, "data.batch_size", 0, integer=True)
    _check_number(cfg, "data.eval_batch_size", 0, integer=True)
    _check_number(cfg, "data.num_workers", 0, integer=True, strict=False)
    for key in ("trainer.max_epochs", "trainer.min_epochs"):
        value = _get(cfg, key)
        max_steps = _get(cfg, "trainer.max_steps") or -1
        # -1 is Lightning's "no epoch limit", accepted only when max_steps bounds the run.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0) and not (
            value == -1 and key == "trainer.max_epochs" and max_steps > 0
        ):
            raise ConfigError(f"{key}={value!r} is not valid: it must be an integer >= 0 "
                              "(or -1 for no limit together with trainer.max_steps > 0).")

    for key in optimizer_keys(cfg):
        _check_target(cfg, key, (torch.optim.Optimizer,), "model/optimizer")
        _check_number(cfg, f"{key}.lr", 0)
        _check_optimizer(cfg, key)
    _check_target(cfg, "model.scheduler", (torch.optim.lr_scheduler.LRScheduler,
                                           torch.optim.lr_scheduler.ReduceLROnPlateau), "model/scheduler")
