"""Regressor: any backbone + a linear head to `num_targets` numbers, for tables (lab.data.TabularDataModule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, R2Score

from lab.checks import check_choice, check_number, check_positive
from lab.contracts import ModelHooks, data_facts
from lab.models.base import evaluating
from lab.models.optim import configure

LOSSES = ("mse", "l1", "huber")


class Regressor(ModelHooks, LightningModule):
    """backbone (B, ...) -> (B, out_features) -> Linear -> (B, num_targets).

    The head predicts standardized targets z = (y - target_mean) / target_std, which the loss (`mse`, `l1` or
    `huber` with `huber_delta`, all in standardized units) compares; `forward` returns z * target_std +
    target_mean, the targets in their own units, and so do the metrics: MAE, RMSE (over every target value)
    and R2 (the mean over targets of each one's R2). target_mean / target_std are buffers (saved with the
    checkpoint) set from the data's training rows by `check_data`, which lab.run calls before training.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_targets: int = 1,
        loss: str = "mse",
        huber_delta: float = 1.0,
        target_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"], logger=False)
        check_number("model.num_targets", num_targets, 1, integer=True, strict=False)
        check_choice("model.loss", loss, LOSSES)
        check_positive("model.huber_delta", huber_delta)
        if target_names is not None and len(target_names) != num_targets:
            raise ValueError(f"model.target_names={list(target_names)} has {len(target_names)} names for "
                             f"model.num_targets={num_targets}.")
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, num_targets)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.num_targets, self.loss_name, self.huber_delta = num_targets, loss, huber_delta
        self.target_names = list(target_names) if target_names else [f"target_{i}" for i in range(num_targets)]
        self.register_buffer("target_mean", torch.zeros(num_targets))
        self.register_buffer("target_std", torch.ones(num_targets))

        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_mae, self.test_mae = MeanAbsoluteError(), MeanAbsoluteError()
        self.val_rmse, self.test_rmse = MeanSquaredError(squared=False), MeanSquaredError(squared=False)
        self.val_r2, self.test_r2 = R2Score(), R2Score()  # the mean over targets of their R2

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_targets) predictions in standardized target units (what the loss sees)."""
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardized(x) * self.target_std + self.target_mean  # (B, num_targets), the targets' units

    def check_data(self, datamodule: LightningDataModule) -> None:
        """Called by lab.run before training: the data must be a table with num_targets target columns whose
        rows the backbone takes; copies the training rows' target statistics and the target names."""
        facts = data_facts(datamodule)
        names = list(facts.target_names)
        if not names or len(facts.target_mean) != len(names) or len(facts.target_std) != len(names):
            raise ValueError(f"the regressor needs a table with target columns (data=diabetes, or data=tabular for "
                             f"a CSV file); `{type(datamodule).__name__}` has none.")
        if len(names) != self.num_targets:
            raise ValueError(f"model.num_targets={self.num_targets} but the data has {len(names)} target column(s) "
                             f"({', '.join(names)}); set model.num_targets={len(names)}.")
        if self.hparams.target_names is not None and list(self.hparams.target_names) != list(names):
            raise ValueError(f"model.target_names={list(self.hparams.target_names)} but the data's targets are "
                             f"{list(names)}; set model.target_names=null to take the data's.")
        self.target_names = list(names)
        self.hparams.target_names = list(names)  # saved with the checkpoint, for predictions read without the data
        self.target_mean.copy_(torch.as_tensor(facts.target_mean, dtype=torch.float32))
        self.target_std.copy_(torch.as_tensor(facts.target_std, dtype=torch.float32))
        shape = tuple(data_facts(datamodule).input_shape)
        try:
            with evaluating(self):
                out = self(torch.zeros(2, *shape, device=self.target_mean.device))
        except Exception as e:
            hint = f"; for a table set model.backbone.in_features={shape[0]}" if len(shape) == 1 else ""
            raise ValueError(f"the backbone cannot take inputs of shape {shape} from the data ({e}){hint}.") from None
        if out.shape != (2, self.num_targets):
            raise ValueError(f"the model gives outputs of shape {tuple(out.shape[1:])} for inputs of shape {shape}, "
                             f"not ({self.num_targets},).")

    def _loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = (y - self.target_mean) / self.target_std
        if self.loss_name == "mse":
            return F.mse_loss(z, target)
        if self.loss_name == "l1":
            return F.l1_loss(z, target)
        return F.huber_loss(z, target, delta=self.huber_delta)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        z = self.standardized(x)
        return self._loss(z, y), z * self.target_std + self.target_mean, y

    def _update(self, prefix: str, loss: torch.Tensor, preds: torch.Tensor, y: torch.Tensor) -> None:
        getattr(self, f"{prefix}_loss")(loss)
        getattr(self, f"{prefix}_mae")(preds, y)
        getattr(self, f"{prefix}_rmse")(preds, y)
        # R2Score takes (B,) for one output, (B, T) for several
        getattr(self, f"{prefix}_r2")(preds.squeeze(-1) if self.num_targets == 1 else preds,
                                      y.squeeze(-1) if self.num_targets == 1 else y)
        for name in ("loss", "mae", "rmse", "r2"):
            self.log(f"{prefix}/{name}", getattr(self, f"{prefix}_{name}"), on_epoch=True,
                     prog_bar=name in ("loss", "r2"))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch)
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._update("val", *self._step(batch))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._update("test", *self._step(batch))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)
