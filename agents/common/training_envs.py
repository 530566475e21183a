"""RLModule's envs and spaces: the training envs built in `setup` (seeded per sub-env and DDP rank), the
evaluation envs, the spaces the networks are built for, and torch's threads while training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch

from agents.common.envs import EnvConfig, make_env
from agents.common.spaces import encoded_space, normalization_mask, observation_parts
from lab.accel import skip_nvml_recount

if TYPE_CHECKING:
    from agents.common.hyperparameters import AlgorithmConfig


class TrainingEnvs:
    """`env_cfg` (the env node) -> spaces, training envs (`self.envs`, `self.next_obs`) and evaluation envs."""

    hp: AlgorithmConfig
    env_cfg: EnvConfig
    envs: gym.vector.VectorEnv | None
    eval_envs: gym.vector.VectorEnv | None
    next_obs: np.ndarray | None
    _threads_before: int | None

    def check_env(self) -> None:
        """Raise ValueError when the env does not suit the agent (run before training). Subclasses extend."""
        obs_space, _ = self.env_cfg.spaces()
        observation_parts(obs_space)  # a space the agents can take
        if self.env_cfg.normalize_obs:
            normalization_mask(obs_space)  # something to normalize

    def observation_space(self) -> gym.Space:
        """The env's own single-env observation space (Dict, Discrete, ...: what the networks are built for)."""
        return self.env_cfg.spaces()[0]

    @property
    def action_space(self) -> gym.Space:
        """The env's single-env action space."""
        return self.env_cfg.spaces()[1]

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """Single-env (observation, action) spaces as the agent stores them: non-Box observations encoded as
        flat vectors (agents.common.spaces), after normalization."""
        if self.envs is not None:
            return self.envs.single_observation_space, self.envs.single_action_space
        obs_space, action_space = self.env_cfg.spaces()
        obs_space = encoded_space(obs_space)
        if self.env_cfg.normalize_obs:
            obs_space = gym.spaces.Box(-np.inf, np.inf, obs_space.shape, np.float32)
        return obs_space, action_space

    def env_seed(self, offset: int = 0) -> int:
        # distinct seeds for every sub-env of every DDP rank (and for evaluation, offset)
        return self.hp.seed + offset + self.global_rank * self.env_cfg.num_envs

    def setup(self, stage: str) -> None:
        skip_nvml_recount()  # for runs that build their own Trainer, as lab.run does for every run
        if stage == "fit" and self.hp.torch_threads is not None and self._threads_before is None:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.hp.torch_threads)
        # Adam's second moments of tiny RL gradients turn denormal, which x86 CPUs compute ~100x slower
        # (measured: DQN CartPole 870 -> 1040 env steps/s); flushing them to zero changes no result here.
        torch.set_flush_denormal(True)
        if stage == "fit" and self.envs is None:
            self.envs = make_env(self.env_cfg, seed=self.env_seed(), gamma=self.hp.gamma)
            self.next_obs, _ = self.envs.reset(seed=self.env_seed())

    def make_eval_env(self, video_dir: Path | None = None) -> gym.vector.VectorEnv:
        env = make_env(self.env_cfg, seed=self.env_seed(10_000), num_envs=min(self.hp.eval_episodes, 8),
                       training=False, video_dir=video_dir)
        env.reset(seed=self.env_seed(10_000))
        return env

    def teardown(self, stage: str) -> None:
        if self._threads_before is not None:  # the process's thread count as it was (tests run many agents)
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        self.keep_obs_statistics()  # agents.common.normalization: the final evaluation runs after the envs close
        for env in (self.envs, self.eval_envs):
            if env is not None:
                env.close()
        self.envs = self.eval_envs = None
