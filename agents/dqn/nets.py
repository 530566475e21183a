"""Q-networks: MLP or Nature CNN encoder, plain or dueling head."""

from __future__ import annotations

import torch
from torch import nn

from agents.common.nets import NatureCNN, check_encoder, mlp


class QNetwork(nn.Module):
    """Q(s, .) for every discrete action. Dueling (Wang et al., 2016): Q = V + A - mean(A)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, net_arch: list[int], activation: str,
                 encoder: str, dueling: bool) -> None:
        super().__init__()
        check_encoder(obs_shape, encoder)
        if encoder == "nature_cnn":
            self.body: nn.Module = NatureCNN(obs_shape[0])
            width = self.body.out_dim
        else:
            self.body, width = mlp(obs_shape[0], net_arch, activation)
        self.dueling = dueling
        self.advantage = nn.Linear(width, n_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs) -> (B, n_actions)
        h = self.body(obs)
        a = self.advantage(h)
        if self.value is None:
            return a
        return self.value(h) + a - a.mean(dim=-1, keepdim=True)
