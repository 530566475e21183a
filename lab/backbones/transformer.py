"""Transformer encoder over row tokens or image patches."""

from __future__ import annotations

import torch
from torch import nn

from lab.backbones.init import initialize
from lab.checks import activation_class, check_choice, check_positive


class Transformer(nn.Module):
    """Rows (B, T, F) -> Linear(F, d), or patches (B, C, S, S) -> Conv(p, stride p) -> (B, N, d);
    + learned positions (+ CLS) -> pre-norm encoder layers -> LayerNorm -> CLS token or mean -> (B, d).
    `activation`: the feed-forward sublayers' (GELU by default, as in BERT / ViT)."""

    def __init__(
        self,
        tokens: str = "row",
        input_size: int = 28,
        seq_len: int = 28,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int = 4,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 4,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        pooling: str = "cls",
        activation: str = "gelu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_choice("model.backbone.tokens", tokens, ("row", "patch"))
        check_choice("model.backbone.pooling", pooling, ("cls", "mean"))
        for key, value in (("d_model", d_model), ("nhead", nhead), ("num_layers", num_layers),
                           ("dim_feedforward", dim_feedforward), ("input_size", input_size), ("seq_len", seq_len)):
            check_positive(f"model.backbone.{key}", value)
        if d_model % nhead:
            raise ValueError(f"model.backbone.d_model={d_model} must be divisible by model.backbone.nhead={nhead}.")
        if tokens == "row":
            self.embed: nn.Module = nn.Linear(input_size, d_model)
            n_tokens = seq_len
        else:
            if patch_size <= 0 or image_size % patch_size:
                raise ValueError(f"model.backbone.patch_size={patch_size} must divide backbone.image_size={image_size}.")
            self.embed = nn.Conv2d(in_channels, d_model, patch_size, stride=patch_size)
            n_tokens = (image_size // patch_size) ** 2
        self.tokens, self.pooling, self.input_size, self.n_tokens = tokens, pooling, input_size, n_tokens
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.pos = nn.Parameter(torch.randn(1, n_tokens + (pooling == "cls"), d_model) * 0.02)
        act = activation_class("model.backbone.activation", activation)()
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation=act,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out_features = d_model
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens == "row":
            if x.dim() == 4:  # (B, C, H, W) read row by row
                x = x.permute(0, 2, 1, 3).flatten(2)
            if x.shape[-1] != self.input_size or x.shape[1] != self.n_tokens:
                raise ValueError(f"model.backbone.seq_len={self.n_tokens}, backbone.input_size={self.input_size} "
                                 f"but the data gives sequences of shape {tuple(x.shape[1:])}.")
            t = self.embed(x)  # (B, T, d)
        else:
            x = x if x.dim() == 4 else x.unsqueeze(1)  # (B, C, S, S)
            t = self.embed(x).flatten(2).transpose(1, 2)  # (B, N, d)
            if t.shape[1] != self.n_tokens:
                raise ValueError(f"model.backbone.image_size implies {self.n_tokens} patches, the data gives {t.shape[1]}.")
        if self.cls is not None:
            # t.shape[0], not len(t): ONNX export would freeze len(t) to the example's batch size
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)  # (B, 1+N, d)
        t = self.norm(self.encoder(t + self.pos))
        return t[:, 0] if self.cls is not None else t.mean(1)  # (B, d)
