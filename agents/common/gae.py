"""Generalized advantage estimation (Schulman et al., 2016) over a vector-env rollout.

Termination vs truncation: a terminated episode has no future (bootstrap 0); a truncated one
(time limit) does, so its last reward is bootstrapped with gamma * V(final observation), the
observation the env reached *before* an autoreset replaced it. Either way the advantage
recursion does not cross into the next episode.
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,  # (T, N)
    values: torch.Tensor,  # (T, N): V(s_t)
    terminated: torch.Tensor,  # (T, N) bool: episode ended at step t (no bootstrap)
    truncated: torch.Tensor,  # (T, N) bool: episode cut at step t (bootstrap from final_values)
    final_values: torch.Tensor,  # (T, N): V(final observation of step t); used where truncated
    next_value: torch.Tensor,  # (N,): V(s_T), the observation after the rollout
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (advantages, returns), each (T, N); returns = advantages + values (the value targets)."""
    T = rewards.shape[0]
    done = terminated | truncated
    # Truncation: fold the bootstrapped tail into the reward, then treat the step as an episode end.
    rewards = rewards + gamma * final_values * (truncated & ~terminated).float()
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        nonterminal = (~done[t]).float()
        v_next = next_value if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * nonterminal - values[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        advantages[t] = last
    return advantages, advantages + values
