"""Vector-env normalization whose statistics travel in checkpoints.

Gymnasium's vector `NormalizeObservation` refuses same-step autoreset (it would leave `info["final_obs"]`
unnormalized), so observations are normalized here with Gymnasium's own `RunningMeanStd`, final
observations included. Rewards use Gymnasium's vector `NormalizeReward`, plus SB3 VecNormalize's clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.wrappers.utils import RunningMeanStd
from gymnasium.wrappers.vector import NormalizeReward as _GymNormalizeReward


def _rms_state(rms: RunningMeanStd) -> dict[str, torch.Tensor]:
    return {"mean": torch.as_tensor(np.asarray(rms.mean, dtype=np.float64)),
            "var": torch.as_tensor(np.asarray(rms.var, dtype=np.float64)),
            "count": torch.tensor(float(rms.count), dtype=torch.float64)}


def _load_rms(rms: RunningMeanStd, state: dict[str, torch.Tensor]) -> None:
    rms.mean = state["mean"].numpy().copy()
    rms.var = state["var"].numpy().copy()
    rms.count = float(state["count"])


def merge_statistics(states: list[dict[str, torch.Tensor]], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The running statistics of all the data seen by several copies of one RunningMeanStd that each started
    from `base` (e.g. one per DDP process since their last merge): counts, sums and sums of squares add,
    with the shared start counted once."""
    def sums(st: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = st["count"].double()
        mean = st["mean"].double()
        return n, n * mean, n * (st["var"].double() + mean**2)

    extra = len(states) - 1  # copies of the base beyond the one counted
    n0, s0, q0 = sums(base)
    each = [sums(st) for st in states]
    n = sum(e[0] for e in each) - extra * n0
    s = sum(e[1] for e in each) - extra * s0
    q = sum(e[2] for e in each) - extra * q0
    mean = s / n
    return {"mean": mean, "var": (q / n - mean**2).clamp_min(0.0), "count": n}


class SyncedStatistics:
    """Normalization statistics that DDP processes merge; `synced` is the state they last shared (the
    start, a loaded checkpoint or the last merge), which each process's own updates add to."""

    synced: dict[str, torch.Tensor]

    def merge(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Take the statistics of all processes' data, given every process's `state_dict()` (this one's too)."""
        self.load_state_dict(merge_statistics(states, self.synced))  # type: ignore[attr-defined]


class NormalizeObservation(SyncedStatistics, VectorWrapper):
    """(obs - mean) / sqrt(var + eps), clipped to [-clip, clip]; statistics updated while `update`. `mask`
    (over the last axis of flat observations) limits it to those numbers, the rest passing unchanged."""

    def __init__(self, env: VectorEnv, clip: float = 10.0, epsilon: float = 1e-8, update: bool = True,
                 mask: np.ndarray | None = None) -> None:
        super().__init__(env)
        shape = env.single_observation_space.shape
        bound = clip if mask is None else np.inf
        box = spaces.Box(-bound, bound, shape=shape, dtype=np.float32)
        self.single_observation_space = box
        self.observation_space = spaces.Box(-bound, bound, shape=(env.num_envs, *box.shape), dtype=np.float32)
        self.mask = mask
        self.obs_rms = RunningMeanStd(shape=shape if mask is None else (int(mask.sum()),), dtype=np.float64)
        self.clip, self.epsilon, self.update = clip, epsilon, update
        self.synced = self.state_dict()

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            out = np.asarray(obs, dtype=np.float32).copy()
            out[..., self.mask] = self._scaled(out[..., self.mask])
            return out
        return self._scaled(obs)

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        out = (x - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def _update(self, obs: np.ndarray) -> None:
        if self.update:
            self.obs_rms.update(obs if self.mask is None else obs[..., self.mask])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._update(obs)
        return self.normalize(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if "final_obs" in info:  # same-step autoreset: the ended episodes' last observations
            final = np.empty(len(info["final_obs"]), dtype=object)
            for i, o in enumerate(info["final_obs"]):
                final[i] = None if o is None else self.normalize(o)
            info["final_obs"] = final
        self._update(obs)
        return self.normalize(obs), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _rms_state(self.obs_rms)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        _load_rms(self.obs_rms, state)
        self.synced = self.state_dict()


class NormalizeReward(SyncedStatistics, _GymNormalizeReward):
    """Gymnasium's return-based reward scaling, clipped to [-clip, clip] like SB3's VecNormalize."""

    def __init__(self, env: VectorEnv, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__(env, gamma=gamma, epsilon=epsilon)
        self.clip = clip
        self.synced = self.state_dict()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(actions)
        return obs, np.clip(reward, -self.clip, self.clip), terminated, truncated, info

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _rms_state(self.return_rms)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        _load_rms(self.return_rms, state)
        self.synced = self.state_dict()
