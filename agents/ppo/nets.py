"""PPO actor-critics: separate MLP towers (SB3's MlpPolicy) or a shared Nature CNN (CnnPolicy)."""

from __future__ import annotations

import math

import torch
from gymnasium import spaces
from torch import nn

from agents.common.nets import NatureCNN, check_encoder, mlp, orthogonal_init

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
        if encoder == "nature_cnn":  # one shared encoder, linear heads on top
            self.pi_body = NatureCNN(obs_shape[0])
            self.vf_body = None
            pi_dim = vf_dim = self.pi_body.out_dim
        else:  # separate towers, like SB3's default net_arch=dict(pi=[64, 64], vf=[64, 64])
            self.pi_body, pi_dim = mlp(obs_shape[0], net_arch, activation)
            self.vf_body, vf_dim = mlp(obs_shape[0], net_arch, activation)
            if ortho_init:
                orthogonal_init(self.pi_body, math.sqrt(2))
                orthogonal_init(self.vf_body, math.sqrt(2))
        self.pi_head = nn.Linear(pi_dim, out)  # logits or Gaussian mean
        self.vf_head = nn.Linear(vf_dim, 1)
        if ortho_init:
            orthogonal_init(self.pi_head, 0.01)
            orthogonal_init(self.vf_head, 1.0)
        self.log_std = None if self.discrete else nn.Parameter(torch.full((out,), float(log_std_init)))

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pi = self.pi_body(obs)
        return pi, (pi if self.vf_body is None else self.vf_body(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs) -> (B,)
        return self.vf_head(self._features(obs)[1]).squeeze(-1)

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
        pi, vf = self._features(obs)
        out = self.pi_head(pi)
        if self.discrete:
            if deterministic:
                action = out.argmax(-1)
            else:
                action = torch.multinomial(torch.softmax(out, -1), 1).squeeze(-1)
        else:
            action = out if deterministic else out + torch.exp(self.log_std) * torch.randn_like(out)
        logp, _ = self._log_prob(out, action)
        return action, logp, self.vf_head(vf).squeeze(-1)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """(log pi(a|s), entropy, V(s)), each (B,), with gradients."""
        pi, vf = self._features(obs)
        logp, entropy = self._log_prob(self.pi_head(pi), actions)
        return logp, entropy, self.vf_head(vf).squeeze(-1)
