"""Network pieces shared by the agents: MLPs, the Nature DQN CNN, SB3's orthogonal initialization."""

from __future__ import annotations

import math

import torch
from torch import nn

from lab.checks import activation_class


def mlp(in_dim: int, hidden: list[int], act: str) -> tuple[nn.Sequential, int]:
    """Linear + activation layers; returns (module, output width)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation_class("agent.activation", act)()]
        in_dim = width
    return nn.Sequential(*layers), in_dim


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights, zero biases (SB3's ortho_init; gains sqrt(2) hidden, 0.01 policy, 1 value)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


class NatureCNN(nn.Module):
    """Mnih et al. (2015) encoder: (B, C, 84, 84) uint8 frames -> (B, 512) features."""

    def __init__(self, in_channels: int, features: int = 512) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),  # (B, 32, 20, 20)
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # (B, 64, 9, 9)
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),  # (B, 64, 7, 7)
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(64 * 7 * 7, features), nn.ReLU())
        self.out_dim = features
        orthogonal_init(self, math.sqrt(2))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(obs.float() / 255.0))


def check_encoder(obs_shape: tuple[int, ...], encoder: str) -> None:
    """Check that the observation shape suits the encoder (ValueError naming both otherwise)."""
    if encoder == "nature_cnn" and (len(obs_shape) != 3 or obs_shape[1:] != (84, 84)):
        raise ValueError(f"agent.encoder='nature_cnn' needs (frames, 84, 84) observations (env.atari=true), "
                         f"got shape {obs_shape}; use encoder='mlp' for vector observations.")
    if encoder == "mlp" and len(obs_shape) != 1:
        raise ValueError(f"agent.encoder='mlp' needs flat vector observations, got shape {obs_shape}; "
                         "use encoder='nature_cnn' for Atari frames.")
    if encoder not in ("mlp", "nature_cnn"):
        raise ValueError(f"agent.encoder={encoder!r} is not valid; valid choices: mlp, nature_cnn.")
