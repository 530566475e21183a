"""Shared RL pieces: advantage estimation (more to come with the DQN and PPO agents)."""

from agents.common.gae import compute_gae

__all__ = ["compute_gae"]
