"""Multi-task learning: one backbone, a linear head per task, each task with its loss and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lab.checks import check_choice
from lab.models.optim import configure
from lab.models.transfer import Transferable

WEIGHTINGS = ("fixed", "uncertainty")


def uncertainty_weighted(losses: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:
    """Kendall, Gal and Cipolla (2018), their classification form: sum_t L_t / sigma_t^2 + log sigma_t,
    with s_t = log sigma_t^2 learned: sum_t exp(-s_t) L_t + s_t / 2. (T,), (T,) -> ()."""
    return (torch.exp(-log_vars) * losses + 0.5 * log_vars).sum()


class MultiTask(Transferable, LightningModule):
    """backbone (B, ...) -> (B, F) -> heads[task] -> (B, classes of task).

    Each training step takes one batch of every task (a dict {task: (x, y)}, lab.data.MultiTaskDataModule)
    through one backbone pass. The loss is sum_t w_t L_t with `loss_weights` (fixed; 1 for tasks not listed),
    or, with weighting=uncertainty, each task's weight learned (`uncertainty_weighted`). Metrics:
    `<split>/<task>/loss`, `<split>/<task>/acc`, and `<split>/acc`, the mean over tasks (what checkpoints
    follow). `init_from`, `freeze`, `pretrained_lr_scale`: as for the Classifier (lab.models.transfer)."""

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        task_classes: dict[str, list[str]],
        scheduler: Callable[..., Any] | None = None,
        weighting: str = "fixed",
        loss_weights: dict[str, float] | None = None,
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        init_modules: list[str] | None = None,
        freeze: list[str] | None = None,
        pretrained_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"], logger=False)
        check_choice("model.weighting", weighting, WEIGHTINGS)
        if not task_classes:
            raise ValueError("model.task_classes is empty: a multi-task model needs at least one task (the data's "
                             "tasks fill it in).")
        self.tasks = list(task_classes)
        for t in self.tasks:
            if "." in t or "/" in t:
                raise ValueError(f"task name {t!r} may not contain '.' or '/' (it names a module and metrics).")
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise ValueError(f"model.loss_weights names {unknown}, which are not tasks; valid choices: "
                             f"{', '.join(self.tasks)}.")
        if weighting == "uncertainty" and weights:
            raise ValueError("model.loss_weights and model.weighting=uncertainty exclude each other: the "
                             "uncertainty weighting learns the weights (set model.loss_weights=null).")
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: nn.Linear(backbone.out_features, len(c)) for t, c in task_classes.items()})
        self.register_buffer("loss_weights", torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks]))
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks))) if weighting == "uncertainty" else None
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.train_loss = MeanMetric()
        self.acc = nn.ModuleDict({f"{split}_{t}": MulticlassAccuracy(len(c), average="micro")
                                  for split in ("train", "val", "test") for t, c in task_classes.items()})
        self.init_transfer(init_from, init_modules, freeze, pretrained_lr_scale)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.backbone(x))

    def training_step(self, batch: dict[str, tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        present = [t for t in self.tasks if batch.get(t) is not None]
        xs = [batch[t][0] for t in present]
        features = self.backbone(torch.cat(xs)).split([len(x) for x in xs])  # one pass, split back by task
        losses = []
        for t, f in zip(present, features, strict=True):
            logits, y = self.heads[t](f), batch[t][1]
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            losses.append(loss)
            self.acc[f"train_{t}"](logits.argmax(-1), y)
            self.log(f"train/{t}/loss", loss, on_step=False, on_epoch=True)
            self.log(f"train/{t}/acc", self.acc[f"train_{t}"], on_step=False, on_epoch=True)
        idx = torch.tensor([self.tasks.index(t) for t in present], device=self.device)
        stacked = torch.stack(losses)
        if self.log_vars is not None:
            total = uncertainty_weighted(stacked, self.log_vars[idx])
            for t, s in zip(self.tasks, self.log_vars.detach(), strict=True):
                self.log(f"train/{t}/weight", torch.exp(-s), on_step=False, on_epoch=True)
        else:
            total = (self.loss_weights[idx] * stacked).sum()
        self.train_loss(total)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        return total

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str, dataloader_idx: int) -> None:
        t = self.tasks[dataloader_idx]
        x, y = batch
        logits = self(x, t)
        self.acc[f"{split}_{t}"](logits.argmax(-1), y)
        self.log(f"{split}/{t}/loss", F.cross_entropy(logits, y), on_epoch=True, add_dataloader_idx=False,
                 sync_dist=True)
        self.log(f"{split}/{t}/acc", self.acc[f"{split}_{t}"], on_epoch=True, add_dataloader_idx=False,
                 prog_bar=split == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val", dataloader_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test", dataloader_idx)

    def _mean_acc(self, split: str) -> None:
        accs = [self.acc[f"{split}_{t}"].compute() for t in self.tasks]
        self.log(f"{split}/acc", torch.stack(accs).mean(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._mean_acc("val")

    def on_test_epoch_end(self) -> None:
        self._mean_acc("test")

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)
