"""PPO agent (`agent=ppo`)."""

from agents.ppo.module import PPO

__all__ = ["PPO"]
