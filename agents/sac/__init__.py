"""Soft Actor-Critic agent (`agent=sac`)."""

from agents.sac.config import SACConfig
from agents.sac.module import SAC

__all__ = ["SAC", "SACConfig"]
