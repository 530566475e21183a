"""Policy evaluation on a vector env, and the evaluation video."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from agents.common.envs import finished_episodes

Policy = Callable[[np.ndarray, bool], np.ndarray]  # (observations, deterministic) -> actions


def evaluate(policy: Policy, env: gym.vector.VectorEnv, n_episodes: int, deterministic: bool = True,
             seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of `n_episodes` complete episodes.

    Episodes are split over the sub-envs in advance (as SB3's evaluate_policy does), so short episodes do
    not crowd out long ones. Returns are the real episode returns (before any reward scaling or clipping).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes={n_episodes!r} is not valid: it must be an integer >= 1.")
    n = env.num_envs
    targets = np.array([(n_episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    obs, _ = env.reset(seed=seed)
    while (counts < targets).any():
        obs, _, _, _, infos = env.step(policy(obs, deterministic))
        for i, ret, length in finished_episodes(infos):
            if counts[i] < targets[i]:
                returns.append(ret)
                lengths.append(length)
                counts[i] += 1
    return np.array(returns), np.array(lengths)


def evaluation_metrics(returns: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """eval/return (mean), eval/return_std (over all the episodes given) and eval/ep_len."""
    return {"eval/return": float(np.mean(returns)), "eval/return_std": float(np.std(returns)),
            "eval/ep_len": float(np.mean(lengths))}


def evaluation_lines(n_episodes: int, metrics: dict[str, float]) -> list[str]:
    """What an RL run prints after its final metrics."""
    if "eval/return" not in metrics:
        return []
    return [f"Evaluation over {n_episodes} episodes: return {metrics['eval/return']:.2f} "
            f"± {metrics['eval/return_std']:.2f}"]
