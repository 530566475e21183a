"""GANs as a LightningModule with manual optimization: one discriminator (critic) step per batch,
one generator step every `n_critic` batches, each under `toggled_optimizer` so only that
network's parameters receive gradients. Optional EMA of the generator weights for sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.optim.swa_utils import AveragedModel

from generative.gan.losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty
from generative.gan.nets import Conditional
from generative.media import log_grid
from generative.quality import QualityMixin, check_image_data
from lab.checks import check_choice
from lab.contracts import ImageSampler, ModelHooks
from lab.models.base import evaluating


def ema_with_warmup(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """EMA update with decay min(decay, (1 + n) / (10 + n)) after n updates, so the average forgets the
    random initial weights quickly (a fixed 0.999 still holds 60 % of them after 500 generator steps)."""

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return d * averaged + (1.0 - d) * current

    return avg_fn


class GAN(ModelHooks, ImageSampler, QualityMixin, LightningModule):
    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        loss: str = "non_saturating",
        n_critic: int = 1,
        gp_weight: float = 10.0,
        ema_decay: float | None = 0.999,
        quality_dataset: str | None = "mnist",
        val_samples: int = 5000,
        test_samples: int = 10000,
        grid_size: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator", "optimizer_g", "optimizer_d"], logger=False)
        check_choice("model.loss", loss, LOSSES)
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"model.n_critic={n_critic!r} must be an integer >= 1.")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"model.ema_decay={ema_decay!r} must be in (0, 1), or null for no EMA.")
        self.automatic_optimization = False
        self.optimizer_names = ("generator", "discriminator")  # as configure_optimizers orders them (lr/<name>)
        self.generator, self.discriminator = generator, discriminator
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.loss_name, self.n_critic, self.gp_weight = loss, n_critic, gp_weight
        self.latent_dim, self.num_classes = generator.latent_dim, generator.num_classes
        critic_classes = discriminator.num_classes if isinstance(discriminator, Conditional) else 0
        if self.num_classes != critic_classes:
            raise ValueError(f"model.generator.num_classes={self.num_classes} and model.discriminator.num_classes="
                             f"{critic_classes} must agree.")
        self.generator_ema = (AveragedModel(generator, avg_fn=ema_with_warmup(ema_decay), use_buffers=True)
                              if ema_decay is not None else None)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(grid_size, self.latent_dim, generator=g))
        # conditional grids: one row (grid_row images) per class
        self.register_buffer("fixed_y", torch.arange(grid_size) // self.grid_row % max(1, self.num_classes))
        self.init_quality(quality_dataset)  # the referee: a child module that no checkpoint holds
        self.metric_fallback: tuple[str, str] | None = None  # read by lab.data_model_runner.DataModelRunner

    # ---- checks and sampling -----------------------------------------------------------------------------
    def check_data(self, datamodule: LightningDataModule) -> None:
        """Called by lab.run before training: images in [-1, 1] (tanh output) of the generator's size."""
        check_image_data(datamodule, "symmetric", "a GAN, whose generator ends in tanh ([-1, 1])",
                         self.generator.output_shape, "model.generator.image_size / channels", "the generator makes")
        self.check_quality_data(datamodule)
        if self.quality is None:  # no validation metric left: checkpoints follow the generator's loss
            self.metric_fallback = ("train/g_loss", "min")

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, y if self.num_classes else None)

    def sample_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A cGAN's classes follow the grid's rows (grid_row images a class), as its own sample grids."""
        y = indices // self.grid_row % self.num_classes if self.num_classes else None
        return self.sample(len(indices), y=y), y

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [0, 1] from the EMA generator (or the generator), in eval mode."""
        net = self.generator_ema.module if self.generator_ema is not None else self.generator
        z = torch.randn(n, self.latent_dim, device=self.device) if z is None else z
        if self.num_classes and y is None:
            y = torch.arange(n, device=self.device) % self.num_classes
        with evaluating(net):
            out = net(z, y if self.num_classes else None)
        return out * 0.5 + 0.5

    # ---- training ----------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, labels = batch
        y = labels if self.num_classes else None
        opt_g, opt_d = self.optimizers()
        b = x.shape[0]

        with self.toggled_optimizer(opt_d):
            fake = self.generator(torch.randn(b, self.latent_dim, device=self.device), y).detach()
            d_real, d_fake = self.discriminator(x, y), self.discriminator(fake, y)
            loss_d = discriminator_loss(self.loss_name, d_real, d_fake)
            if self.loss_name == "wgan_gp":
                gp = gradient_penalty(lambda t: self.discriminator(t, y), x, fake)
                loss_d = loss_d + self.gp_weight * gp
                self.log("train/gp", gp, on_step=True, on_epoch=True)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
        self.log_dict({"train/d_loss": loss_d, "train/d_real": d_real.mean(), "train/d_fake": d_fake.mean()},
                      on_step=True, on_epoch=True, prog_bar=True)

        if (batch_idx + 1) % self.n_critic == 0:
            with self.toggled_optimizer(opt_g):
                fake = self.generator(torch.randn(b, self.latent_dim, device=self.device), y)
                loss_g = generator_loss(self.loss_name, self.discriminator(fake, y))
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(loss_g)
                opt_g.step()
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
            self.log("train/g_loss", loss_g, on_step=True, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer_g(params=self.generator.parameters()),
                self.optimizer_d(params=self.discriminator.parameters())]

    # ---- evaluation: FID each validation epoch, full figures at test ------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not self.trainer.sanity_checking and not self._val_real_done:  # the real images once per run
            self.quality_real(batch[0] * 0.5 + 0.5)

    def on_validation_epoch_start(self) -> None:
        self._val_real_done = self.quality is not None and self.quality.has_real()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        y = self.fixed_y if self.num_classes else None
        log_grid(self, self.sample(len(self.fixed_z), y=y, z=self.fixed_z), "samples", nrow=self.grid_row)
        figures = self.quality_figures(self.sample, self.hparams.val_samples)
        self.log_dict({f"val/{k}": v for k, v in figures.items()}, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        if self.quality is not None:
            self.quality.reset_all()  # the test set replaces the validation images

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.quality_real(batch[0] * 0.5 + 0.5)

    def on_test_epoch_end(self) -> None:
        figures = self.quality_figures(self.sample, self.hparams.test_samples, floor=True)
        if self.quality is not None:
            self.quality.reset_all()  # validation (if any follows) collects its real images again
        self.log_dict({f"test/{k}": v for k, v in figures.items()}, sync_dist=True)
