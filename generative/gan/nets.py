"""Generators and discriminators for 28x28 single-channel images; optional class conditioning.

Conditional generators concatenate a label embedding to z; conditional discriminators use the
projection trick (Miyato & Koyama, 2018): D(x, y) = psi(h(x)) + <embed(y), h(x)>.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _check(latent_dim: int, base_channels: int, image_size: int) -> None:
    if not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ValueError(f"model.generator.latent_dim={latent_dim!r} must be a positive integer.")
    if base_channels <= 0:
        raise ValueError(f"base_channels={base_channels!r} must be positive.")
    if image_size % 4:
        raise ValueError(f"image_size={image_size} must be divisible by 4.")


class Conditional(nn.Module):
    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, dim) if num_classes > 0 else None

    def condition(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("a class-conditional model needs labels y")
        return torch.cat([z, self.embed(y)], 1)


class DCGANGenerator(Conditional):
    """z (B, latent_dim) [+ label] -> Linear -> (B, 2c, S/4, S/4) -> convT (B, c, S/2, S/2) -> convT tanh (B, 1, S, S)."""

    def __init__(self, latent_dim: int = 64, base_channels: int = 64, image_size: int = 28, channels: int = 1,
                 num_classes: int = 0) -> None:
        super().__init__(num_classes, latent_dim if num_classes else 0)
        _check(latent_dim, base_channels, image_size)
        c, s = base_channels, image_size // 4
        self.latent_dim, self.output_shape = latent_dim, (channels, image_size, image_size)
        in_dim = latent_dim * (2 if num_classes else 1)
        self.net = nn.Sequential(
            nn.Linear(in_dim, 2 * c * s * s, bias=False), nn.BatchNorm1d(2 * c * s * s), nn.ReLU(True),
            nn.Unflatten(1, (2 * c, s, s)),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),  # (B, c, S/2, S/2)
            nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh(),  # (B, C, S, S) in [-1, 1]
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.condition(z, y))


class DCGANDiscriminator(Conditional):
    """(B, 1, S, S) -> conv4x4/2 LReLU -> conv4x4/2 [norm] LReLU -> features (B, 2c*S/4*S/4) -> score (B,).

    norm: batch (classic DCGAN), layer (safe with a gradient penalty, which needs per-example
    independence), spectral (spectral normalization of every weight, Miyato et al., 2018: a 1-Lipschitz
    discriminator without batch statistics), or none."""

    def __init__(self, base_channels: int = 64, image_size: int = 28, channels: int = 1, num_classes: int = 0,
                 norm: str = "batch") -> None:
        c, s = base_channels, image_size // 4
        super().__init__(num_classes, 2 * c * s * s)
        _check(1, base_channels, image_size)
        norms = {"batch": lambda: nn.BatchNorm2d(2 * c), "layer": lambda: nn.GroupNorm(1, 2 * c),
                 "spectral": lambda: nn.Identity(), "none": lambda: nn.Identity()}
        if norm not in norms:
            raise ValueError(f"model.discriminator.norm={norm!r} is not valid; valid choices: {', '.join(norms)}.")
        self.features = nn.Sequential(
            nn.Conv2d(channels, c, 4, 2, 1), nn.LeakyReLU(0.2, True),  # (B, c, S/2, S/2)
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=norm in ("none", "spectral")), norms[norm](), nn.LeakyReLU(0.2, True),
            nn.Flatten(),  # (B, 2c*s*s)
        )
        self.score = nn.Linear(2 * c * s * s, 1)
        if norm == "spectral":
            for m in [*self.features, self.score, *([self.embed] if self.embed is not None else [])]:
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.score(h).squeeze(1)  # (B,)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


class MLPGenerator(Conditional):
    """z [+ label] -> hidden ReLU layers (batch norm) -> tanh (B, 1, S, S)."""

    def __init__(self, latent_dim: int = 64, hidden_sizes: tuple[int, ...] = (256, 512, 1024), image_size: int = 28,
                 channels: int = 1, num_classes: int = 0) -> None:
        super().__init__(num_classes, latent_dim if num_classes else 0)
        _check(latent_dim, 1, 4)
        self.latent_dim, self.output_shape = latent_dim, (channels, image_size, image_size)
        layers: list[nn.Module] = []
        width = latent_dim * (2 if num_classes else 1)
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(True)]
            width = h
        layers += [nn.Linear(width, channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.condition(z, y)).view(-1, *self.output_shape)


class MLPDiscriminator(Conditional):
    """(B, 1, S, S) -> flatten -> hidden LeakyReLU layers -> score (B,)."""

    def __init__(self, hidden_sizes: tuple[int, ...] = (512, 256), image_size: int = 28, channels: int = 1,
                 num_classes: int = 0) -> None:
        super().__init__(num_classes, hidden_sizes[-1])
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.score(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out
