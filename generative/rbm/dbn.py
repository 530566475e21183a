"""A deep belief network: RBMs stacked and pretrained greedily, layer by layer (Hinton, Osindero and Teh,
2006), then the stack fine-tuned with a softmax head as a sigmoid MLP classifier.

Epochs [l * pretrain_epochs, (l + 1) * pretrain_epochs) train RBM l by CD-k on the mean activations
p(h | .) of the layers below it (held fixed); the epochs after train everything by cross-entropy. With
pretrain_epochs=0 it is the same MLP from random initialization: the baseline of the table in docs/lifecycle.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from generative.media import log_grid
from generative.rbm.layer import RBMLayer
from generative.rbm.module import check_k, filters_grid, visible
from lab.checks import check_ints
from lab.contracts import ModelHooks
from lab.errors import ConfigError


def pretraining_layer(epoch: int, pretrain_epochs: int, num_layers: int) -> int | None:
    """The RBM pretrained in `epoch`, or None once fine-tuning."""
    layer = epoch // pretrain_epochs if pretrain_epochs else num_layers
    return layer if layer < num_layers else None


def check_epochs(max_epochs: int | None, pretrain_epochs: int, num_layers: int) -> None:
    pretraining = pretrain_epochs * num_layers
    if max_epochs is None or max_epochs <= pretraining:
        raise ConfigError(f"trainer.max_epochs={max_epochs} leaves no epoch for fine-tuning: pretraining takes "
                          f"model.pretrain_epochs x {num_layers} layers = {pretraining} epochs; set "
                          f"trainer.max_epochs > {pretraining}.")


class DBN(ModelHooks, LightningModule):
    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        pretrain_optimizer: Callable[..., torch.optim.Optimizer],
        in_features: int,
        channels: int,
        image_size: int,
        num_classes: int,
        hidden_sizes: tuple[int, ...] = (500, 500),
        k: int = 1,
        pretrain_epochs: int = 2,
        binarize: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "pretrain_optimizer"], logger=False)
        check_k(k)
        check_ints("model.", pretrain_epochs=(pretrain_epochs, 0), num_classes=(num_classes, 2))
        if not hidden_sizes or any(not isinstance(h, int) or h < 1 for h in hidden_sizes):
            raise ValueError(f"model.hidden_sizes={list(hidden_sizes)!r} must be a non-empty list of positive "
                             "integers (units of each stacked RBM).")
        self.automatic_optimization = False  # one optimizer per RBM, one for fine-tuning, chosen by epoch
        self.optimizer_factory, self.pretrain_factory = optimizer, pretrain_optimizer
        sizes = [in_features, *hidden_sizes]
        self.rbms = nn.ModuleList(RBMLayer(v, h) for v, h in zip(sizes[:-1], sizes[1:], strict=True))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.k, self.pretrain_epochs, self.binarize = k, pretrain_epochs, binarize
        self.image_shape = (channels, image_size, image_size)
        self.optimizer_names = (*(f"rbm{i + 1}" for i in range(len(self.rbms))), "finetune")
        self.train_loss, self.train_acc = MeanMetric(), MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def phase(self) -> int | None:
        return pretraining_layer(self.current_epoch, self.pretrain_epochs, len(self.rbms))

    def on_fit_start(self) -> None:
        check_epochs(self.trainer.max_epochs, self.pretrain_epochs, len(self.rbms))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) in [0, 1] -> logits (B, num_classes): the RBMs' p(h | .) as sigmoid layers, then the head."""
        h = x.flatten(1)
        for rbm in self.rbms:
            h = rbm.p_h(h)
        return self.head(h)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizers = self.optimizers()
        layer = self.phase()
        if layer is not None:
            with torch.no_grad():
                v = x.flatten(1)
                for below in self.rbms[:layer]:
                    v = below.p_h(v)
                v0 = visible(v, self.binarize, training=True)
            rbm = self.rbms[layer]
            vk, _ = rbm.gibbs(v0, self.k)
            loss, opt = rbm.cd_loss(v0, vk), optimizers[layer]
            self.log_dict({"train/cd_loss": loss, "train/recon_error": rbm.reconstruction_error(v0).mean()},
                          on_step=False, on_epoch=True, prog_bar=True)
        else:
            logits = self(x)
            loss, opt = F.cross_entropy(logits, y), optimizers[-1]
            self.train_loss(loss)
            self.train_acc(logits.argmax(-1), y)
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits.argmax(-1), y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking and self.phase() == 0:  # the first layer's filters while it learns
            W = self.rbms[0].W.detach()
            log_grid(self, filters_grid(W, min(100, W.shape[1]), self.image_shape), "filters")  # log_grid: 10 a row

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits.argmax(-1), y)
        self.log("test/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*(self.pretrain_factory(params=rbm.parameters()) for rbm in self.rbms),
                self.optimizer_factory(params=self.parameters())]
