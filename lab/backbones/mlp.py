"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

import torch
from torch import nn

from lab.backbones.init import initialize
from lab.checks import activation_class, check_positive


class MLP(nn.Module):
    """(B, *input) -> flatten (B, in_features) -> [Linear -> (BatchNorm) -> act -> (Dropout)] x len(hidden_sizes).

    No hidden sizes: the flattened input itself (a linear model once a model adds its head)."""

    def __init__(
        self,
        in_features: int = 784,
        hidden_sizes: tuple[int, ...] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        check_positive("model.backbone.in_features", in_features)
        for i, h in enumerate(hidden_sizes):
            if not isinstance(h, int) or h <= 0:
                raise ValueError(f"model.backbone.hidden_sizes={list(hidden_sizes)}: entry {i} ({h!r}) must be a positive integer.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.backbone.dropout={dropout!r} must be in [0, 1).")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(activation_class("model.backbone.activation", activation)())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, in_features)
        if x.shape[1] != self.in_features:
            raise ValueError(f"model.backbone.in_features={self.in_features} but the data gives {x.shape[1]} values per example.")
        return self.net(x)  # (B, out_features)
