"""RLModule's evaluation: fresh episodes of the current policy at the end of every epoch (statistics over
every DDP rank's episodes) and the run's closing evaluation with its video. The episode loop itself is
agents.common.evaluate's, which the SB3 baselines share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger

from agents.common.evaluate import evaluate, evaluation_metrics
from lab.layout import video_files

if TYPE_CHECKING:
    from agents.common.hyperparameters import AgentConfig


class PolicyEvaluation:
    """Evaluation of `predict` (which the agents implement) on `self.eval_envs`."""

    hp: AgentConfig
    video: bool
    env_steps: int
    world_size: int
    train_seconds: float
    eval_envs: gym.vector.VectorEnv | None

    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        raise NotImplementedError

    def evaluation_episodes(self, n_episodes: int, video_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns and lengths of `n_episodes` fresh evaluation episodes of the current policy."""
        if video_dir is not None:
            env = self.make_eval_env(video_dir)
        else:
            if self.eval_envs is None:
                self.eval_envs = self.make_eval_env()
            env = self.eval_envs
        self.sync_obs_normalization(env)
        was_training = self.training
        self.eval()
        try:
            return evaluate(self.predict, env, n_episodes, self.hp.eval_deterministic)
        finally:
            self.train(was_training)
            if video_dir is not None:
                env.close()  # writes the video file

    def evaluate_policy(self, n_episodes: int, video_dir: Path | None = None) -> dict[str, float]:
        """eval/return (mean), eval/return_std, eval/ep_len over `n_episodes` fresh episodes."""
        return evaluation_metrics(*self.evaluation_episodes(n_episodes, video_dir))

    def periodic_evaluation(self) -> None:
        if self.world_size > 1:  # normalization statistics of every rank's data, before evaluation and checkpoint
            self.merge_normalization()
        returns, lengths = self.evaluation_episodes(self.hp.eval_episodes)
        if self.world_size > 1:  # every rank evaluated its own episodes: statistics over all of them, on every rank
            returns, lengths = (self.trainer.strategy.all_gather(torch.as_tensor(a, device=self.device)).cpu().numpy()
                                .reshape(-1) for a in (returns, lengths))
        metrics = evaluation_metrics(returns, lengths)
        metrics["time/train_seconds"] = self.train_seconds
        self.log_at_env_step(metrics, show=True)

    def final_evaluation(self, n_episodes: int, video_dir: Path | None, loggers: list[Logger]) -> dict[str, float]:
        """The run's closing evaluation (with a video when enabled), logged at the last env step."""
        metrics = self.evaluate_policy(n_episodes, video_dir if self.video else None)
        if self.global_rank == 0:
            for lg in loggers:
                lg.log_metrics(metrics, step=self.env_steps)
                if self.video and video_dir is not None and isinstance(lg, WandbLogger):
                    files = [str(p) for p in video_files(video_dir)]
                    if files:
                        lg.log_video("eval/video", files[-1:], step=self.env_steps)
                lg.save()
        return metrics
