"""Shared RL pieces: envs and wrappers, buffers, advantage estimation, evaluation, the agent base class."""

from agents.common.buffers import ReplayBuffer, RolloutBuffer, n_step_targets
from agents.common.envs import EnvConfig, make_env
from agents.common.evaluate import evaluate
from agents.common.gae import compute_gae

__all__ = ["EnvConfig", "ReplayBuffer", "RolloutBuffer", "compute_gae", "evaluate", "make_env", "n_step_targets"]
