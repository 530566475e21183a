"""Emission distributions of M HMMs with K states each, as unconstrained parameters (gradient ascent):
categorical over `num_symbols` symbols, a diagonal Gaussian over `input_size`-dimensional vectors, or
independent Bernoullis over `input_size` values in [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class CategoricalEmission(nn.Module):
    """log b_k(x) = log softmax(logits_k)[x]; observations (B, T) long in [0, num_symbols)."""

    def __init__(self, num_models: int, num_states: int, num_symbols: int) -> None:
        super().__init__()
        self.num_symbols = num_symbols
        self.logits = nn.Parameter(torch.randn(num_models, num_states, num_symbols) * 0.5)  # (M, K, V)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) -> (B, M, T, K)."""
        if x.dtype not in (torch.int32, torch.int64) or int(x.min()) < 0 or int(x.max()) >= self.num_symbols:
            raise ValueError(f"categorical emissions take integer symbols in [0, {self.num_symbols}) "
                             "(model.num_symbols); got other values.")
        log_p = self.logits.log_softmax(-1)  # (M, K, V)
        return log_p[:, :, x].permute(2, 0, 3, 1)  # (M, K, B, T) -> (B, M, T, K)

    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    def sample(self, model: int, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """states (N, T) of HMM `model` -> symbols (N, T)."""
        p = self.probs()[model][states]  # (N, T, V)
        return torch.multinomial(p.flatten(0, 1), 1, generator=generator).view(states.shape)


class GaussianEmission(nn.Module):
    """log b_k(x) = sum_d log N(x_d; mu_kd, sigma_kd), sigma = min_std + softplus(raw); x (B, T, D)."""

    def __init__(self, num_models: int, num_states: int, input_size: int, min_std: float = 0.05) -> None:
        super().__init__()
        self.input_size, self.min_std = input_size, min_std
        self.mean = nn.Parameter(torch.randn(num_models, num_states, input_size) * 0.1)  # (M, K, D)
        self.raw_std = nn.Parameter(torch.zeros(num_models, num_states, input_size))

    def std(self) -> torch.Tensor:
        return self.min_std + F.softplus(self.raw_std)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> (B, M, T, K)."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"Gaussian emissions take (batch, time, {self.input_size}) sequences "
                             f"(model.input_size); got shape {tuple(x.shape)}.")
        std = self.std()  # (M, K, D)
        inv_var = std.pow(-2)
        # sum_d (x - mu)^2 / s^2 expanded into three contractions, never materializing (B, M, T, K, D)
        sq = (torch.einsum("btd,mkd->bmtk", x.pow(2), inv_var) - 2 * torch.einsum("btd,mkd->bmtk", x, self.mean * inv_var)
              + (self.mean.pow(2) * inv_var).sum(-1)[None, :, None])  # (B, M, T, K)
        return -0.5 * (sq + self.input_size * LOG_2PI) - std.log().sum(-1)[None, :, None]

    def sample(self, model: int, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """states (N, T) of HMM `model` -> observations (N, T, D)."""
        mean, std = self.mean[model][states], self.std()[model][states]  # (N, T, D)
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)


class BernoulliEmission(nn.Module):
    """log b_k(x) = sum_d [x_d log p_kd + (1 - x_d) log(1 - p_kd)], p = sigmoid(logits); x (B, T, D) in [0, 1]
    (grey levels as soft bits, like the VAE's Bernoulli likelihood): per-pixel bits suit MNIST's near-binary
    pixels better than Gaussians."""

    def __init__(self, num_models: int, num_states: int, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.logits = nn.Parameter(torch.randn(num_models, num_states, input_size) * 0.1)  # (M, K, D)

    def init_from_rows(self, model: int, state: int, rows: torch.Tensor) -> None:
        p = rows.mean(0).clamp(0.01, 0.99)
        self.logits[model, state] = torch.log(p) - torch.log1p(-p)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> (B, M, T, K)."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"Bernoulli emissions take (batch, time, {self.input_size}) sequences in [0, 1] "
                             f"(model.input_size); got shape {tuple(x.shape)}.")
        log_p, log_q = F.logsigmoid(self.logits), F.logsigmoid(-self.logits)  # log p, log (1 - p): (M, K, D)
        return torch.einsum("btd,mkd->bmtk", x, log_p - log_q) + log_q.sum(-1)[None, :, None]

    def sample(self, model: int, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """states (N, T) of HMM `model` -> pixel probabilities (N, T, D) (the mean image, as VAEs draw theirs)."""
        return torch.sigmoid(self.logits[model][states])
