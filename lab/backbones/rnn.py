"""Recurrent backbones (RNN, LSTM, GRU) over sequences of feature vectors."""

from __future__ import annotations

import torch
from torch import nn

from lab.backbones.init import initialize
from lab.checks import check_choice, check_positive

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNN(nn.Module):
    """(B, T, F) -> recurrent layers -> last hidden state (both directions) or mean over time -> (B, H*D).

    `activation`: the plain RNN's nonlinearity, tanh or relu (the two torch's nn.RNN has); LSTM and GRU cells
    have theirs fixed by their equations (sigmoid gates, tanh candidate), so they take only tanh."""

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        activation: str = "tanh",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_choice("model.backbone.cell", cell, tuple(CELLS))
        check_choice("model.backbone.pooling", pooling, ("last", "mean"))
        if cell == "rnn":
            check_choice("model.backbone.activation", activation, ("tanh", "relu"))
        elif activation != "tanh":
            raise ValueError(f"model.backbone.activation={activation!r} is not valid for model.backbone.cell={cell}: "
                             "LSTM and GRU cells have fixed activations (sigmoid gates, tanh); use activation=tanh, "
                             "or cell=rnn for activation=relu.")
        check_positive("model.backbone.input_size", input_size)
        check_positive("model.backbone.hidden_size", hidden_size)
        check_positive("model.backbone.num_layers", num_layers)
        # torch only applies dropout between layers; with one layer it would warn and do nothing.
        extra = {"nonlinearity": activation} if cell == "rnn" else {}
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional, **extra)
        initialize(self, init)
        self.cell, self.pooling, self.input_size = cell, pooling, input_size
        self.directions = 2 if bidirectional else 1
        self.out_features = hidden_size * self.directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # images (B, C, H, W) read row by row
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C*W)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"model.backbone.input_size={self.input_size} but the data gives {x.shape[-1]} features per step.")
        out, h = self.rnn(x)  # out: (B, T, H*D)
        if self.pooling == "mean":
            return out.mean(1)
        h_n = h[0] if self.cell == "lstm" else h  # (layers*D, B, H)
        return h_n[-self.directions :].transpose(0, 1).flatten(1)  # (B, H*D): last layer, every direction
