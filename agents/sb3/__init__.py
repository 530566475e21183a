"""Stable-Baselines3 baselines (`agent=sb3_ppo`, `agent=sb3_dqn`) under the lab's env config, seeds and loggers.

They take the same keys as `agent=ppo` / `agent=dqn` (translated to SB3's names), so one sweep compares
both: `python -m lab -m experiment=ppo_cartpole agent=ppo,sb3_ppo seed=0,1,2`. SB3 runs its own loop;
the lab adds what it does for its own agents: evaluation every `eval_freq` env steps (time excluded from
`time/train_seconds`), SB3's log keys under the lab's names, checkpoints, the final evaluation and video.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from lightning.pytorch.loggers import Logger, WandbLogger
from stable_baselines3 import DQN as _SB3DQN
from stable_baselines3 import PPO as _SB3PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecNormalize

from agents.common.envs import EnvConfig, check_ints, find_wrapper, make_env
from agents.common.evaluate import evaluate, video_files
from agents.common.nets import activation as activation_class
from agents.common.wrappers import NormalizeObservation

# SB3's log keys -> the lab's (the same names our agents log)
RENAME = {"rollout/ep_rew_mean": "rollout/ep_return", "rollout/ep_len_mean": "rollout/ep_len",
          "time/fps": "time/sps", "train/policy_gradient_loss": "train/pg_loss", "train/value_loss": "train/v_loss",
          "rollout/exploration_rate": "train/epsilon"}


class _ToLabLoggers(KVWriter):
    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        metrics = {RENAME.get(k, k): float(v) for k, v in key_values.items()
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
        if "train/entropy_loss" in metrics:
            metrics["train/entropy"] = -metrics.pop("train/entropy_loss")
        for lg in self.loggers:
            lg.log_metrics(metrics, step=step)

    def close(self) -> None:
        pass


class _EvalAndCheckpoint(BaseCallback):
    """Evaluation every eval_freq env steps, excluded from the training clock; last and best checkpoints."""

    def __init__(self, agent: SB3Agent, loggers: list[Logger], ckpt_dir: Path) -> None:
        super().__init__()
        self.agent, self.loggers, self.ckpt_dir = agent, loggers, ckpt_dir
        self.best = -np.inf
        self.eval_seconds = 0.0

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        self.next_eval = self.agent.eval_freq
        self.eval_env = self.agent.make_eval_env(self.agent.eval_episodes)

    def _on_training_end(self) -> None:
        self.eval_env.close()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.agent.eval_freq
        start = time.perf_counter()
        metrics = self.agent.evaluate_policy(self.model, self.agent.eval_episodes, self.eval_env)
        metrics["time/train_seconds"] = start - self.t0 - self.eval_seconds
        for lg in self.loggers:
            lg.log_metrics(metrics, step=self.num_timesteps)
            lg.save()
        self.agent.save(self.model, self.ckpt_dir / "last.zip")
        if metrics["eval/return"] > self.best:
            self.best = metrics["eval/return"]
            self.agent.save(self.model, self.ckpt_dir / "best.zip")
        self.eval_seconds += time.perf_counter() - start
        return True


class SB3Agent:
    """Base of the SB3 baselines: env building, evaluation, checkpoints, the run."""

    algorithm: type[BaseAlgorithm]

    def __init__(self, env: EnvConfig, total_timesteps: int, seed: int, gamma: float, encoder: str, eval_freq: int,
                 eval_episodes: int, eval_deterministic: bool, video: bool) -> None:
        check_ints(total_timesteps=(total_timesteps, 1), eval_freq=(eval_freq, 1), eval_episodes=(eval_episodes, 1))
        self.env_cfg, self.total_timesteps, self.seed, self.gamma = env, total_timesteps, seed, gamma
        self.policy = "CnnPolicy" if encoder == "nature_cnn" else "MlpPolicy"
        self.device = "auto" if encoder == "nature_cnn" else "cpu"  # SB3's advice: MLP policies on the CPU
        self.eval_freq, self.eval_episodes, self.eval_deterministic = eval_freq, eval_episodes, eval_deterministic
        self.video = video
        self.obs_rms: dict[str, torch.Tensor] | None = None

    def check_env(self) -> None:
        self.env_cfg.spaces()

    def algorithm_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def make_vec_env(self) -> VecEnv:
        c = self.env_cfg
        kwargs = dict(c.env_kwargs)
        if c.max_episode_steps is not None:
            kwargs["max_episode_steps"] = c.max_episode_steps
        vec_cls = SubprocVecEnv if c.vectorization == "async" else DummyVecEnv
        if c.atari:
            kwargs.setdefault("frameskip", 1)  # SB3's AtariWrapper skips frames itself
            venv: VecEnv = make_atari_env(c.id, n_envs=c.num_envs, seed=self.seed, env_kwargs=kwargs, vec_env_cls=vec_cls)
            if c.frame_stack > 1:
                venv = VecFrameStack(venv, c.frame_stack)
        else:
            venv = make_vec_env(c.id, n_envs=c.num_envs, seed=self.seed, env_kwargs=kwargs, vec_env_cls=vec_cls)
        if c.normalize_obs or c.normalize_reward:
            venv = VecNormalize(venv, norm_obs=c.normalize_obs, norm_reward=c.normalize_reward, clip_obs=c.clip_obs,
                                clip_reward=c.clip_reward, gamma=self.gamma)
        return venv

    def save(self, model: BaseAlgorithm, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        venv = model.get_env()
        if isinstance(venv, VecNormalize):
            venv.save(str(path.with_suffix(".vecnormalize.pkl")))

    def _obs_stats(self, model: BaseAlgorithm) -> dict[str, torch.Tensor] | None:
        venv = model.get_env()
        if isinstance(venv, VecNormalize) and venv.norm_obs:
            rms = venv.obs_rms
            return {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var),
                    "count": torch.tensor(float(rms.count))}
        return self.obs_rms

    def make_eval_env(self, n_episodes: int, video_dir: Path | None = None) -> gym.vector.VectorEnv:
        env = make_env(self.env_cfg, seed=self.seed + 10_000, num_envs=min(n_episodes, 8), training=False,
                       video_dir=video_dir)
        env.reset(seed=self.seed + 10_000)
        return env

    def evaluate_policy(self, model: BaseAlgorithm, n_episodes: int, env: gym.vector.VectorEnv | None = None,
                        video_dir: Path | None = None) -> dict[str, float]:
        """Like our agents: periodic evaluations continue one eval env (fresh episodes each time, the
        same protocol for both); the final one gets its own env (with the video)."""
        own = env is None
        if own:
            env = self.make_eval_env(n_episodes, video_dir)
        norm = find_wrapper(env, NormalizeObservation)
        stats = self._obs_stats(model)
        if norm is not None and stats is not None:
            norm.load_state_dict(stats)
        try:
            returns, lengths = evaluate(lambda obs, det: model.predict(obs, deterministic=det)[0], env, n_episodes,
                                        self.eval_deterministic)
        finally:
            if own:
                env.close()
        return {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/ep_len": float(lengths.mean())}

    def load(self, path: str | Path) -> BaseAlgorithm:
        path = Path(path)
        if path.suffix != ".zip":
            raise ValueError(f"SB3 baselines save .zip files (checkpoints/last.zip, best.zip); got {path.name}.")
        model = self.algorithm.load(path, device=self.device)
        stats_file = path.with_suffix(".vecnormalize.pkl")
        if stats_file.is_file():  # VecNormalize pickles without its venv: its statistics are all we need
            with stats_file.open("rb") as f:
                vn = pickle.load(f)
            if vn.norm_obs:
                self.obs_rms = {"mean": torch.as_tensor(vn.obs_rms.mean), "var": torch.as_tensor(vn.obs_rms.var),
                                "count": torch.tensor(float(vn.obs_rms.count))}
        return model

    def run(self, mode: str, loggers: list[Logger], output_dir: Path, ckpt_path: str | None,
            video_dir: Path) -> dict[str, float]:
        ckpt_dir = output_dir / "checkpoints"
        metrics: dict[str, float] = {}
        if mode == "train":
            venv = self.make_vec_env()
            model = self.algorithm(self.policy, venv, seed=self.seed, device=self.device, **self.algorithm_kwargs())
            model.set_logger(SB3Logger(folder=None, output_formats=[_ToLabLoggers(loggers)]))
            callback = _EvalAndCheckpoint(self, loggers, ckpt_dir)
            model.learn(self.total_timesteps, callback=callback, log_interval=1)
            self.save(model, ckpt_dir / "last.zip")
            steps = model.num_timesteps
            if (ckpt_dir / "best.zip").is_file():
                model = self.load(ckpt_dir / "best.zip")
            venv.close()
        else:
            model = self.load(ckpt_path)
            steps = model.num_timesteps
        metrics.update(self.evaluate_policy(model, self.eval_episodes, video_dir=video_dir if self.video else None))
        for lg in loggers:
            lg.log_metrics(metrics, step=steps)
            files = video_files(video_dir) if self.video else []
            if files and isinstance(lg, WandbLogger):
                lg.log_video("eval/video", [str(files[-1])], step=steps)
            lg.save()
        return metrics


def _linear(start: float, anneal: bool) -> float | Callable[[float], float]:
    """A constant, or zoo's lin_<start>: start x progress_remaining."""
    return (lambda progress: start * progress) if anneal else start


def _optimizer(optimizer: Callable[..., torch.optim.Optimizer]) -> dict[str, Any]:
    """The `_partial_` optimizer node as SB3's optimizer_class / optimizer_kwargs."""
    return {"optimizer_class": optimizer.func, "optimizer_kwargs": dict(optimizer.keywords)}


class SB3PPO(SB3Agent):
    """stable_baselines3.PPO with the keys of `agent=ppo`."""

    algorithm = _SB3PPO

    def __init__(self, env: EnvConfig, optimizer: Callable[..., torch.optim.Optimizer], total_timesteps: int = 100_000,
                 seed: int = 0, learning_rate: float = 3e-4, anneal_lr: bool = False, num_steps: int = 2048,
                 batch_size: int = 64, update_epochs: int = 10, gamma: float = 0.99, gae_lambda: float = 0.95,
                 clip_coef: float = 0.2, anneal_clip: bool = False, clip_vloss: bool = False, norm_adv: bool = True,
                 ent_coef: float = 0.0, vf_coef: float = 0.5, max_grad_norm: float = 0.5,
                 target_kl: float | None = None, encoder: str = "mlp", net_arch: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", ortho_init: bool = True, log_std_init: float = 0.0, eval_freq: int = 5000,
                 eval_episodes: int = 10, eval_deterministic: bool = True, log_interval: int = 2048,
                 video: bool = True) -> None:
        super().__init__(env, total_timesteps, seed, gamma, encoder, eval_freq, eval_episodes, eval_deterministic, video)
        if batch_size > num_steps * env.num_envs:
            raise ValueError(f"agent.batch_size={batch_size} is larger than the rollout, agent.num_steps x "
                             f"env.num_envs = {num_steps * env.num_envs}.")
        clip = _linear(clip_coef, anneal_clip)
        policy_kwargs: dict[str, Any] = {"ortho_init": ortho_init, "activation_fn": activation_class(activation), **_optimizer(optimizer)}
        if encoder == "mlp":
            policy_kwargs.update(net_arch=dict(pi=list(net_arch), vf=list(net_arch)), log_std_init=log_std_init)
        self.kwargs = dict(learning_rate=_linear(learning_rate, anneal_lr), n_steps=num_steps, batch_size=batch_size,
                           n_epochs=update_epochs, gamma=gamma, gae_lambda=gae_lambda, clip_range=clip,
                           clip_range_vf=clip if clip_vloss else None, normalize_advantage=norm_adv,
                           ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, target_kl=target_kl,
                           policy_kwargs=policy_kwargs)

    def check_env(self) -> None:
        _, action_space = self.env_cfg.spaces()
        if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise ValueError(f"PPO supports Discrete and Box action spaces, not {action_space}.")

    def algorithm_kwargs(self) -> dict[str, Any]:
        return self.kwargs


class SB3DQN(SB3Agent):
    """stable_baselines3.DQN with the keys of `agent=dqn` (options SB3's DQN lacks must stay off)."""

    algorithm = _SB3DQN

    def __init__(self, env: EnvConfig, optimizer: Callable[..., torch.optim.Optimizer], total_timesteps: int = 100_000,
                 seed: int = 0, learning_rate: float = 1e-4, anneal_lr: bool = False, buffer_size: int = 1_000_000,
                 learning_starts: int = 100, batch_size: int = 32, gamma: float = 0.99, tau: float = 1.0,
                 target_update_interval: int = 10_000, train_freq: int = 4, gradient_steps: int = 1,
                 exploration_fraction: float = 0.1, exploration_initial_eps: float = 1.0,
                 exploration_final_eps: float = 0.05, max_grad_norm: float = 10.0, double_q: bool = False,
                 dueling: bool = False, n_step: int = 1, prioritized: bool = False, per_alpha: float = 0.6,
                 per_beta: float = 0.4, loss: str = "huber", encoder: str = "mlp", net_arch: tuple[int, ...] = (64, 64),
                 activation: str = "relu", save_replay_buffer: bool = False, eval_freq: int = 5000,
                 eval_episodes: int = 10, eval_deterministic: bool = True, log_interval: int = 1000,
                 video: bool = True) -> None:
        super().__init__(env, total_timesteps, seed, gamma, encoder, eval_freq, eval_episodes, eval_deterministic, video)
        for key, value, plain in (("double_q", double_q, False), ("dueling", dueling, False),
                                  ("prioritized", prioritized, False), ("loss", loss, "huber")):
            if value != plain:
                raise ValueError(f"agent.{key}={value!r}: Stable-Baselines3's DQN has no such option; set "
                                 f"agent.{key}={plain!r} for agent=sb3_dqn (our agent=dqn has it).")
        policy_kwargs: dict[str, Any] = {"activation_fn": activation_class(activation), **_optimizer(optimizer)}
        if encoder == "mlp":
            policy_kwargs["net_arch"] = list(net_arch)
        self.kwargs = dict(learning_rate=_linear(learning_rate, anneal_lr), buffer_size=buffer_size,
                           learning_starts=learning_starts, batch_size=batch_size, tau=tau, gamma=gamma,
                           train_freq=train_freq, gradient_steps=gradient_steps, n_steps=n_step,
                           target_update_interval=target_update_interval, exploration_fraction=exploration_fraction,
                           exploration_initial_eps=exploration_initial_eps, exploration_final_eps=exploration_final_eps,
                           max_grad_norm=max_grad_norm, policy_kwargs=policy_kwargs)

    def check_env(self) -> None:
        _, action_space = self.env_cfg.spaces()
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"DQN needs a Discrete action space; env.id={self.env_cfg.id!r} has {action_space} "
                             "(use agent=ppo or agent=sb3_ppo for continuous actions).")

    def algorithm_kwargs(self) -> dict[str, Any]:
        return self.kwargs


__all__ = ["SB3DQN", "SB3PPO", "SB3Agent"]
