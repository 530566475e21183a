"""What the Stable-Baselines3 baselines share (`SB3Agent`): envs from the lab's own `env_fns` (so training and
evaluation envs are the lab agents' envs, with the env's raw observations: SB3 encodes them itself), the policy
chosen from the observation space as SB3's users choose it (agents.sb3.spaces), the lab's loggers, evaluation and
checkpoints around SB3's loop (agents.sb3.callbacks). The runner: agents.sb3.runner."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from agents.common.envs import EnvConfig, env_fns, make_env
from agents.common.evaluate import evaluate, evaluation_metrics
from agents.common.hyperparameters import AgentConfig, ReplayConfig, RunKeys
from agents.common.spaces import ENCODERS
from agents.sb3.callbacks import _EvalAndCheckpoint, _ToLabLoggers
from agents.sb3.spaces import (
    check_action_space,
    choose_policy,
    norm_obs_keys,
    uses_cnn,
)
from lab.checks import check_choice
from lab.layout import RunLayout


def linear(start: float, anneal: bool) -> float | Callable[[float], float]:
    """A constant, or zoo's lin_<start>: start x progress_remaining."""
    return (lambda progress: start * progress) if anneal else start


def optimizer_kwargs(optimizer: Callable[..., torch.optim.Optimizer]) -> dict[str, Any]:
    """The `_partial_` optimizer node as SB3's optimizer_class / optimizer_kwargs."""
    return {"optimizer_class": optimizer.func, "optimizer_kwargs": dict(optimizer.keywords)}


class SB3Agent(RunKeys):
    """Base of the SB3 baselines: subclasses set `algorithm` and `kwargs` (SB3's names for the lab's keys), and
    take their keys through a generated constructor (agents.common.hyperparameters).

    SB3 is given the env's raw observations (`encode_obs=False`, where the lab's agents get them encoded),
    the policy that suits them (`choose_policy`, set by `check_env` before anything is built), and, with
    env.normalize_obs, SB3's VecNormalize on the Box parts. Evaluation envs are made without normalization:
    the policy normalizes their observations with the training VecNormalize's statistics (or a checkpoint's
    `*.vecnormalize.pkl`), as SB3's VecNormalize.normalize_obs does, so any observation space evaluates.
    """

    algorithm: type[BaseAlgorithm]

    def initialize(self, env: EnvConfig, hp: AgentConfig, gamma: float, encoder: str) -> None:
        """The subclasses' generated constructors (agents.common.hyperparameters.keyword_init) call their
        `initialize`, which calls this one with the discount and encoder the algorithm uses."""
        check_choice("agent.encoder", encoder, ENCODERS)
        self.hp, self.env_cfg, self.gamma, self.encoder = hp, env, gamma, encoder
        self.video = hp.video
        self.policy: str | None = None  # SB3's policy name: chosen from the observation space by check_env
        self.device: str | None = None  # None: SB3's advice, the CPU for MLP policies and "auto" for CNNs
        self.kwargs: dict[str, Any] = {}
        self.mlp_policy_kwargs: dict[str, Any] = {}  # policy_kwargs for every policy but CnnPolicy (net_arch)
        self.loaded_normalizer: VecNormalize | None = None  # a loaded checkpoint's observation statistics
        self._uses_cnn = False

    @property
    def algo_name(self) -> str:
        return self.algorithm.__name__

    def choose_policy(self, obs_space: gym.Space) -> str:
        return choose_policy(obs_space, self.encoder, self.env_cfg.id)

    def set_policy(self, obs_space: gym.Space) -> None:
        self.policy = self.choose_policy(obs_space)
        self._uses_cnn = uses_cnn(obs_space, self.policy)

    def check_env(self) -> None:
        """The env's spaces against SB3's and the algorithm's, before anything is built; sets the policy."""
        obs_space, action_space = self.env_cfg.spaces()
        self.set_policy(obs_space)
        check_action_space(self.algo_name, action_space, self.env_cfg.id)
        if self.env_cfg.normalize_obs:
            norm_obs_keys(obs_space, self.env_cfg.id)

    def model_device(self) -> str:
        if self.policy is None:  # check_env has not run (or a subclass's own did not set it)
            self.set_policy(self.env_cfg.spaces()[0])
        if self.device is not None:  # trainer.accelerator, set by the runner
            return self.device
        return "auto" if self._uses_cnn else "cpu"  # SB3's advice: MLP policies on the CPU

    def make_vec_env(self) -> VecEnv:
        """The lab's sub-envs (every per-episode wrapper, frame stacking included; raw observations) in SB3's
        vector env, with SB3's own VecNormalize for normalization."""
        c = self.env_cfg
        vec_cls = SubprocVecEnv if c.vectorization == "async" else DummyVecEnv
        venv: VecEnv = vec_cls(env_fns(c, training=True, clip_actions=False))
        venv.seed(self.hp.seed)  # sub-env i: seed + i, as make_env seeds ours
        if c.normalize_obs or c.normalize_reward:
            keys = norm_obs_keys(venv.observation_space, c.id) if c.normalize_obs else None
            venv = VecNormalize(venv, norm_obs=c.normalize_obs, norm_reward=c.normalize_reward, clip_obs=c.clip_obs,
                                clip_reward=c.clip_reward, gamma=self.gamma, norm_obs_keys=keys)
        return venv

    def save(self, model: BaseAlgorithm, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        vec_normalize = model.get_vec_normalize_env()  # under SB3's VecTransposeImage, for channel-last images
        if vec_normalize is not None:
            vec_normalize.save(str(path.with_suffix(".vecnormalize.pkl")))

    def obs_normalizer(self, model: BaseAlgorithm) -> VecNormalize | None:
        """What normalizes evaluation observations: the training VecNormalize, or a loaded checkpoint's."""
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is None:
            vec_normalize = self.loaded_normalizer
        return vec_normalize if vec_normalize is not None and vec_normalize.norm_obs else None

    def make_eval_env(self, n_episodes: int, video_dir: Path | None = None) -> gym.vector.VectorEnv:
        """The lab's evaluation env with raw observations and no normalization wrapper (the lab's cannot take
        Dict observations): `evaluate_policy` normalizes with SB3's statistics instead."""
        cfg = copy.copy(self.env_cfg)  # a shallow copy: EnvConfig's checks are not run again
        cfg.normalize_obs = cfg.normalize_reward = False
        env = make_env(cfg, seed=self.hp.seed + 10_000, num_envs=min(n_episodes, 8), training=False,
                       video_dir=video_dir, encode_obs=False)
        env.reset(seed=self.hp.seed + 10_000)
        return env

    def evaluate_policy(self, model: BaseAlgorithm, n_episodes: int, env: gym.vector.VectorEnv | None = None,
                        video_dir: Path | None = None) -> dict[str, float]:
        """Like our agents: periodic evaluations continue one eval env (fresh episodes each time, the
        same protocol for both); the final one gets its own env (with the video)."""
        own = env is None
        if own:
            env = self.make_eval_env(n_episodes, video_dir)
        normalizer = self.obs_normalizer(model)

        def policy(obs: Any, deterministic: bool) -> np.ndarray:
            if normalizer is not None:  # a normalized copy, with frozen statistics
                obs = normalizer.normalize_obs(obs)
            return model.predict(obs, deterministic=deterministic)[0]

        try:
            returns, lengths = evaluate(policy, env, n_episodes, self.hp.eval_deterministic)
        finally:
            if own:
                env.close()
        return evaluation_metrics(returns, lengths)

    def load(self, path: str | Path) -> BaseAlgorithm:
        path = Path(path)
        model = self.algorithm.load(path, device=self.model_device())
        self.loaded_normalizer = None
        stats_file = path.with_suffix(".vecnormalize.pkl")
        if stats_file.is_file():  # VecNormalize pickles without its venv: its statistics are all we need
            with stats_file.open("rb") as f:
                self.loaded_normalizer = pickle.load(f)
        return model

    def model_kwargs(self, venv: VecEnv) -> dict[str, Any]:
        """The algorithm's constructor arguments besides the policy, env, seed and device."""
        kwargs = dict(self.kwargs)
        if self.mlp_policy_kwargs and self.policy != "CnnPolicy":  # SB3's CnnPolicy: no MLP after the CNN
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **self.mlp_policy_kwargs}
        return kwargs

    def learn(self, loggers: list[Logger], run: RunLayout) -> BaseAlgorithm:
        """SB3's training loop with the lab's evaluation, checkpoints and loggers; returns the trained model."""
        device = self.model_device()  # chooses the policy first if check_env has not run
        if self.hp.torch_threads is not None:  # None: torch's default (one per core), as SB3's users run it
            torch.set_num_threads(self.hp.torch_threads)
        venv = self.make_vec_env()
        model = self.algorithm(self.policy, venv, seed=self.hp.seed, device=device, **self.model_kwargs(venv))
        callback = _EvalAndCheckpoint(self, loggers, run)
        writer = _ToLabLoggers(loggers, self.hp.log_interval, callback.train_seconds)
        model.set_logger(SB3Logger(folder=None, output_formats=[writer]))
        model.learn(self.hp.total_timesteps, callback=callback, log_interval=1)
        self.save(model, run.sb3_last)
        self.after_learn(model, run)
        venv.close()
        return model

    def after_learn(self, model: BaseAlgorithm, run: RunLayout) -> None:
        """What is saved beside last.zip: the replay buffer with agent.save_replay_buffer (DQN, SAC; SB3's
        load_replay_buffer reads it back)."""
        if isinstance(self.hp, ReplayConfig) and self.hp.save_replay_buffer:
            model.save_replay_buffer(run.sb3_replay_buffer)
