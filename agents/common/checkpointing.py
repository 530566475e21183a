"""RLModule's checkpoint state (`checkpoint["agent_state"]`): counters, episode statistics, every random
generator, normalization statistics and the algorithm's extra state; a checkpoint's policy for evaluation."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.common.envs import find_wrapper
from agents.common.wrappers import NormalizeObservation


def random_state(rng: np.random.Generator) -> dict[str, Any]:
    """The agent's generator, torch's, NumPy's global one and Python's, as checkpoints store them."""
    _, keys, pos, *_ = np.random.get_state()
    return {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "numpy_rng": {"state": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
            "python_rng": random.getstate()}


def load_random_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(("MT19937", state["numpy_rng"]["state"].numpy().astype(np.uint32), state["numpy_rng"]["pos"],
                         0, 0.0))
    random.setstate(state["python_rng"])


class Checkpointing:
    """on_save_checkpoint / on_load_checkpoint of the agents; `extra_state` for what an algorithm adds."""

    envs: gym.vector.VectorEnv | None
    next_obs: np.ndarray | None
    env_steps: int
    iteration: int
    train_seconds: float
    episode_returns: deque[float]
    episode_lengths: deque[int]
    rng: np.random.Generator

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific state for the checkpoint (e.g. the replay buffer). Subclasses extend."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {
            "env_steps": self.env_steps, "iteration": self.iteration, "train_seconds": self.train_seconds,
            "episode_returns": list(self.episode_returns), "episode_lengths": list(self.episode_lengths),
            **random_state(self.rng), **self.normalization_state(), **self.extra_state()}
        checkpoint["agent_state"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("agent_state")
        if state is None:
            raise ValueError("this checkpoint has no agent state: it was not written by one of the lab's agents.")
        self.env_steps, self.iteration = int(state["env_steps"]), int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        self.episode_returns.extend(state["episode_returns"])
        self.episode_lengths.extend(state["episode_lengths"])
        load_random_state(self.rng, state)
        self.load_normalization_state(state)
        if self.envs is not None:  # continue with fresh episodes, seeded by where training stopped
            norm = find_wrapper(self.envs, NormalizeObservation)
            if norm is not None:
                norm.update = False  # the restored statistics stay exactly as saved
            self.next_obs, _ = self.envs.reset(seed=self.env_seed(self.iteration * 7919))
            if norm is not None:
                norm.update = True
        self.load_extra_state(state)

    def load_policy(self, ckpt_path: str | Path) -> None:
        """Weights and observation statistics of a checkpoint, for evaluation (counters untouched)."""
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if "agent_state" not in ckpt:
            raise ValueError(f"{ckpt_path} has no agent state: it was not written by one of the lab's agents.")
        self.build_networks()
        self.load_state_dict(ckpt["state_dict"])
        self._saved_obs_rms = ckpt["agent_state"].get("obs_rms")
        if self.envs is None and "env_steps" in ckpt["agent_state"] and self.env_steps == 0:
            self.env_steps = int(ckpt["agent_state"]["env_steps"])
