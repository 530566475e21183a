"""Variational autoencoder (Kingma & Welling, 2014) as a LightningModule.

Loss in nats per example: mean over the batch of -log p(x|z) + beta * KL(q(z|x) || N(0, I)),
summed over pixels and latent dims (see generative/vae/losses.py). `val/nelbo` and `test/nelbo`
are the plain negative ELBO (beta = 1) whatever beta is used for training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn

from generative.media import log_grid
from generative.quality import QualityMixin, check_image_data
from generative.vae.losses import iwae_log_likelihood, kl_standard_normal, log_likelihood, reparameterize
from lab.checks import check_choice
from lab.contracts import ImageSampler, ModelHooks
from lab.models.optim import configure

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(ModelHooks, ImageSampler, QualityMixin, LightningModule):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        latent_dim: int = 20,
        likelihood: str = "bernoulli",
        binarize: bool = False,
        beta: float = 1.0,
        iw_samples: int = 5000,
        iw_chunk: int = 50_000,
        iw_examples: int | None = None,
        quality_dataset: str | None = "mnist",
        quality_samples: int = 10000,
        grid_size: int = 100,
    ) -> None:
        super().__init__()
        self._val_images: torch.Tensor | None = None  # a fixed validation batch, for the reconstruction grids
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer", "scheduler"], logger=False)
        check_choice("model.likelihood", likelihood, LIKELIHOODS)
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f"model.latent_dim={latent_dim!r} must be a positive integer.")
        if beta < 0:
            raise ValueError(f"model.beta={beta} must be >= 0.")
        if iw_samples < 0:
            raise ValueError(f"model.iw_samples={iw_samples} must be >= 0 (0 skips the importance-weighted NLL).")
        if iw_examples is not None and iw_examples <= 0:
            raise ValueError(f"model.iw_examples={iw_examples} must be positive, or null for the whole test set.")
        self.encoder, self.decoder = encoder, decoder
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.likelihood, self.binarize, self.beta = likelihood, binarize, beta
        self.latent_dim = latent_dim
        # Gaussian likelihood: one learned log standard deviation shared by all pixels.
        self.log_scale = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None
        self.register_buffer("fixed_z", torch.randn(grid_size, latent_dim, generator=torch.Generator().manual_seed(0)))
        self.init_quality(quality_dataset)  # the referee: a child module that no checkpoint holds

    # ---- checks and shapes -------------------------------------------------------------------------------
    def check_data(self, datamodule: LightningDataModule) -> None:
        """Called by lab.run before training: the data must be images in [0, 1] of the model's size."""
        check_image_data(datamodule, "none", "a VAE, which models pixels in [0, 1]", self.encoder.input_shape,
                         "model.encoder.image_size / in_channels", "the model expects")
        self.check_quality_data(datamodule)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)  # (B, D) each
        out = self.decoder(reparameterize(mu, logvar))  # (B, C, H, W)
        return out, mu, logvar

    def mean_image(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0, 1)

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return log_likelihood(x, self.decoder(z), self.likelihood, self.log_scale)

    def _inputs(self, x: torch.Tensor, batch_idx: int, train: bool) -> torch.Tensor:
        if not self.binarize:
            return x
        if train:  # dynamic binarization: a fresh draw every time an image is seen
            return torch.bernoulli(x)
        g = torch.Generator(device=x.device).manual_seed(10_000 + batch_idx)  # a fixed binarized eval set
        return torch.bernoulli(x, generator=g)

    def _losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, mu, logvar = self(x)
        rec = -log_likelihood(x, out, self.likelihood, self.log_scale)  # (B,)
        kl = kl_standard_normal(mu, logvar)  # (B,)
        return {"loss": (rec + self.beta * kl).mean(), "nelbo": (rec + kl).mean(), "recon": rec.mean(),
                "kl": kl.mean(), "mu": mu, "logvar": logvar, "out": out}

    # ---- steps -----------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = self._inputs(batch[0], batch_idx, train=True)
        m = self._losses(x)
        self.log_dict({f"train/{k}": m[k] for k in ("loss", "nelbo", "recon", "kl")}, on_step=True, on_epoch=True)
        return m["loss"]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x = self._inputs(batch[0], batch_idx, train=False)
        m = self._losses(x)
        self.log_dict({f"val/{k}": m[k] for k in ("loss", "nelbo", "recon", "kl")}, prog_bar=True, sync_dist=True)
        if batch_idx == 0:
            self._val_images = x[:32]

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._val_images is None:
            return
        with torch.no_grad():
            log_grid(self, self.mean_image(self.decoder(self.fixed_z)), "samples", nrow=10)
            x = self._val_images
            mu, _ = self.encoder(x)
            recon = self.mean_image(self.decoder(mu))
            pairs = torch.stack([x, recon], 1).flatten(0, 1)  # input, reconstruction, input, ...
            log_grid(self, pairs, "reconstructions", nrow=8)
            steps = torch.linspace(0, 1, 10, device=mu.device)
            pairs_n = min(8, len(mu) // 2)  # interpolate between pairs of validation images
            a, b = mu[:pairs_n], mu[pairs_n : 2 * pairs_n]
            z = a.unsqueeze(1) + steps.view(1, -1, 1) * (b - a).unsqueeze(1)  # (8, 10, D)
            log_grid(self, self.mean_image(self.decoder(z.flatten(0, 1))), "interpolations", nrow=10)
            if self.latent_dim == 2:
                q = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, 20, device=mu.device))
                grid = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).view(-1, 2)  # (400, 2)
                log_grid(self, self.mean_image(self.decoder(grid)), "latent_manifold", nrow=20)

    def on_test_epoch_start(self) -> None:
        if self.quality is not None:
            self.quality.reset_all()
        self._iw_done = 0

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x_grey = batch[0]
        x = self._inputs(x_grey, batch_idx, train=False)
        m = self._losses(x)
        self.log_dict({f"test/{k}": m[k] for k in ("loss", "nelbo", "recon", "kl")}, sync_dist=True)
        limit = self.hparams.iw_examples
        n = len(x) if limit is None else min(len(x), limit - self._iw_done)
        if self.hparams.iw_samples > 0 and n > 0:
            ll = iwae_log_likelihood(x[:n], m["mu"][:n], m["logvar"][:n], self.log_px, self.hparams.iw_samples,
                                     self.hparams.iw_chunk)
            self._iw_done += n
            self.log("test/nll_iw", -ll.mean(), batch_size=n, sync_dist=True)
        self.quality_real(x_grey)

    def on_test_epoch_end(self) -> None:
        figures = self.quality_figures(self.sample, self.hparams.quality_samples, floor=True)
        self.log_dict({f"test/{k}": v for k, v in figures.items()}, sync_dist=True)

    def sample_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.sample(len(indices)), None

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n images in [0, 1]: the decoder's mean image of z ~ N(0, I)."""
        return self.mean_image(self.decoder(torch.randn(n, self.latent_dim, device=self.device)))

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)
