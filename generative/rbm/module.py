"""An RBM trained by contrastive divergence (CD-k) or persistent CD, as a LightningModule."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch import LightningModule

from generative.media import log_grid
from generative.rbm.layer import RBMLayer
from lab.checks import check_ints
from lab.contracts import ImageSampler


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"model.k={k!r} is not valid: contrastive divergence needs k >= 1 Gibbs steps (1 is "
                         "CD-1, Hinton's default).")


def visible(x: torch.Tensor, binarize: bool, training: bool) -> torch.Tensor:
    """Images in [0, 1] (B, ...) -> binary visible units (B, V): a fresh Bernoulli draw when training
    (dynamic binarization), pixels > 0.5 when evaluating, so evaluation is deterministic."""
    x = x.flatten(1)
    if not binarize:
        return x
    return torch.bernoulli(x.clamp(0, 1)) if training else (x > 0.5).to(x.dtype)


def filters_grid(W: torch.Tensor, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The first n hidden units' weights (V, H) as images (n, C, H, W), each scaled to [0, 1]."""
    w = W[:, :n].t()  # (n, V)
    lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
    return ((w - lo) / (hi - lo).clamp_min(1e-8)).view(-1, *shape)


class RBM(ImageSampler, LightningModule):
    """Bernoulli-Bernoulli RBM on flattened images in [0, 1] (data.normalize=none).

    Logs train/cd_loss (mean F(data) - F(model samples)), train/recon_error and, on validation and test
    images, recon_error (mean squared error per pixel of the mean-field reconstruction), pll (exact
    pseudo-log-likelihood, nats per image) and free_energy. Each validation epoch saves the filters of
    the first hidden units and samples after `sample_steps` Gibbs steps from noise as image grids."""

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        in_features: int,
        channels: int,
        image_size: int,
        hidden: int = 500,
        k: int = 1,
        persistent: bool = False,
        num_chains: int = 100,
        binarize: bool = True,
        sample_steps: int = 1000,
        grid_size: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        check_k(k)
        check_ints("model.", hidden=(hidden, 1), num_chains=(num_chains, 1), sample_steps=(sample_steps, 1),
                   grid_size=(grid_size, 1))
        if in_features != channels * image_size * image_size:
            raise ValueError(f"model.in_features={in_features} is not channels x image_size^2 = "
                             f"{channels} x {image_size}^2.")
        self.optimizer_factory = optimizer
        self.rbm = RBMLayer(in_features, hidden)
        self.k, self.persistent, self.binarize = k, persistent, binarize
        self.image_shape = (channels, image_size, image_size)
        # PCD's fantasy particles: part of the state (checkpointed, moved with the module)
        self.register_buffer("chains", torch.bernoulli(torch.full((num_chains, in_features), 0.5)))
        self.register_buffer("biases_from_data", torch.tensor(False))  # checkpointed: done once per model

    def on_train_start(self) -> None:
        """Visible biases b_i = log(p_i / (1 - p_i)) of the training pixels' means (Hinton's practical guide,
        section 8): with every hidden unit off the model then gives the mean image, not grey noise, which
        a CD-1 chain from the data never visits to correct. Once per model (not again on resume)."""
        if bool(self.biases_from_data):
            return
        total, count = torch.zeros_like(self.rbm.b), 0
        for i, (x, _) in enumerate(self.trainer.train_dataloader):
            total += x.to(self.device).flatten(1).sum(0)
            count += len(x)
            if i == 49:  # 50 batches are plenty for a mean
                break
        p = self.trainer.strategy.reduce(total / max(1, count), reduce_op="mean").clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.rbm.b.copy_(torch.log(p / (1 - p)))
        self.biases_from_data.fill_(True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        v0 = visible(batch[0], self.binarize, training=True)
        start = self.chains if self.persistent else v0
        vk, _ = self.rbm.gibbs(start, self.k)
        if self.persistent:
            self.chains.copy_(vk)
        loss = self.rbm.cd_loss(v0, vk)
        self.log("train/cd_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/recon_error", self.rbm.reconstruction_error(v0).mean(), on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        v = visible(batch[0], self.binarize, training=False)
        self.log_dict({f"{split}/recon_error": self.rbm.reconstruction_error(v).mean(),
                       f"{split}/pll": self.rbm.pseudo_log_likelihood(v).mean(),
                       f"{split}/free_energy": self.rbm.free_energy(v).mean()},
                      on_epoch=True, prog_bar=split == "val", sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def sample_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, None]:
        """After hparams.sample_steps Gibbs steps."""
        return self.sample(len(indices), self.hparams.sample_steps), None

    @torch.no_grad()
    def sample(self, n: int, steps: int) -> torch.Tensor:
        """p(v | h) after `steps` Gibbs steps from uniform noise: (n, C, H, W) in [0, 1]."""
        noise = torch.bernoulli(torch.full((n, self.rbm.b.numel()), 0.5, device=self.device))
        _, p = self.rbm.gibbs(noise, steps)
        return p.view(n, *self.image_shape)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        n = self.hparams.grid_size
        log_grid(self, filters_grid(self.rbm.W.detach(), min(n, self.rbm.W.shape[1]), self.image_shape), "filters",
                 nrow=self.grid_row)
        log_grid(self, self.sample(n, self.hparams.sample_steps), "samples", nrow=self.grid_row)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.parameters())
