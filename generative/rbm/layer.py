"""The Bernoulli-Bernoulli restricted Boltzmann machine, as the maths reads (Hinton, 2010, "A practical
guide to training RBMs"): energy E(v, h) = -v.W.h - b.v - c.h over binary v (V,) and h (H,).

    p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)      p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)
    free energy F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + (v W)_j),  p(v) = exp(-F(v)) / Z

Contrastive divergence: the gradient of mean F(v_data) - mean F(v_model), with v_model from k Gibbs steps
(started at the data: CD-k; at persistent chains: PCD) and held fixed, is the CD estimate of the negative
log-likelihood's gradient (the log Z term's gradient is E_model[dF/dtheta]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RBMLayer(nn.Module):
    """W (V, H) ~ N(0, 0.01^2), biases b (V,) and c (H,) at zero."""

    def __init__(self, visible: int, hidden: int) -> None:
        super().__init__()
        if visible < 1 or hidden < 1:
            raise ValueError(f"an RBM needs visible >= 1 and hidden >= 1 units (got {visible} and {hidden}).")
        self.W = nn.Parameter(torch.randn(visible, hidden) * 0.01)
        self.b = nn.Parameter(torch.zeros(visible))  # visible biases
        self.c = nn.Parameter(torch.zeros(hidden))  # hidden biases

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """(B, V) -> F(v) (B,)."""
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(-1)

    def p_h(self, v: torch.Tensor) -> torch.Tensor:
        """(B, V) -> p(h = 1 | v) (B, H)."""
        return torch.sigmoid(v @ self.W + self.c)

    def p_v(self, h: torch.Tensor) -> torch.Tensor:
        """(B, H) -> p(v = 1 | h) (B, V)."""
        return torch.sigmoid(h @ self.W.t() + self.b)

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k steps v -> h -> v of block Gibbs sampling: (the last binary v (B, V), its p(v | h) (B, V))."""
        p = v
        for _ in range(k):
            h = torch.bernoulli(self.p_h(v))
            p = self.p_v(h)
            v = torch.bernoulli(p)
        return v, p

    def cd_loss(self, v_data: torch.Tensor, v_model: torch.Tensor) -> torch.Tensor:
        """mean F(v_data) - mean F(v_model): its gradient is the CD / PCD update (v_model is not differentiated)."""
        return self.free_energy(v_data).mean() - self.free_energy(v_model.detach()).mean()

    @torch.no_grad()
    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Mean squared error per pixel of the mean-field reconstruction p(v | p(h | v)): (B, V) -> (B,)."""
        return (self.p_v(self.p_h(v)) - v).pow(2).mean(-1)

    @torch.no_grad()
    def pseudo_log_likelihood(self, v: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """sum_i log p(v_i | v_-i) per example (B,), exact (every bit), for binary v.

        p(v_i | v_-i) = sigmoid(F(v with bit i flipped) - F(v)); flipping bit i changes v.W by +-W_i and
        v.b by +-b_i, so all V flips cost one (chunk, V, H) tensor instead of V free energies."""
        out = []
        for vc in v.split(chunk):
            pre = vc @ self.W + self.c  # (B, H)
            sign = 1.0 - 2.0 * vc  # (B, V): +1 where the bit is 0 (flip adds W_i), -1 where it is 1
            flipped = pre.unsqueeze(1) + sign.unsqueeze(-1) * self.W.unsqueeze(0)  # (B, V, H)
            f_flip = -(vc @ self.b).unsqueeze(1) - sign * self.b - F.softplus(flipped).sum(-1)  # (B, V)
            f = -(vc @ self.b) - F.softplus(pre).sum(-1)  # (B,)
            out.append(F.logsigmoid(f_flip - f.unsqueeze(1)).sum(-1))
        return torch.cat(out)
