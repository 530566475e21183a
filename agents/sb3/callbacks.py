"""SB3's training loop, reported as the lab's agents report: its log keys under the lab's names to the lab's
loggers, evaluation every `eval_freq` env steps (excluded from `time/train_seconds`), last and best checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from lightning.pytorch.loggers import Logger
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from lab.layout import RunLayout

if TYPE_CHECKING:
    from agents.sb3.base import SB3Agent

# SB3's log keys -> the lab's (the same names our agents log). A2C's policy loss is PPO's pg_loss; the
# off-policy algorithms' train/loss (DQN), train/actor_loss, train/critic_loss, train/ent_coef(_loss) (SAC,
# TD3, DDPG) and train/learning_rate are the lab's names already (agent=dqn's, agent=sac's).
RENAME = {"rollout/ep_rew_mean": "rollout/ep_return", "rollout/ep_len_mean": "rollout/ep_len",
          "time/fps": "time/sps", "train/policy_gradient_loss": "train/pg_loss", "train/policy_loss": "train/pg_loss",
          "train/value_loss": "train/v_loss", "rollout/exploration_rate": "train/epsilon"}


class _ToLabLoggers(KVWriter):
    """SB3's logger output, every `log_interval` env steps, to the lab's loggers. With `clock` (the training
    seconds so far, evaluations excluded), time/sps is counted as our agents count it: SB3's fps includes the
    time its callbacks take, the evaluations among them."""

    def __init__(self, loggers: list[Logger], log_interval: int,
                 clock: Callable[[], float | None] | None = None) -> None:
        self.loggers, self.log_interval, self.clock = loggers, log_interval, clock
        self.last_step: int | None = None

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        if self.last_step is not None and step - self.last_step < self.log_interval:
            return
        self.last_step = step
        metrics = {RENAME.get(k, k): float(v) for k, v in key_values.items()
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
        if "train/entropy_loss" in metrics:
            metrics["train/entropy"] = -metrics.pop("train/entropy_loss")
        seconds = self.clock() if self.clock is not None else None
        if seconds and "time/sps" in metrics:
            metrics["time/sps"], metrics["time/train_seconds"] = step / seconds, seconds
        for lg in self.loggers:
            lg.log_metrics(metrics, step=step)

    def close(self) -> None:
        pass


class _EvalAndCheckpoint(BaseCallback):
    """Evaluation every eval_freq env steps, excluded from the training clock; last and best checkpoints."""

    def __init__(self, agent: SB3Agent, loggers: list[Logger], run: RunLayout) -> None:
        super().__init__()
        self.agent, self.loggers, self.run = agent, loggers, run
        self.best = -np.inf
        self.eval_seconds = 0.0
        self.t0: float | None = None

    def train_seconds(self) -> float | None:
        """Seconds since training started, evaluations excluded (None before it starts)."""
        return None if self.t0 is None else time.perf_counter() - self.t0 - self.eval_seconds

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        self.next_eval = self.agent.hp.eval_freq
        self.eval_env = self.agent.make_eval_env(self.agent.eval_episodes)

    def _on_training_end(self) -> None:
        self.eval_env.close()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.agent.hp.eval_freq
        start = time.perf_counter()
        metrics = self.agent.evaluate_policy(self.model, self.agent.eval_episodes, self.eval_env)
        metrics["time/train_seconds"] = start - self.t0 - self.eval_seconds
        for lg in self.loggers:
            lg.log_metrics(metrics, step=self.num_timesteps)
            lg.save()
        self.agent.save(self.model, self.run.sb3_last)
        if metrics["eval/return"] > self.best:
            self.best = metrics["eval/return"]
            self.agent.save(self.model, self.run.sb3_best)
        self.eval_seconds += time.perf_counter() - start
        return True
