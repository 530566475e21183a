"""What both Stable-Baselines3 baselines share: envs from the lab's own `env_fns` (so training and
evaluation envs are the lab agents' envs), SB3's log keys under the lab's names, evaluation every
`eval_freq` env steps (excluded from `time/train_seconds`), checkpoints, and their runner."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from agents.common.envs import EnvConfig, env_fns, find_wrapper, make_env
from agents.common.evaluate import evaluate, evaluation_lines, evaluation_metrics, video_files
from agents.common.runner import build_env_and_agent
from agents.common.wrappers import NormalizeObservation
from lab.checks import check_ints
from lab.runner import RunContext, Runner

# SB3's log keys -> the lab's (the same names our agents log)
RENAME = {"rollout/ep_rew_mean": "rollout/ep_return", "rollout/ep_len_mean": "rollout/ep_len",
          "time/fps": "time/sps", "train/policy_gradient_loss": "train/pg_loss", "train/value_loss": "train/v_loss",
          "rollout/exploration_rate": "train/epsilon"}


class _ToLabLoggers(KVWriter):
    """SB3's logger output, every `log_interval` env steps, to the lab's loggers."""

    def __init__(self, loggers: list[Logger], log_interval: int) -> None:
        self.loggers, self.log_interval = loggers, log_interval
        self.last_step: int | None = None

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        if self.last_step is not None and step - self.last_step < self.log_interval:
            return
        self.last_step = step
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


def linear(start: float, anneal: bool) -> float | Callable[[float], float]:
    """A constant, or zoo's lin_<start>: start x progress_remaining."""
    return (lambda progress: start * progress) if anneal else start


def optimizer_kwargs(optimizer: Callable[..., torch.optim.Optimizer]) -> dict[str, Any]:
    """The `_partial_` optimizer node as SB3's optimizer_class / optimizer_kwargs."""
    return {"optimizer_class": optimizer.func, "optimizer_kwargs": dict(optimizer.keywords)}


class SB3Agent:
    """Base of the SB3 baselines: subclasses set `algorithm` and `kwargs` (SB3's names for the lab's keys)."""

    algorithm: type[BaseAlgorithm]

    def __init__(self, env: EnvConfig, total_timesteps: int, seed: int, gamma: float, encoder: str, eval_freq: int,
                 eval_episodes: int, eval_deterministic: bool, log_interval: int, video: bool,
                 torch_threads: int | None = None) -> None:
        if torch_threads is not None:
            check_ints("agent.", torch_threads=(torch_threads, 1))
        self.torch_threads = torch_threads  # None: torch's default (one per core), as SB3's users run it
        check_ints("agent.", total_timesteps=(total_timesteps, 1), eval_freq=(eval_freq, 1),
                   eval_episodes=(eval_episodes, 1), log_interval=(log_interval, 1))
        self.env_cfg, self.total_timesteps, self.seed, self.gamma = env, total_timesteps, seed, gamma
        self.policy = "CnnPolicy" if encoder == "nature_cnn" else "MlpPolicy"
        self.device = "auto" if encoder == "nature_cnn" else "cpu"  # SB3's advice: MLP policies on the CPU
        self.eval_freq, self.eval_episodes, self.eval_deterministic = eval_freq, eval_episodes, eval_deterministic
        self.log_interval, self.video = log_interval, video
        self.kwargs: dict[str, Any] = {}
        self.obs_rms: dict[str, torch.Tensor] | None = None

    def check_env(self) -> None:
        self.env_cfg.spaces()

    def make_vec_env(self) -> VecEnv:
        """The lab's sub-envs (every per-episode wrapper, frame stacking included) in SB3's vector env, with
        SB3's own VecNormalize for normalization."""
        c = self.env_cfg
        vec_cls = SubprocVecEnv if c.vectorization == "async" else DummyVecEnv
        venv: VecEnv = vec_cls(env_fns(c, training=True, clip_actions=False))
        venv.seed(self.seed)  # sub-env i: seed + i, as make_env seeds ours
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
        return evaluation_metrics(returns, lengths)

    def load(self, path: str | Path) -> BaseAlgorithm:
        path = Path(path)
        model = self.algorithm.load(path, device=self.device)
        stats_file = path.with_suffix(".vecnormalize.pkl")
        if stats_file.is_file():  # VecNormalize pickles without its venv: its statistics are all we need
            with stats_file.open("rb") as f:
                vn = pickle.load(f)
            if vn.norm_obs:
                self.obs_rms = {"mean": torch.as_tensor(vn.obs_rms.mean), "var": torch.as_tensor(vn.obs_rms.var),
                                "count": torch.tensor(float(vn.obs_rms.count))}
        return model

    def learn(self, loggers: list[Logger], ckpt_dir: Path) -> BaseAlgorithm:
        """SB3's training loop with the lab's evaluation, checkpoints and loggers; returns the trained model."""
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        venv = self.make_vec_env()
        model = self.algorithm(self.policy, venv, seed=self.seed, device=self.device, **self.kwargs)
        model.set_logger(SB3Logger(folder=None, output_formats=[_ToLabLoggers(loggers, self.log_interval)]))
        model.learn(self.total_timesteps, callback=_EvalAndCheckpoint(self, loggers, ckpt_dir), log_interval=1)
        self.save(model, ckpt_dir / "last.zip")
        self.after_learn(model, ckpt_dir)
        venv.close()
        return model

    def after_learn(self, model: BaseAlgorithm, ckpt_dir: Path) -> None:
        """What an algorithm saves beside last.zip (DQN: the replay buffer when asked)."""


class SB3Runner(Runner):
    """Runs an SB3 baseline (agent=sb3_ppo | sb3_dqn) with its own loop: no Lightning trainer or callbacks;
    checkpoints are SB3's `checkpoints/last.zip` and `best.zip`; resume=true is for the lab's agents."""

    uses_trainer = False
    can_resume = False

    uses_trainer_keys = ("accelerator",)  # SB3's device: cpu | gpu (cuda) | auto (a GPU for CNN policies)

    def build(self, cfg: DictConfig) -> None:
        self.env, self.agent = build_env_and_agent(cfg)
        accelerator = str(cfg.trainer.get("accelerator", "auto"))
        if accelerator != "auto":
            self.agent.device = {"gpu": "cuda"}.get(accelerator, accelerator)

    def check_checkpoint(self, path: Path) -> None:
        if path.suffix != ".zip":
            raise ValueError("SB3 baselines save .zip files (checkpoints/last.zip, best.zip); this is not one")

    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        self.model = self.agent.learn(run.loggers, run.output_dir / "checkpoints")
        return {}

    def best_checkpoint(self, run: RunContext) -> str | None:
        best = run.output_dir / "checkpoints" / "best.zip"
        return str(best) if best.is_file() else None

    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        model = self.agent.load(ckpt_path) if ckpt_path else self.model
        video_dir = run.output_dir / "videos"
        metrics = self.agent.evaluate_policy(model, self.agent.eval_episodes,
                                             video_dir=video_dir if self.agent.video else None)
        steps = model.num_timesteps
        for lg in run.loggers:
            lg.log_metrics(metrics, step=steps)
            files = video_files(video_dir) if self.agent.video else []
            if files and isinstance(lg, WandbLogger):
                lg.log_video("eval/video", [str(files[-1])], step=steps)
            lg.save()
        return metrics

    def summary(self, metrics: dict[str, float]) -> list[str]:
        return evaluation_lines(self.agent.eval_episodes, metrics)
