"""A ResNet for 28x28 inputs built from torchvision's BasicBlock."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from lab.backbones.init import initialize
from lab.checks import activation_class, check_positive


class ResNet(nn.Module):
    """(B, C, 28, 28) -> 3x3 stem -> stages of BasicBlocks (stride 1, then 2 per stage, width doubling)
    -> global average pool -> (B, width * 2**(len(blocks)-1)). `activation` replaces the ReLUs of the stem and
    of every block (ReLU is ResNet's own)."""

    def __init__(self, in_channels: int = 1, width: int = 32, blocks: tuple[int, ...] = (2, 2, 2),
                 activation: str = "relu", init: str = "default") -> None:
        super().__init__()
        check_positive("model.backbone.width", width)
        act = activation_class("model.backbone.activation", activation)
        if not blocks or any((not isinstance(b, int)) or b <= 0 for b in blocks):
            raise ValueError(f"model.backbone.blocks={list(blocks)} must be a non-empty list of positive integers.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), act()
        )
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out, stride = width * 2**i, 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != c_out:
                down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            layer = [BasicBlock(c_in, c_out, stride, down)] + [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layer))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = c_in
        for m in self.modules():  # zero-init the last BN of each block: a standard ResNet trick
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
                m.relu = act()  # BasicBlock applies its `relu` after bn1 and after the residual sum
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dim() == 4 else x.unsqueeze(1)  # (B, C, H, W)
        return self.pool(self.stages(self.stem(x)))  # (B, out_features)
