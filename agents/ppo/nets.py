"""PPO actor-critics for any observation space and SB3's action spaces: separate MLP towers (SB3's MlpPolicy,
computed as one TwinMLP) after the observation encoder, or a shared CNN (CnnPolicy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from agents.common.nets import TwinMLP, orthogonal_init
from agents.common.spaces import ObsEncoder

LOG_2PI = math.log(2 * math.pi)


ACTION_SPACES = "Discrete, Box, MultiDiscrete, MultiBinary"


def action_kind(space: spaces.Space) -> str:
    """discrete | box | multi_discrete | binary (ValueError for an action space PPO cannot take)."""
    for cls, kind in ((spaces.Discrete, "discrete"), (spaces.Box, "box"), (spaces.MultiDiscrete, "multi_discrete"),
                      (spaces.MultiBinary, "binary")):
        if isinstance(space, cls):
            return kind
    raise ValueError(f"PPO takes {ACTION_SPACES} action spaces (like Stable-Baselines3's); the env has {space}.")


def sample_categorical(logits: torch.Tensor) -> torch.Tensor:
    """(B, n) logits -> (B,) samples by inverse CDF: the first action whose cumulative probability exceeds
    u ~ U(0, 1). The same distribution as torch.multinomial, in a third of its time for a few actions."""
    u = torch.rand(logits.shape[0], 1, device=logits.device)
    below = (torch.softmax(logits, -1).cumsum(-1) <= u).sum(-1)
    return below.clamp_(max=logits.shape[-1] - 1)  # u beyond a rounded-down total


class ActorCritic(nn.Module):
    """pi(a|s) and V(s) for any observation space (`ObsEncoder`) and SB3's action distributions: categorical
    (Discrete), one categorical per component (MultiDiscrete), independent Bernoullis (MultiBinary), diagonal
    Gaussian with a state-independent log std (Box). The distributions are written out (no torch.distributions
    objects): this runs once per env step, where their argument checks would cost more than the networks.

    Bodies: an image observation alone shares one CNN, with linear heads on top (SB3's CnnPolicy); anything
    else goes through separate policy and value MLP towers (SB3's MlpPolicy / MultiInputPolicy), after the
    encoder (one-hots, a CNN per image of a Dict, ...)."""

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Space, net_arch: list[int],
                 activation: str, ortho_init: bool, log_std_init: float, encoder: str) -> None:
        super().__init__()
        self.kind = action_kind(action_space)
        self.discrete = self.kind == "discrete"
        self.nvec: list[int] = []  # the components' sizes of a MultiDiscrete space
        if self.kind == "discrete":
            out = int(action_space.n)
            self.action_shape: tuple[int, ...] = ()  # one env's action as the rollout buffer stores it: an index
        elif self.kind == "multi_discrete":
            self.nvec = [int(n) for n in np.asarray(action_space.nvec).reshape(-1)]
            out = sum(self.nvec)
            self.action_shape = (len(self.nvec),)  # an index per component
        else:
            out = int(math.prod(action_space.shape))
            self.action_shape = (out,)  # a flat vector (Box, MultiBinary)
        self.encoder = ObsEncoder(obs_space, encoder)
        self.body: TwinMLP | None = None
        if not self.encoder.single_image:  # separate towers, like SB3's default net_arch=dict(pi=[64, 64], vf=[64, 64])
            self.body = TwinMLP(self.encoder.out_dim, net_arch, activation)
            if ortho_init:
                orthogonal_init(self.body, math.sqrt(2))
        width = self.encoder.out_dim if self.body is None else self.body.out_dim
        self.pi_head = nn.Linear(width, out)  # logits or Gaussian mean
        self.vf_head = nn.Linear(width, 1)
        if ortho_init:
            orthogonal_init(self.pi_head, 0.01)
            orthogonal_init(self.vf_head, 1.0)
        self.log_std = nn.Parameter(torch.full((out,), float(log_std_init))) if self.kind == "box" else None

    def features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy features, value features), each (B, width): the towers' outputs, or the CNN's twice."""
        h = self.encoder(obs)
        if self.body is None:
            return h, h
        return self.body(h)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints written before the towers were stacked hold two nn.Sequential towers, pi_body and vf_body;
        # those written before ObsEncoder hold the Atari CNN as `body` (or, older still, `pi_body`).
        old = [k for k in state_dict if k.startswith((prefix + "pi_body.", prefix + "vf_body."))]
        if old and isinstance(self.body, TwinMLP):
            for i in range(len(self.body.widths)):
                w = [state_dict.pop(f"{prefix}{t}_body.{2 * i}.weight") for t in ("pi", "vf")]
                b = [state_dict.pop(f"{prefix}{t}_body.{2 * i}.bias") for t in ("pi", "vf")]
                state_dict[f"{prefix}body.weights.{i}"] = torch.stack(w).transpose(1, 2)  # (2, in, out)
                state_dict[f"{prefix}body.biases.{i}"] = torch.stack(b)[:, None]
        elif old:  # the shared CNN was pi_body
            for k in old:
                state_dict[prefix + "encoder.extractors.0." + k[len(prefix + "pi_body."):]] = state_dict.pop(k)
        if self.body is None:
            for k in [k for k in state_dict if k.startswith((prefix + "body.conv.", prefix + "body.fc."))]:
                state_dict[prefix + "encoder.extractors.0." + k[len(prefix + "body."):]] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def value(self, obs: torch.Tensor) -> torch.Tensor:  # (B, *obs) -> (B,)
        return self.vf_head(self.features(obs)[1]).squeeze(-1)

    def _log_prob(self, out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(a|s), entropy), each (B,)."""
        if self.kind == "discrete":
            logp = torch.log_softmax(out, dim=-1)  # (B, n)
            entropy = -(logp.exp() * logp).sum(-1)
            return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy
        if self.kind == "multi_discrete":  # independent categoricals: log-probs and entropies add
            logps = [torch.log_softmax(o, dim=-1) for o in out.split(self.nvec, dim=-1)]  # (B, n_i) each
            logp = sum(lp.gather(-1, actions[:, i].long().unsqueeze(-1)).squeeze(-1) for i, lp in enumerate(logps))
            entropy = sum(-(lp.exp() * lp).sum(-1) for lp in logps)
            return logp, entropy
        if self.kind == "binary":  # independent Bernoullis with logits `out`
            log_p, log_q = F.logsigmoid(out), F.logsigmoid(-out)  # log p(1), log p(0)
            logp = (actions * log_p + (1 - actions) * log_q).sum(-1)
            entropy = -(log_p.exp() * log_p + log_q.exp() * log_q).sum(-1)
            return logp, entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) * torch.exp(-log_std)
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
        entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum(-1)
        return logp, entropy

    def _sample(self, out: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.kind == "discrete":
            return out.argmax(-1) if deterministic else sample_categorical(out)
        if self.kind == "multi_discrete":  # (B, components)
            pick = (lambda o: o.argmax(-1)) if deterministic else sample_categorical
            return torch.stack([pick(o) for o in out.split(self.nvec, dim=-1)], dim=-1)
        if self.kind == "binary":  # the mode, or Bernoulli draws
            return (out > 0 if deterministic else torch.rand_like(out) < torch.sigmoid(out)).float()
        return out if deterministic else out + torch.exp(self.log_std) * torch.randn_like(out)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log pi(action|s), V(s)) for a batch of observations."""
        pi, vf = self.features(obs)
        out = self.pi_head(pi)
        action = self._sample(out, deterministic)
        logp, _ = self._log_prob(out, action)
        return action, logp, self.vf_head(vf).squeeze(-1)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """(log pi(a|s), entropy, V(s)), each (B,), with gradients."""
        pi, vf = self.features(obs)
        logp, entropy = self._log_prob(self.pi_head(pi), actions)
        return logp, entropy, self.vf_head(vf).squeeze(-1)
