"""Q-networks for any observation space (`ObsEncoder`: an MLP on vectors and one-hots, a CNN on images),
plain or dueling head."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from agents.common.nets import mlp
from agents.common.spaces import ObsEncoder


class QNetwork(nn.Module):
    """Q(s, .) for every discrete action. Dueling (Wang et al., 2016): Q = V + A - mean(A). An image observation
    alone goes through the CNN straight to the heads (the Nature DQN); anything else through the encoder and
    an MLP of `net_arch`."""

    def __init__(self, obs_space: spaces.Space, n_actions: int, net_arch: list[int], activation: str,
                 encoder: str, dueling: bool) -> None:
        super().__init__()
        self.encoder = ObsEncoder(obs_space, encoder)
        if self.encoder.single_image:
            self.body, width = nn.Sequential(), self.encoder.out_dim
        else:
            self.body, width = mlp(self.encoder.out_dim, net_arch, activation)
        self.dueling = dueling
        self.advantage = nn.Linear(width, n_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints written before ObsEncoder hold the Atari CNN as `body`
        if self.encoder.single_image:
            for k in [k for k in state_dict if k.startswith((prefix + "body.conv.", prefix + "body.fc."))]:
                state_dict[prefix + "encoder.extractors.0." + k[len(prefix + "body."):]] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs) -> (B, n_actions)
        h = self.body(self.encoder(obs))
        a = self.advantage(h)
        if self.value is None:
            return a
        return self.value(h) + a - a.mean(dim=-1, keepdim=True)
