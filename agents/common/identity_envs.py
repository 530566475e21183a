"""Identity environments: one per observation/action space, each with a known answer (registered as `lab/...`).

Stable-Baselines3's test environments (`stable_baselines3.common.envs`) under Gymnasium ids, so any agent
of the lab can be pointed at them from the command line (`env.id=lab/IdentityMultiDiscrete-v0`), plus two
the lab adds for spaces SB3 has no identity env for (Tuple observations, images of any size and layout, a
Dict whose every key is needed).
In every identity env the observation names the rewarded action: reward 1 for that action, 0 otherwise, for
100 steps (truncated), so a policy that learnt the identity scores 100. `lab/SimpleMultiObs-v0` is SB3's
4x4 grid with Dict observations (a vector per column, an image per row): -0.1 a step, +1 at the goal,
so an optimal policy scores 0.77 on average over its random starts (3.27 steps from the goal).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common import envs as sb3_envs

EP_LENGTH = 100


class _SeededSpace:
    """SB3's identity envs draw their states from `action_space.sample()`: seed that space with the env."""

    action_space: spaces.Space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self.action_space.seed(seed)
        return super().reset(seed=seed, options=options)  # type: ignore[misc]


class IdentityDiscrete(_SeededSpace, sb3_envs.IdentityEnv):
    """Discrete(dim) observations and actions."""

    def __init__(self, dim: int = 10, ep_length: int = EP_LENGTH) -> None:
        super().__init__(dim=dim, ep_length=ep_length)


class IdentityBox(_SeededSpace, sb3_envs.IdentityEnvBox):
    """Box(-1, 1, (1,)) observations and actions; reward 1 within `eps` of the observation."""

    def __init__(self, eps: float = 0.5, ep_length: int = EP_LENGTH) -> None:
        super().__init__(eps=eps, ep_length=ep_length)


class IdentityMultiDiscrete(_SeededSpace, sb3_envs.IdentityEnvMultiDiscrete):
    """MultiDiscrete([dim, dim]) observations and actions; reward 1 when both match."""

    def __init__(self, dim: int = 4, ep_length: int = EP_LENGTH) -> None:
        super().__init__(dim=dim, ep_length=ep_length)


class IdentityMultiBinary(_SeededSpace, sb3_envs.IdentityEnvMultiBinary):
    """MultiBinary(dim) observations and actions; reward 1 when every bit matches."""

    def __init__(self, dim: int = 4, ep_length: int = EP_LENGTH) -> None:
        super().__init__(dim=dim, ep_length=ep_length)


class SimpleMultiObs(sb3_envs.SimpleMultiObsEnv):
    """SB3's Dict-observation grid, starting only where the goal can be reached, with its random column vectors
    and row images drawn from `layout_seed`:
    SB3 draws them from NumPy's global generator, so every copy (each sub-env, the evaluation envs) would
    otherwise be a different task. Images are channel-last (64, 64, 1) by default, as in SB3."""

    def __init__(self, channel_last: bool = True, discrete_actions: bool = True, layout_seed: int = 0) -> None:
        state = np.random.get_state()
        np.random.seed(layout_seed)
        try:
            super().__init__(channel_last=channel_last, discrete_actions=discrete_actions)
        finally:
            np.random.set_state(state)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed, options=options)
        if self.random_start:  # SB3 draws the start from NumPy's global generator: the env's own, seeded one here,
            # and only among the cells that lead to the goal: SB3's grid also starts in its four walled-in cells
            # (5, 6, 9, 10), which no action leaves (every policy scores -10 there)
            self.state = int(self.np_random.choice(self.REACHABLE))
        return self.get_state_mapping(), {}

    REACHABLE = (0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14)  # the ring around the walls; 15 is the goal


class _Identity(gym.Env):
    """Observation = an encoding of a state in range(n); reward 1 for action == state; 100 steps."""

    def __init__(self, n: int, ep_length: int) -> None:
        self.action_space = spaces.Discrete(n)
        self.n, self.ep_length = n, ep_length
        self.state, self.steps = 0, 0

    def observe(self) -> Any:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.state, self.steps = int(self.np_random.integers(self.n)), 0
        return self.observe(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = float(int(action) == self.state)
        self.state, self.steps = int(self.np_random.integers(self.n)), self.steps + 1
        return self.observe(), reward, False, self.steps >= self.ep_length, {}


class IdentityTuple(_Identity):
    """Tuple(Discrete(n), Box(-1, 1, (2,))) observations: the state and two noise values; Discrete(n) actions."""

    def __init__(self, n: int = 4, ep_length: int = EP_LENGTH) -> None:
        super().__init__(n, ep_length)
        self.observation_space = spaces.Tuple((spaces.Discrete(n), spaces.Box(-1.0, 1.0, (2,), np.float32)))

    def observe(self) -> tuple[int, np.ndarray]:
        return self.state, self.np_random.uniform(-1, 1, 2).astype(np.float32)


class IdentityImage(_Identity):
    """uint8 images of `size` x `size` x `channels` (channel-last; `channels_first=True` for C x H x W) in
    which the state's band of rows is bright; Discrete(n) actions."""

    def __init__(self, n: int = 4, size: int = 12, channels: int = 3, channels_first: bool = False,
                 ep_length: int = EP_LENGTH) -> None:
        if size < n:
            raise ValueError(f"size={size} must be at least n={n}: one band of rows per state")
        super().__init__(n, ep_length)
        self.size, self.channels, self.channels_first = size, channels, channels_first
        shape = (channels, size, size) if channels_first else (size, size, channels)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)

    def observe(self) -> np.ndarray:
        img = np.zeros((self.size, self.size, self.channels), dtype=np.uint8)
        band = self.size // self.n
        img[self.state * band:(self.state + 1) * band] = 255
        return np.ascontiguousarray(img.transpose(2, 0, 1)) if self.channels_first else img


class IdentityDict(_Identity):
    """Dict observations that take every key to read the state: 'img' (a uint8 image, channel-last, whose
    bright band of rows is state // 2), 'parity' (Discrete(2): state % 2) and 'noise' (Box(-1, 1, (2,)));
    Discrete(4) actions."""

    def __init__(self, size: int = 8, ep_length: int = EP_LENGTH) -> None:
        super().__init__(4, ep_length)
        self.size = size
        self.observation_space = spaces.Dict({"img": spaces.Box(0, 255, (size, size, 1), np.uint8),
                                              "parity": spaces.Discrete(2),
                                              "noise": spaces.Box(-1.0, 1.0, (2,), np.float32)})

    def observe(self) -> dict[str, Any]:
        img = np.zeros((self.size, self.size, 1), dtype=np.uint8)
        half = self.size // 2
        img[(self.state // 2) * half:(self.state // 2 + 1) * half] = 255
        return {"img": img, "parity": self.state % 2, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}
