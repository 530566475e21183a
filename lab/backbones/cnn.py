"""Convolutional backbones for small images: PyTorch's MNIST-example network and LeNet."""

from __future__ import annotations

import torch
from torch import nn

from lab.backbones.init import initialize
from lab.checks import activation_class, check_positive


class CNN(nn.Module):
    """The two-conv network of PyTorch's examples/mnist, generalised.

    (B, C, S, S) -> [conv3x3 (no padding) -> (BN) -> act] x len(channels) -> maxpool2 -> dropout
    -> flatten -> Linear(hidden_size) -> act -> dropout -> (B, hidden_size); act: `activation` (ReLU in the example)
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: tuple[int, ...] = (32, 64),
        hidden_size: int = 128,
        conv_dropout: float = 0.25,
        fc_dropout: float = 0.5,
        batch_norm: bool = False,
        activation: str = "relu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_positive("model.backbone.in_channels", in_channels)
        check_positive("model.backbone.hidden_size", hidden_size)
        act = activation_class("model.backbone.activation", activation)
        if not channels or any((not isinstance(c, int)) or c <= 0 for c in channels):
            raise ValueError(f"model.backbone.channels={list(channels)} must be a non-empty list of positive integers.")
        side = (image_size - 2 * len(channels)) // 2  # each 3x3 conv trims 2 pixels, then one 2x2 pool
        if side < 1:
            raise ValueError(f"model.backbone.image_size={image_size} is too small for {len(channels)} conv layers.")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c)] if batch_norm else []
            layers += [act()]
            c_in = c
        self.features = nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(conv_dropout), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c_in * side * side, hidden_size), act(), nn.Dropout(fc_dropout))
        self.out_features = hidden_size
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dim() == 4 else x.unsqueeze(1)  # (B, C, S, S)
        return self.fc(self.features(x))  # (B, hidden_size)


class LeNet(nn.Module):
    """LeNet-5 style: (B, C, 28, 28) -> conv5x5(6, pad 2) -> pool -> conv5x5(16) -> pool -> 120 -> 84."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, activation: str = "relu", init: str = "default"
                 ) -> None:
        super().__init__()
        act = activation_class("model.backbone.activation", activation)
        side = ((image_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"model.backbone.image_size={image_size} is too small for LeNet.")
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), act(), nn.MaxPool2d(2),  # (B, 6, S/2, S/2)
            nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2),  # (B, 16, side, side)
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), act(),
            nn.Linear(120, 84), act(),
        )
        self.out_features = 84
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dim() == 4 else x.unsqueeze(1)
        return self.net(x)  # (B, 84)
