"""RLModule's iteration and epoch accounting: one Lightning training batch is one iteration of the algorithm,
one Lightning epoch is one evaluation period (`eval_freq` env steps)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.common.hyperparameters import AgentConfig


class Iterations:
    """The training 'dataloader': the iteration numbers of the current evaluation period."""

    def __init__(self, agent: IterationLoop) -> None:
        self.agent = agent

    def __len__(self) -> int:
        return self.agent.iterations_per_epoch

    def __iter__(self) -> Iterator[int]:
        a = self.agent
        end = min((a.iteration // a.iterations_per_epoch + 1) * a.iterations_per_epoch, a.total_iterations)
        return iter(range(a.iteration, end))




class IterationLoop:
    """Sizes in iterations and epochs, the iteration counter and the training clock; `end_iteration` closes
    each training_step (metrics every log_interval env steps, the evaluation at the end of an epoch)."""

    hp: AgentConfig
    env_steps: int  # over all DDP ranks
    iteration: int
    world_size: int  # DDP processes, each with its own envs (set by the runner before fit)
    train_seconds: float  # wall-clock of training so far, evaluations excluded
    _clock: dict[str, float]

    @property
    def steps_per_iteration(self) -> int:  # env steps (summed over sub-envs) per training batch
        raise NotImplementedError

    @property
    def global_steps_per_iteration(self) -> int:  # over all DDP ranks
        return self.steps_per_iteration * self.world_size

    @property
    def total_iterations(self) -> int:
        return math.ceil(self.hp.total_timesteps / self.global_steps_per_iteration)

    @property
    def iterations_per_epoch(self) -> int:
        return max(1, round(self.hp.eval_freq / self.global_steps_per_iteration))

    @property
    def num_epochs(self) -> int:
        return math.ceil(self.total_iterations / self.iterations_per_epoch)

    @property
    def progress_step(self) -> str:  # what lab.callbacks.EpochLines shows: env steps, the metrics' x-axis
        return f"env step {self.env_steps}"

    def progress_remaining(self) -> float:
        """The fraction of agent.total_timesteps left (SB3's progress_remaining): linear schedules' factor."""
        return max(1.0 - self.env_steps / self.hp.total_timesteps, 0.0)

    def train_dataloader(self) -> Iterations:
        return Iterations(self)

    def start_clock(self) -> None:
        self._clock = {"start": time.perf_counter(), "eval": 0.0, "seconds0": self.train_seconds,
                       "steps0": self.env_steps}

    def end_iteration(self, metrics: dict[str, float]) -> None:
        """Call at the end of each training_step: counters, logging every log_interval steps (metrics.py),
        evaluation at the end of each epoch (evaluation.py)."""
        self.iteration += 1
        c = self._clock
        self.train_seconds = c["seconds0"] + time.perf_counter() - c["start"] - c["eval"]
        last = self.iteration >= self.total_iterations
        self.log_training_metrics(metrics, force=last)
        if self.iteration % self.iterations_per_epoch == 0 or last:
            t0 = time.perf_counter()
            self.periodic_evaluation()
            c["eval"] += time.perf_counter() - t0
