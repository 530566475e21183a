"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

import torch
from torch import nn

from lab.backbones.common import check_positive, make_activation


class MLP(nn.Module):
    """(B, *input) -> flatten (B, input_size) -> [Linear -> (BatchNorm) -> act -> (Dropout)] x len(hidden_sizes)."""

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: tuple[int, ...] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive("backbone.input_size", input_size)
        for i, h in enumerate(hidden_sizes):
            if not isinstance(h, int) or h <= 0:
                raise ValueError(f"backbone.hidden_sizes={list(hidden_sizes)}: entry {i} ({h!r}) must be a positive integer.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"backbone.dropout={dropout!r} must be in [0, 1).")
        layers: list[nn.Module] = []
        width = input_size
        for h in hidden_sizes:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.input_size = input_size
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, input_size)
        if x.shape[1] != self.input_size:
            raise ValueError(f"backbone.input_size={self.input_size} but the data gives {x.shape[1]} values per example.")
        return self.net(x)  # (B, out_features)
