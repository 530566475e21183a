"""Encoders q(z | x) and decoders p(x | z) for 28x28 single-channel images."""

from __future__ import annotations

import torch
from torch import nn


def _positive(key: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key}={value!r} must be a positive integer.")


class MLPEncoder(nn.Module):
    """(B, 1, 28, 28) -> flatten 784 -> hidden ReLU layers -> mu, logvar (B, latent_dim).
    With hidden_sizes [400] and latent_dim 20 it is Kingma & Welling's / PyTorch examples' 784-400-20."""

    def __init__(self, latent_dim: int = 20, hidden_sizes: tuple[int, ...] = (400,), image_size: int = 28,
                 in_channels: int = 1) -> None:
        super().__init__()
        _positive("model.latent_dim", latent_dim)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size * image_size
        for h in hidden_sizes:
            _positive("model.encoder.hidden_sizes[*]", h)
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.mu, self.logvar = nn.Linear(width, latent_dim), nn.Linear(width, latent_dim)
        self.input_shape = (in_channels, image_size, image_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)  # (B, hidden)
        return self.mu(h), self.logvar(h)  # (B, D), (B, D)


class MLPDecoder(nn.Module):
    """(B, latent_dim) -> hidden ReLU layers -> (B, 1, 28, 28) logits (bernoulli) or means (gaussian)."""

    def __init__(self, latent_dim: int = 20, hidden_sizes: tuple[int, ...] = (400,), image_size: int = 28,
                 in_channels: int = 1) -> None:
        super().__init__()
        _positive("model.latent_dim", latent_dim)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, in_channels * image_size * image_size)]
        self.body = nn.Sequential(*layers)
        self.output_shape = (in_channels, image_size, image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.output_shape)  # (B, C, H, W)


class ConvEncoder(nn.Module):
    """(B, 1, 28, 28) -> conv4x4/2 (14x14) -> conv4x4/2 (7x7) -> Linear(hidden) -> mu, logvar (B, latent_dim)."""

    def __init__(self, latent_dim: int = 32, channels: int = 32, hidden_size: int = 256, image_size: int = 28,
                 in_channels: int = 1) -> None:
        super().__init__()
        _positive("model.latent_dim", latent_dim)
        if image_size % 4:
            raise ValueError(f"model.encoder.image_size={image_size} must be divisible by 4 (two stride-2 convs).")
        s = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 4, 2, 1), nn.ReLU(),  # (B, c, S/2, S/2)
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.ReLU(),  # (B, 2c, S/4, S/4)
            nn.Flatten(), nn.Linear(2 * channels * s * s, hidden_size), nn.ReLU(),
        )
        self.mu, self.logvar = nn.Linear(hidden_size, latent_dim), nn.Linear(hidden_size, latent_dim)
        self.input_shape = (in_channels, image_size, image_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> Linear -> (B, 2c, 7, 7) -> convT4x4/2 (14x14) -> convT4x4/2 -> (B, 1, 28, 28)."""

    def __init__(self, latent_dim: int = 32, channels: int = 32, hidden_size: int = 256, image_size: int = 28,
                 in_channels: int = 1) -> None:
        super().__init__()
        _positive("model.latent_dim", latent_dim)
        s = image_size // 4
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 2 * channels * s * s), nn.ReLU(),
            nn.Unflatten(1, (2 * channels, s, s)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.ReLU(),  # (B, c, S/2, S/2)
            nn.ConvTranspose2d(channels, in_channels, 4, 2, 1),  # (B, C, S, S)
        )
        self.output_shape = (in_channels, image_size, image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
