"""Reinforcement learning: the lab's agents (dqn, ppo, sac), Stable-Baselines3 baselines (sb3), shared pieces (common)."""

import gymnasium as _gym

# The identity envs (agents/common/identity_envs.py), registered by name only: SB3 is imported when one is made.
for _name in ("IdentityDiscrete", "IdentityBox", "IdentityMultiDiscrete", "IdentityMultiBinary", "IdentityTuple",
              "IdentityImage", "IdentityDict", "SimpleMultiObs"):
    if f"lab/{_name}-v0" not in _gym.registry:
        _gym.register(f"lab/{_name}-v0", entry_point=f"agents.common.identity_envs:{_name}", disable_env_checker=True)
