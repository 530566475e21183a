"""VAE maths, per example, in nats (natural log). No hidden scalings: the loss is

    loss = mean over the batch of [ -log p(x | z) + beta * KL(q(z | x) || N(0, I)) ]

with log p(x | z) summed over all pixels and the KL summed over all latent dimensions, so with
beta = 1 the loss is the negative ELBO in nats per example (the number papers report).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), closed form, summed over latent dims: (B, D) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dim: (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_likelihood(x: torch.Tensor, out: torch.Tensor, likelihood: str, log_scale: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """log p(x | z) summed over pixels: (B, C, H, W) -> (B,).

    bernoulli: `out` are logits, x in [0, 1] (grey levels are the usual 'continuous Bernoulli-free' practice,
    binarized x gives the proper discrete likelihood). gaussian: `out` is the mean, with std exp(log_scale).
    """
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(-1)
    if likelihood == "gaussian":
        assert log_scale is not None
        lp = -0.5 * (LOG_2PI + 2 * log_scale + ((x - out) / log_scale.exp()).pow(2))
        return lp.flatten(1).sum(-1)
    raise ValueError(f"model.likelihood={likelihood!r} is not valid; valid choices: bernoulli, gaussian.")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def iwae_log_likelihood(
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    log_px_given_z: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    k: int,
    chunk: int = 50_000,
) -> torch.Tensor:
    """The importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x): (B,).

    It is >= the ELBO for every k and tightens as k grows (Burda et al., 2015); -mean is the NLL estimate.
    `log_px_given_z(x_rep, z)` takes (n, C, H, W) images and (n, D) latents and returns (n,).
    At most `chunk` images (batch x samples) are decoded per pass, so k = 5000 fits in memory.
    """
    b = x.shape[0]
    per_pass = max(1, chunk // b)  # samples per image in one pass
    log_w = []
    for start in range(0, k, per_pass):
        n = min(per_pass, k - start)
        z = mu.unsqueeze(0) + torch.randn(n, *mu.shape, device=mu.device) * (0.5 * logvar).exp().unsqueeze(0)  # (n, B, D)
        log_q = log_normal(z, mu.unsqueeze(0), logvar.unsqueeze(0))  # (n, B)
        log_p_z = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))  # (n, B)
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * b, *x.shape[1:])
        log_px = log_px_given_z(x_rep, z.reshape(n * b, -1)).view(n, b)
        log_w.append(log_px + log_p_z - log_q)
    log_w = torch.cat(log_w, 0)  # (k, B)
    return torch.logsumexp(log_w, 0) - math.log(k)
