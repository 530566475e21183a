"""Image/sequence classifier: any backbone + a linear head, trained with cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lab.contracts import data_facts
from lab.layout import RunLayout
from lab.loggers import save_and_log_figure
from lab.models.base import evaluating
from lab.models.optim import configure
from lab.models.transfer import Transferable
from lab.robustness import AdversarialTraining, Pixels


class Classifier(Transferable, LightningModule):
    """backbone (B, ...) -> (B, out_features) -> Linear -> (B, num_classes) logits.

    Loss: cross-entropy (optional label smoothing) + l1_weight * sum |w| over weight matrices.
    Weight decay belongs to the optimizer node (`model.optimizer.weight_decay`). Transfer learning:
    `init_from` (a checkpoint, run folder or task log folder) loads the tensors that match by name and shape
    (only those under `init_modules` when given), `freeze` lists modules to keep fixed, and
    `pretrained_lr_scale` scales the learning rate of the loaded parameters (lab.models.transfer).
    Adversarial training: `adversarial` (lab.robustness.AdversarialTraining, eps > 0) adds the loss on FGSM / PGD
    examples of each training batch, made in pixel units with the data's normalization (taken in `check_data`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_classes: int = 10,
        label_smoothing: float = 0.0,
        l1_weight: float = 0.0,
        class_names: list[str] | None = None,
        init_from: str | None = None,
        init_modules: list[str] | None = None,
        freeze: list[str] | None = None,
        pretrained_lr_scale: float = 1.0,
        adversarial: AdversarialTraining | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler", "adversarial"], logger=False)
        if num_classes < 2:
            raise ValueError(f"model.num_classes={num_classes} must be at least 2.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing={label_smoothing} must be in [0, 1).")
        if l1_weight < 0:
            raise ValueError(f"model.l1_weight={l1_weight} must be >= 0.")
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, num_classes)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing, self.l1_weight = label_smoothing, l1_weight
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.adversarial = adversarial if adversarial is not None and adversarial.enabled else None
        self.pixels: Pixels | None = None  # the data's normalization (check_data): what adversarial training needs

        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_confmat = MulticlassConfusionMatrix(num_classes)
        self.val_acc_best = MaxMetric()
        self.init_transfer(init_from, init_modules, freeze, pretrained_lr_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, num_classes)

    def check_data(self, datamodule: LightningDataModule) -> None:
        """Called by lab.run before training: one dummy forward pass with the data's input shape; the data's
        normalization, for adversarial training."""
        self.pixels = Pixels.of(datamodule)
        if self.adversarial is not None and self.pixels is None:
            raise ValueError(f"model.adversarial.eps={self.adversarial.eps} is in pixel units of [0, 1] images, but "
                             f"the data `{type(datamodule).__name__}` gives no normalization (`mean_std`); set "
                             "model.adversarial.eps=0 for this data.")
        shape = tuple(data_facts(datamodule).input_shape)
        if not shape:
            return
        try:
            with evaluating(self):
                self(torch.zeros(2, *shape))
        except Exception as e:
            raise ValueError(f"the backbone cannot take inputs of shape {shape} from the data ({e}). Check backbone "
                             "sizes such as backbone.input_size / image_size / in_channels against the data.") from None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, out_features), e.g. for a feature-space distance."""
        return self.backbone(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits.argmax(-1), y

    def _adversarial_step(self, batch: tuple[torch.Tensor, torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1 - ratio) * clean loss + ratio * adversarial loss; predictions of the clean batch (train/acc)."""
        assert self.adversarial is not None
        if self.pixels is None:
            raise RuntimeError("model.adversarial needs the data's normalization: call check_data(datamodule) "
                               "before training (lab.run does).")
        x, y = batch
        adv = self.adversarial.examples(self, x, y, self.pixels)
        adv_logits = self(adv)
        adv_loss = F.cross_entropy(adv_logits, y, label_smoothing=self.label_smoothing)
        self.log("train/adv_loss", adv_loss, on_step=False, on_epoch=True)
        self.log("train/adv_acc", (adv_logits.argmax(-1) == y).float().mean(), on_step=False, on_epoch=True)
        ratio = self.adversarial.ratio
        if ratio == 1.0:  # the clean batch only measures train/acc (eval mode: batch-norm statistics untouched)
            with evaluating(self):
                preds = self(x).argmax(-1)
            return adv_loss, preds, y
        loss, preds, y = self._step(batch)
        return (1.0 - ratio) * loss + ratio * adv_loss, preds, y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._adversarial_step(batch) if self.adversarial is not None else self._step(batch)
        if self.l1_weight > 0:
            l1 = sum(p.abs().sum() for n, p in self.named_parameters() if p.dim() > 1)
            loss = loss + self.l1_weight * l1
        self.train_loss(loss)
        self.train_acc(preds, y)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        # Lightning's sanity check runs validation before training; do not let it set the best.
        self.val_acc_best.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.val_loss(loss)
        self.val_acc(preds, y)
        self.val_f1(preds, y)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val/f1", self.val_f1, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_loss(loss)
        self.test_acc(preds, y)
        self.test_f1(preds, y)
        self.test_confmat(preds, y)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/f1", self.test_f1, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        confmat = self.test_confmat.compute()  # synced across processes
        self.test_confmat.reset()
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            fig, _ = MulticlassConfusionMatrix(len(self.class_names)).plot(val=confmat.cpu(), labels=self.class_names)
            fig.set_size_inches(7, 6)
            out = RunLayout(Path(self.trainer.default_root_dir)).confusion_matrix
            save_and_log_figure(self.loggers, "test/confusion_matrix", fig, out, self.global_step)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)
