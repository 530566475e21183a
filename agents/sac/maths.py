"""SAC's maths as pure functions (Haarnoja et al., 2018; as in Stable-Baselines3's SAC and CleanRL's
sac_continuous_action.py), each with known-answer tests in tests/unit/agents/test_sac_maths.py.

Actions live in [-1, 1]^d (the policy's squashed space, what the replay buffer stores and the critics see,
as in SB3); `scale_action` / `unscale_action` map them to and from the env's Box bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
LOG_2 = math.log(2.0)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's clamp of the actor's log std


def tanh_log_abs_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2), elementwise, in the form that stays finite where tanh(u)
    rounds to +-1: 2 (log 2 - u - softplus(-2u)) (what torch's TanhTransform and Spinning Up compute)."""
    return 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))


def gaussian_log_prob_from_noise(noise: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mean, std^2) per element for u = mean + std * noise (the standardized residual is `noise`)."""
    return -0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI


def squashed_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a) of the action a = tanh(u), u ~ N(mean, exp(log_std)^2) independently per dimension:
    sum over the last dimension of log N(u) - log(1 - tanh(u)^2). (..., d) -> (...)."""
    noise = (u - mean) * torch.exp(-log_std)
    return (gaussian_log_prob_from_noise(noise, log_std) - tanh_log_abs_det_jacobian(u)).sum(-1)


def sample_squashed_gaussian(mean: torch.Tensor, log_std: torch.Tensor,
                             noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, log pi(a)) for a = tanh(mean + exp(log_std) * noise), noise ~ N(0, 1): the reparameterized sample
    (gradients flow to mean and log_std) and its log-probability, as `squashed_gaussian_log_prob`."""
    u = mean + torch.exp(log_std) * noise
    logp = (gaussian_log_prob_from_noise(noise, log_std) - tanh_log_abs_det_jacobian(u)).sum(-1)
    return torch.tanh(u), logp


def soft_td_target(rewards: torch.Tensor, discounts: torch.Tensor, next_q1: torch.Tensor, next_q2: torch.Tensor,
                   next_logp: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """The critics' regression target r + discount * (min(Q1', Q2') - alpha * log pi(a'|s')), a' ~ pi(.|s'),
    Q' the target critics. `discounts` = gamma * (1 - terminated): 0 where the episode terminated (no
    bootstrap); a time-limit truncation is bootstrapped (from the real final observation). All (B,)."""
    return rewards + discounts * (torch.minimum(next_q1, next_q2) - alpha * next_logp)


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SB3's critic loss: 0.5 * (MSE(Q1, y) + MSE(Q2, y))."""
    return 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))


def actor_loss(logp: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """mean(alpha * log pi(a|s) - min(Q1(s, a), Q2(s, a))) over a ~ pi(.|s) (reparameterized)."""
    return (alpha * logp - torch.minimum(q1, q2)).mean()


def temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """-mean(log_alpha * (log pi(a|s) + target_entropy)): gradient descent raises alpha while the policy's
    entropy (-log pi) is below the target, lowers it above. Only log_alpha gets gradients (SB3's form)."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], tau: float) -> None:
    """In place: target <- (1 - tau) * target + tau * source (tau = 1: a copy)."""
    target, source = list(target), list(source)
    if len(target) != len(source):
        raise ValueError(f"polyak_update: {len(target)} target tensors for {len(source)} source tensors.")
    torch._foreach_lerp_(target, source, tau)


def unscale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[-1, 1] -> the env's [low, high] (SB3's policy.unscale_action)."""
    return low + 0.5 * (action + 1.0) * (high - low)


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The env's [low, high] -> [-1, 1] (SB3's policy.scale_action)."""
    return 2.0 * (action - low) / (high - low) - 1.0
