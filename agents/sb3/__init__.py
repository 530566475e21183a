"""Stable-Baselines3 baselines (`agent=sb3_ppo`, `agent=sb3_dqn`, `agent=sb3_sac`) and any SB3 algorithm by name
(`agent=sb3 agent.algo=A2C|PPO|DQN|SAC|TD3|DDPG`) under the lab's env config, seeds and loggers.

They take the same keys as `agent=ppo` / `agent=dqn` (translated to SB3's names), so one sweep compares
both: `python -m lab -m experiment=ppo_cartpole agent=ppo,sb3_ppo seed=0,1,2`. SB3 runs its own loop
(`SB3Runner`); the lab adds what it does for its own agents: the same envs, evaluation every `eval_freq`
env steps, SB3's log keys under the lab's names, checkpoints, the final evaluation and video. SB3 gets the
env's raw observations and the policy SB3's users would choose for them (MultiInputPolicy for Dict
observations, CnnPolicy for images, MlpPolicy otherwise).
"""

from agents.sb3.any import SB3Algorithm
from agents.sb3.base import SB3Agent
from agents.sb3.dqn import SB3DQN
from agents.sb3.ppo import SB3PPO
from agents.sb3.runner import SB3Runner
from agents.sb3.sac import SB3SAC

__all__ = ["SB3DQN", "SB3PPO", "SB3SAC", "SB3Agent", "SB3Algorithm", "SB3Runner"]
