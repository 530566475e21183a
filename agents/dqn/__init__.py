"""DQN agent (`agent=dqn`)."""

from agents.dqn.module import DQN

__all__ = ["DQN"]
