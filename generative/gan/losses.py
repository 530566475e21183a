"""GAN objectives on raw discriminator scores (B,). Each returns a scalar to minimize."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("non_saturating", "hinge", "wgan_gp")


def discriminator_loss(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if loss == "non_saturating":  # -log D(x) - log(1 - D(G(z))), with D = sigmoid(score)
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if loss == "wgan_gp":  # critic: E[D(fake)] - E[D(real)]; the penalty is added separately
        return fake.mean() - real.mean()
    raise ValueError(f"model.loss={loss!r} is not valid; valid choices: {', '.join(LOSSES)}.")


def generator_loss(loss: str, fake: torch.Tensor) -> torch.Tensor:
    if loss == "non_saturating":  # -log D(G(z))
        return F.softplus(-fake).mean()
    if loss in ("hinge", "wgan_gp"):
        return -fake.mean()
    raise ValueError(f"model.loss={loss!r} is not valid; valid choices: {', '.join(LOSSES)}.")


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
                     ) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates x_hat."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
