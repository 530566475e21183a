"""RLModule's metrics: episode statistics and logging with the env step as the step (W&B's x-axis
`trainer/global_step`, the CSV's `step` column)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.common.envs import finished_episodes

if TYPE_CHECKING:
    from agents.common.hyperparameters import AgentConfig


class EnvStepLogging:
    """Training metrics every `log_interval` env steps (with time/sps, time/train_seconds and the mean return and
    length of the last 100 episodes); any metrics at the current env step."""

    hp: AgentConfig
    env_steps: int
    train_seconds: float
    episode_returns: deque[float]
    episode_lengths: deque[int]
    _last_log_step: int
    _clock: dict[str, float]

    def record_episodes(self, infos: dict[str, Any]) -> None:
        for _, ret, length in finished_episodes(infos):
            self.episode_returns.append(ret)
            self.episode_lengths.append(length)

    def log_training_metrics(self, metrics: dict[str, Any], force: bool = False) -> None:
        """`metrics` and the run's own, when log_interval env steps have passed since the last log (or `force`)."""
        if self.env_steps - self._last_log_step < self.hp.log_interval and not force:
            return
        self._last_log_step = self.env_steps
        c = self._clock
        elapsed = self.train_seconds - c["seconds0"]
        metrics = dict(metrics)
        metrics["time/sps"] = (self.env_steps - c["steps0"]) / max(elapsed, 1e-9)
        metrics["time/train_seconds"] = self.train_seconds
        if self.episode_returns:
            metrics["rollout/ep_return"] = float(np.mean(self.episode_returns))
            metrics["rollout/ep_len"] = float(np.mean(self.episode_lengths))
        self.log_at_env_step(metrics)

    def log_at_env_step(self, metrics: dict[str, float], show: bool = False) -> None:
        """Log to every logger with the env step as x-axis; `show` also puts them in callback_metrics
        (progress display, checkpoint monitor, final metrics)."""
        if self.trainer.is_global_zero:
            for lg in self.loggers:  # with the epoch and saved at once, as Lightning's own logging does
                lg.log_metrics({**metrics, "epoch": self.current_epoch}, step=self.env_steps)
                lg.save()
        for k, v in metrics.items():
            if show or k.startswith("eval/") or k in ("rollout/ep_return", "time/sps"):
                self.log(k, float(v), logger=False, on_step=True, on_epoch=False, batch_size=1)
