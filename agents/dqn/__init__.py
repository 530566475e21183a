"""DQN agent (`agent=dqn`)."""

from agents.dqn.config import DQNConfig
from agents.dqn.module import DQN

__all__ = ["DQN", "DQNConfig"]
