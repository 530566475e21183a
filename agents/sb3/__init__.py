"""Stable-Baselines3 baselines (`agent=sb3_ppo`, `agent=sb3_dqn`) under the lab's env config, seeds and loggers.

They take the same keys as `agent=ppo` / `agent=dqn` (translated to SB3's names), so one sweep compares
both: `python -m lab -m experiment=ppo_cartpole agent=ppo,sb3_ppo seed=0,1,2`. SB3 runs its own loop
(`SB3Runner`); the lab adds what it does for its own agents: the same envs, evaluation every `eval_freq`
env steps, SB3's log keys under the lab's names, checkpoints, the final evaluation and video.
"""

from agents.sb3.base import SB3Agent, SB3Runner
from agents.sb3.dqn import SB3DQN
from agents.sb3.ppo import SB3PPO

__all__ = ["SB3DQN", "SB3PPO", "SB3Agent", "SB3Runner"]
