"""PPO actor-critics: separate MLP towers (SB3's MlpPolicy, computed as one TwinMLP) or a shared Nature CNN
(CnnPolicy)."""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from agents.common.nets import NatureCNN, TwinMLP, check_encoder, orthogonal_init

LOG_2PI = math.log(2 * math.pi)


class ActorCritic(nn.Module):
    """pi(a|s) and V(s). Discrete actions: categorical over logits; Box actions: diagonal Gaussian with a
    state-independent log std. The distributions are written out (no torch.distributions objects): this
    runs once per env step, where their argument checks would cost more than the networks."""

    def __init__(self, obs_shape: tuple[int, ...], action_space: spaces.Space, net_arch: list[int],
                 activation: str, ortho_init: bool, log_std_init: float, encoder: str) -> None:
        super().__init__()
        check_encoder(obs_shape, encoder)
        self.discrete = isinstance(action_space, spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(math.prod(action_space.shape))
        self.body: NatureCNN | TwinMLP
        if encoder == "nature_cnn":  # one shared encoder, linear heads on top
            self.body = NatureCNN(obs_shape[0])
        else:  # separate towers, like SB3's default net_arch=dict(pi=[64, 64], vf=[64, 64])
            self.body = TwinMLP(obs_shape[0], net_arch, activation)
            if ortho_init:
                orthogonal_init(self.body, math.sqrt(2))
        self.pi_head = nn.Linear(self.body.out_dim, out)  # logits or Gaussian mean
        self.vf_head = nn.Linear(self.body.out_dim, 1)
        if ortho_init:
            orthogonal_init(self.pi_head, 0.01)
            orthogonal_init(self.vf_head, 1.0)
        self.log_std = None if self.discrete else nn.Parameter(torch.full((out,), float(log_std_init)))

    def features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy features, value features), each (B, width): the towers' outputs, or the CNN's twice."""
        if isinstance(self.body, TwinMLP):
            return self.body(obs)
        h = self.body(obs)
        return h, h

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints written before the towers were stacked hold two nn.Sequential towers, pi_body and vf_body.
        old = [k for k in state_dict if k.startswith((prefix + "pi_body.", prefix + "vf_body."))]
        if old and isinstance(self.body, TwinMLP):
            for i in range(len(self.body.widths)):
                w = [state_dict.pop(f"{prefix}{t}_body.{2 * i}.weight") for t in ("pi", "vf")]
                b = [state_dict.pop(f"{prefix}{t}_body.{2 * i}.bias") for t in ("pi", "vf")]
                state_dict[f"{prefix}body.weights.{i}"] = torch.stack(w).transpose(1, 2)  # (2, in, out)
                state_dict[f"{prefix}body.biases.{i}"] = torch.stack(b)[:, None]
        elif old:  # the shared CNN was pi_body
            for k in old:
                state_dict[prefix + "body." + k[len(prefix + "pi_body."):]] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def value(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs) -> (B,)
        return self.vf_head(self.features(obs)[1]).squeeze(-1)

    def _log_prob(self, out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(a|s), entropy), each (B,)."""
        if self.discrete:
            logp = torch.log_softmax(out, dim=-1)  # (B, n)
            entropy = -(logp.exp() * logp).sum(-1)
            return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) * torch.exp(-log_std)
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
        entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum(-1)
        return logp, entropy

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log pi(action|s), V(s)) for a batch of observations."""
        pi, vf = self.features(obs)
        out = self.pi_head(pi)
        if self.discrete:
            if deterministic:
                action = out.argmax(-1)
            else:
                # inverse-CDF sampling: the first action whose cumulative probability exceeds u ~ U(0, 1);
                # the same distribution as torch.multinomial, in a third of its time for a few actions
                u = torch.rand(out.shape[0], 1, device=out.device)
                below = (torch.softmax(out, -1).cumsum(-1) <= u).sum(-1)
                action = below.clamp_(max=out.shape[-1] - 1)  # u beyond a rounded-down total
        else:
            action = out if deterministic else out + torch.exp(self.log_std) * torch.randn_like(out)
        logp, _ = self._log_prob(out, action)
        return action, logp, self.vf_head(vf).squeeze(-1)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """(log pi(a|s), entropy, V(s)), each (B,), with gradients."""
        pi, vf = self.features(obs)
        logp, entropy = self._log_prob(self.pi_head(pi), actions)
        return logp, entropy, self.vf_head(vf).squeeze(-1)
