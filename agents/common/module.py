"""What every agent shares: envs built in `setup`, the iteration loop, evaluation, metrics at env steps, state.

One Lightning training batch is one iteration of the algorithm (PPO: a rollout and its update epochs;
DQN: `train_freq` env steps and their gradient steps). One Lightning epoch is one evaluation period
(`eval_freq` env steps): it ends with `eval_episodes` evaluation episodes, then the checkpoint callbacks
run, so `checkpoints/last.ckpt` is never older than one evaluation period. Metrics are logged with the
env step as the step (W&B's x-axis `trainer/global_step`, the CSV's `step` column).

RLModule is put together from one mixin per job, each in its own file:
  iterations.py     sizes in iterations and epochs, the iteration counter and the training clock
  metrics.py        episode statistics, logging at env steps
  training_envs.py  spaces, training and evaluation envs, torch threads while training
  normalization.py  observation/reward normalization statistics (evaluation envs, DDP, checkpoints)
  optimization.py   zero_grad, backward, gradient clipping and the optimizer step
  evaluation.py     periodic and final evaluations
  checkpointing.py  the checkpoint's agent state, a checkpoint's policy for evaluation
and the agents' hyperparameters in agents.common.hyperparameters (`self.hp`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch import LightningModule

from agents.common.checkpointing import Checkpointing
from agents.common.envs import EnvConfig
from agents.common.evaluation import PolicyEvaluation
from agents.common.hyperparameters import AlgorithmConfig, RunKeys
from agents.common.iterations import IterationLoop, Iterations
from agents.common.metrics import EnvStepLogging
from agents.common.normalization import NormalizationSync
from agents.common.optimization import OptimizerStepping
from agents.common.training_envs import TrainingEnvs
from lab.contracts import ModelHooks

__all__ = ["Iterations", "OptimizerFactory", "RLModule"]

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # the `_partial_` optimizer node: params, lr -> optimizer


class RLModule(IterationLoop, EnvStepLogging, TrainingEnvs, NormalizationSync, OptimizerStepping, PolicyEvaluation,
               Checkpointing, RunKeys, ModelHooks, LightningModule):
    """Base class of our agents (not used on its own). An agent's generated constructor (keyword_init) calls
    its `initialize(env, optimizer, hp)`, which calls this one first."""

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: AlgorithmConfig) -> None:
        LightningModule.__init__(self)
        self.hp = hp
        self.save_hyperparameters(dataclasses.asdict(hp))  # the checkpoint's hyper_parameters, the loggers' hparams
        self.env_cfg = env
        self.optimizer_factory = optimizer
        self.video = hp.video
        self._threads_before: int | None = None
        self.automatic_optimization = False
        self.envs: gym.vector.VectorEnv | None = None
        self.eval_envs: gym.vector.VectorEnv | None = None
        self.next_obs: np.ndarray | None = None
        # Counters and statistics that checkpoints carry.
        self.env_steps = 0  # over all DDP ranks
        self.iteration = 0
        self.world_size = 1  # DDP processes, each with its own envs (set by the runner before fit)
        self.train_seconds = 0.0  # wall-clock of training so far, evaluations excluded
        self.episode_returns: deque[float] = deque(maxlen=100)
        self.episode_lengths: deque[int] = deque(maxlen=100)
        self.rng = np.random.default_rng(hp.seed)  # the agent's own sampling (exploration, replay)
        self._last_log_step = 0
        self._clock: dict[str, float] = {}

    def build_networks(self) -> None:
        raise NotImplementedError

    def configure_model(self) -> None:
        self.build_networks()

    def on_train_start(self) -> None:
        self._direct_step = self.hooks_do_nothing()
        self.start_clock()
        self._last_log_step = self.env_steps

    def lr_now(self) -> float:
        """agent.learning_rate, times the fraction of the budget left with agent.anneal_lr."""
        return self.hp.learning_rate * (self.progress_remaining() if self.hp.anneal_lr else 1.0)

    def set_lr(self, *optimizers: torch.optim.Optimizer) -> float:
        """Every param group of `optimizers` at lr_now(); returns it."""
        lr = self.lr_now()
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr
