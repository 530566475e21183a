"""The runner of the families that fit a LightningModule (`model`) on a LightningDataModule (`data`): supervised
and generative models (conf/family/supervised.yaml and the families built on it). The contract it follows is
lab.contracts.Runner; the RL runners live with the agents (agents/common/runner.py, agents/sb3/)."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from omegaconf import DictConfig, open_dict

from lab.contracts import DATA_KEYS, RunContext, Runner, model_hooks, scalars
from lab.errors import ConfigError, building
from lab.instantiate import instantiate

log = logging.getLogger("lab")


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
        hooks = model_hooks(self.model)
        try:
            hooks.check_data(self.datamodule)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(f"The model `{cfg.model._target_}` does not fit the data `{cfg.data._target_}`: "
                              f"{e}") from None
        fallback = hooks.metric_fallback
        if fallback is not None and tuple(fallback) != (cfg.optimized_metric, cfg.optimized_mode):
            log.warning("optimized_metric=%s is not available for this data; checkpoints follow %s (%s) instead.",
                        cfg.optimized_metric, *fallback)
            with open_dict(cfg):
                cfg.optimized_metric, cfg.optimized_mode = fallback
        self.batch_size = cfg.data.get("batch_size")

    def configure_trainer(self, trainer: Trainer) -> None:
        batch = self.batch_size
        if trainer.world_size > 1 and isinstance(batch, int) and trainer.is_global_zero:
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

