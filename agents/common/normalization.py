"""RLModule's observation and reward normalization statistics: copied into evaluation envs, merged over DDP
processes, kept for the final evaluation, and their checkpoint state."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from agents.common.envs import find_wrapper
from agents.common.wrappers import NormalizeObservation, NormalizeReward

STATE_KEYS = (("obs_rms", NormalizeObservation), ("return_rms", NormalizeReward))  # checkpoint key, wrapper


class NormalizationSync:
    """The training envs' (`self.envs`) normalization wrappers and their statistics."""

    envs: gym.vector.VectorEnv | None
    world_size: int
    _saved_obs_rms: dict[str, torch.Tensor] | None = None  # a loaded policy's, or the closed training envs'

    def _wrapper(self, cls: type) -> Any:
        return find_wrapper(self.envs, cls) if self.envs is not None else None

    def sync_obs_normalization(self, target: gym.vector.VectorEnv) -> None:
        """Copy the training env's observation statistics into an evaluation env (frozen there)."""
        dst = find_wrapper(target, NormalizeObservation)
        src = self._wrapper(NormalizeObservation)
        if dst is None:
            return
        if self._saved_obs_rms is not None:  # a policy loaded for evaluation brings its own statistics
            dst.load_state_dict(self._saved_obs_rms)
        elif src is not None:
            dst.load_state_dict(src.state_dict())

    def keep_obs_statistics(self) -> None:
        """Keep the training envs' observation statistics before they close (for the final evaluation)."""
        norm = self._wrapper(NormalizeObservation)
        if norm is not None and self._saved_obs_rms is None:
            self._saved_obs_rms = norm.state_dict()

    def merge_normalization(self) -> None:
        """DDP: every process's observation/reward statistics become those of all processes' data."""
        for cls in (NormalizeObservation, NormalizeReward):
            wrapper = self._wrapper(cls)
            if wrapper is not None:
                gathered = {k: self.trainer.strategy.all_gather(v.to(self.device)).cpu()
                            for k, v in wrapper.state_dict().items()}  # [world_size, ...] each
                wrapper.merge([{k: v[r] for k, v in gathered.items()} for r in range(self.world_size)])

    def normalization_state(self) -> dict[str, Any]:
        """The training envs' statistics, for the checkpoint."""
        return {key: w.state_dict() for key, cls in STATE_KEYS if (w := self._wrapper(cls)) is not None}

    def load_normalization_state(self, state: dict[str, Any]) -> None:
        for key, cls in STATE_KEYS:
            wrapper = self._wrapper(cls)
            if wrapper is not None and key in state:
                wrapper.load_state_dict(state[key])
