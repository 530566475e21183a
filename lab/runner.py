"""Runners: what differs between families of experiments, named by the config's `runner` node.

`lab.run.run` does what every family shares (validation, seeding, output folder, loggers, callbacks,
trainer, the fit / test order, W&B finish, printing) and calls the runner for the rest. A family plugs in
with a Runner subclass and a `runner: {_target_: ...}` node in its config (conf/family/, or an agent's
config), without touching lab/run.py. `DataModelRunner` here runs supervised and generative models; the
RL runners live with the agents (agents/common/runner.py, agents/sb3/).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from lab.errors import ConfigError, building
from lab.instantiate import instantiate

log = logging.getLogger("lab")


@dataclass
class RunContext:
    """What lab.run has built for the runner: the config, the run folder, loggers and (if used) the trainer."""

    cfg: DictConfig
    output_dir: Path
    loggers: list[Logger]
    trainer: Trainer | None


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


class Runner:
    """Base of the runners. Subclasses build their pieces from the config and say how they fit and test."""

    uses_trainer = True  # False: the runner has its own loop, and `trainer` / `callbacks` settings do not apply,
    uses_trainer_keys: tuple[str, ...] = ()  # except these trainer keys, which it reads itself
    can_resume = True
    length_keys: tuple[str, ...] = ("trainer.max_epochs", "trainer.max_steps")  # may change when a run resumes

    def build(self, cfg: DictConfig) -> None:
        """Build what the run needs from `cfg` (lab.run has validated and seeded); errors name their key."""
        raise NotImplementedError

    def check_checkpoint(self, path: Path) -> None:
        """ValueError unless `path` is a checkpoint this runner can read (checked before anything is built)."""
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"it cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError("it is not a Lightning checkpoint of the lab (no state_dict); pass a .ckpt from a run's "
                             "checkpoints/ folder")
        self.check_checkpoint_contents(ckpt)

    def check_checkpoint_contents(self, ckpt: dict[str, Any]) -> None:
        """What a runner needs in a Lightning checkpoint beyond its state_dict (read once, by check_checkpoint)."""

    def configure_trainer(self, trainer: Trainer) -> None:
        """Called once the trainer exists, before fit."""

    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        raise NotImplementedError

    def best_checkpoint(self, run: RunContext) -> str | None:
        """What `test=true` tests after fit: the best checkpoint by optimized_metric (None: the final weights)."""
        callback = run.trainer.checkpoint_callback if run.trainer is not None else None
        return (callback.best_model_path or None) if callback is not None else None

    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        raise NotImplementedError

    def summary(self, metrics: dict[str, float]) -> list[str]:
        """Lines printed after the final metrics."""
        return []


class DataModelRunner(Runner):
    """A LightningModule (`model`) fitted on a LightningDataModule (`data`), then tested: supervised and
    generative families. Keys left null in the model's nodes that the data determines (see
    lab.data.data_dims: in_channels, image_size, num_classes, ...) are filled from the data first."""

    def build(self, cfg: DictConfig) -> None:
        self.datamodule: LightningDataModule = instantiate(cfg.data, "data")
        from lab.data import (
            data_dims,  # the data package imports torchvision: only runs that use data pay for it
        )

        with building("data", cfg.data.get("_target_")):
            dims = data_dims(self.datamodule)
        fill_from_data(cfg.model, dims, "model")
        self.model: LightningModule = instantiate(cfg.model, "model")
        check = getattr(self.model, "check_data", None)
        if check is not None:
            try:
                check(self.datamodule)
            except (ValueError, FileNotFoundError) as e:
                raise ConfigError(f"The model `{cfg.model._target_}` does not fit the data `{cfg.data._target_}`: "
                                  f"{e}") from None
        fallback = getattr(self.model, "metric_fallback", None)
        if fallback is not None and tuple(fallback) != (cfg.optimized_metric, cfg.optimized_mode):
            log.warning("optimized_metric=%s is not available for this data; checkpoints follow %s (%s) instead.",
                        cfg.optimized_metric, *fallback)
            with open_dict(cfg):
                cfg.optimized_metric, cfg.optimized_mode = fallback

    def configure_trainer(self, trainer: Trainer) -> None:
        batch = getattr(self.datamodule, "batch_size", None)
        if trainer.world_size > 1 and batch is not None and trainer.is_global_zero:
            # Lightning's convention, kept as is: the batch size is per process and learning rates are not scaled
            log.info("DDP: data.batch_size=%d per process x %d processes = %d examples per optimizer step; learning "
                     "rates are used as configured (scale them yourself, e.g. linearly, to keep a single-device "
                     "recipe).", batch, trainer.world_size, batch * trainer.world_size)

    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        run.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        return scalars(run.trainer.callback_metrics)

    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        try:
            run.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        except RuntimeError as e:
            if "state_dict" not in str(e):
                raise
            raise ConfigError(f"ckpt_path={ckpt_path!r} does not match the configured model: {str(e).splitlines()[0]} "
                              "Evaluate with the same experiment and overrides the checkpoint was trained with.") from None
        return scalars(run.trainer.callback_metrics)


def fill_from_data(node: Any, dims: dict[str, Any], key: str) -> None:
    """Set every data-determined key (a key of `dims`) that is null in the `_target_` nodes under `node`;
    ConfigError naming it when the data gives no value for it."""
    if not isinstance(node, DictConfig):
        return
    with open_dict(node):
        for k in list(node.keys()):
            if node._get_node(k)._is_interpolation():
                continue
            child = node[k]
            if isinstance(child, DictConfig):
                fill_from_data(child, dims, f"{key}.{k}")
            elif child is None and "_target_" in node and k in DATA_KEYS:
                if dims.get(k) is None:
                    given = ", ".join(f"{d}={v}" for d, v in dims.items() if v is not None)
                    raise ConfigError(f"{key}.{k} is null, to be taken from the data, but the data does not give it "
                                      f"(it gives {given}); set {key}.{k}=<value>.")
                node[k] = dims[k]


# The keys a model's nodes may leave null for the data to fill (lab.data.data_dims computes them).
DATA_KEYS = ("in_channels", "channels", "image_size", "in_features", "input_size", "seq_len", "num_classes",
             "class_names", "task_classes", "num_targets", "vocab", "vocab_size", "max_output_len")
