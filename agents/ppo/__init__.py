"""PPO agent (`agent=ppo`)."""

from agents.ppo.config import PPOConfig
from agents.ppo.module import PPO

__all__ = ["PPO", "PPOConfig"]
