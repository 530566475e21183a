"""Rollout buffer (on-policy, PPO) and replay buffer (off-policy, DQN; uniform or prioritized, n-step)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from agents.common.gae import compute_gae


class RolloutBuffer:
    """`num_steps` x `num_envs` transitions, then GAE advantages and value targets, then shuffled minibatches."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 obs_dtype: torch.dtype = torch.float32, action_dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        z = {"device": device}
        self.obs = torch.zeros((T, N, *obs_shape), dtype=obs_dtype, **z)
        self.actions = torch.zeros((T, N, *action_shape), dtype=action_dtype, **z)
        self.logprobs = torch.zeros((T, N), **z)
        self.rewards = torch.zeros((T, N), **z)
        self.values = torch.zeros((T, N), **z)
        self.final_values = torch.zeros((T, N), **z)  # V(final obs) of episodes truncated at step t
        self.terminated = torch.zeros((T, N), dtype=torch.bool, **z)
        self.truncated = torch.zeros((T, N), dtype=torch.bool, **z)
        self.advantages = torch.zeros((T, N), **z)
        self.returns = torch.zeros((T, N), **z)
        # On the CPU the env's NumPy arrays are written through NumPy views of the same memory: a NumPy
        # slice assignment costs about a microsecond, a torch one (with its tensor conversion) several.
        cpu = torch.device(device).type == "cpu"
        self._np = {k: getattr(self, k).numpy() for k in ("obs", "rewards", "terminated", "truncated")} if cpu else None

    def add(self, t: int, obs: torch.Tensor, actions: torch.Tensor, logprobs: torch.Tensor, values: torch.Tensor,
            rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Step t of the rollout: the observations acted on (as given to the policy, on the buffer's device), the
        policy's outputs, and what the env returned."""
        self.actions[t], self.logprobs[t], self.values[t] = actions, logprobs, values
        if self._np is not None:
            np_ = self._np
            np_["obs"][t], np_["rewards"][t] = obs.numpy(), rewards  # obs.numpy(): a view, no copy
            np_["terminated"][t], np_["truncated"][t] = terminated, truncated
            return
        dev = self.obs.device
        self.obs[t] = obs
        self.rewards[t] = torch.as_tensor(rewards).to(dev, non_blocking=True)
        self.terminated[t] = torch.as_tensor(terminated).to(dev, non_blocking=True)
        self.truncated[t] = torch.as_tensor(truncated).to(dev, non_blocking=True)

    def compute_returns_and_advantages(self, next_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.terminated, self.truncated,
                                                    self.final_values, next_value, gamma, gae_lambda)

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """One pass over the flattened rollout in random minibatches of `batch_size` (the last may be smaller)."""
        n = self.num_steps * self.num_envs
        flat = {"obs": self.obs.flatten(0, 1), "actions": self.actions.flatten(0, 1),
                "logprobs": self.logprobs.flatten(), "values": self.values.flatten(),
                "advantages": self.advantages.flatten(), "returns": self.returns.flatten()}
        perm = torch.randperm(n, generator=generator).to(self.obs.device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            yield {k: v[idx] for k, v in flat.items()}


def n_step_targets(rewards: np.ndarray, terminated: np.ndarray, done: np.ndarray, valid: np.ndarray,
                   gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns over windows of (B, n) consecutive steps of one env each.

    The window stops after the first step that ends an episode (`done`: terminated or truncated) or at the
    first step not yet collected (`valid` False). Returns (R, discount, last) with R = sum_k gamma^k r_k over
    the steps used, discount = gamma^m for m steps used (0 when the last used step terminated: no
    bootstrap; a truncated episode is bootstrapped from its final observation), last = offset of the last
    step used, whose next observation is the bootstrap state.
    """
    B, n = rewards.shape
    ret = np.zeros(B, dtype=np.float64)
    disc = np.ones(B, dtype=np.float64)
    alive = np.ones(B, dtype=bool)
    last = np.zeros(B, dtype=np.int64)
    last_terminated = np.zeros(B, dtype=bool)
    for k in range(n):
        use = alive & valid[:, k]
        ret += np.where(use, disc * rewards[:, k], 0.0)
        disc = np.where(use, disc * gamma, disc)
        last = np.where(use, k, last)
        last_terminated = np.where(use, terminated[:, k], last_terminated)
        alive = use & ~done[:, k]
    return ret.astype(np.float32), np.where(last_terminated, 0.0, disc).astype(np.float32), last


class ReplayBuffer:
    """Circular buffer of `buffer_size` transitions, stored per env column like SB3's.

    `prioritized=True`: proportional prioritized replay (Schaul et al., 2016): P(i) ~ p_i^alpha, new
    transitions at the highest priority seen, importance weights (N P(i))^-beta normalized by their max.
    """

    def __init__(self, buffer_size: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
                 action_shape: tuple[int, ...] = (), action_dtype: np.dtype = np.int64, prioritized: bool = False,
                 alpha: float = 0.6) -> None:
        self.capacity = max(buffer_size // num_envs, 1)
        self.num_envs = num_envs
        C, N = self.capacity, num_envs
        self.obs = np.zeros((C, N, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((C, N, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((C, N, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((C, N), dtype=np.float32)
        self.terminated = np.zeros((C, N), dtype=bool)
        self.done = np.zeros((C, N), dtype=bool)
        self.prioritized, self.alpha = prioritized, alpha
        self.priorities = np.zeros((C, N), dtype=np.float64) if prioritized else None
        self.max_priority = 1.0
        self.pos, self.full = 0, False

    def __len__(self) -> int:
        return (self.capacity if self.full else self.pos) * self.num_envs

    def add(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray) -> None:
        """One vector step. `next_obs` is the real next observation (the final one where an episode ended)."""
        p = self.pos
        self.obs[p], self.next_obs[p], self.actions[p] = obs, next_obs, actions
        self.rewards[p], self.terminated[p], self.done[p] = rewards, terminated, terminated | truncated
        if self.priorities is not None:
            self.priorities[p] = self.max_priority
        self.pos = (p + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int, rng: np.random.Generator, gamma: float, n_step: int = 1,
               beta: float = 0.4) -> dict[str, np.ndarray]:
        """A batch with n-step targets: obs, actions, returns, discounts, next_obs (bootstrap), weights, index."""
        size = len(self)
        if self.priorities is None:
            flat = rng.integers(0, size, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            p = self.priorities[: size // self.num_envs].reshape(-1) ** self.alpha
            probs = p / p.sum()
            flat = rng.choice(size, size=batch_size, p=probs)
            w = (size * probs[flat]) ** (-beta)
            weights = (w / ((size * probs.min()) ** (-beta))).astype(np.float32)
        t, e = np.divmod(flat, self.num_envs)
        if n_step == 1:  # plain one-step TD targets: no window to walk
            disc = np.where(self.terminated[t, e], 0.0, gamma).astype(np.float32)
            return {"obs": self.obs[t, e], "actions": self.actions[t, e], "returns": self.rewards[t, e],
                    "discounts": disc, "next_obs": self.next_obs[t, e], "weights": weights, "index": flat}
        k = np.arange(n_step)
        steps = (t[:, None] + k) % self.capacity  # (B, n)
        newest = (self.pos - 1) % self.capacity
        written_after = (newest - t) % self.capacity  # steps collected after t in the same column
        valid = k[None, :] <= written_after[:, None]
        cols = e[:, None]
        ret, disc, last = n_step_targets(self.rewards[steps, cols], self.terminated[steps, cols],
                                         self.done[steps, cols], valid, gamma)
        boot = steps[np.arange(batch_size), last]
        return {"obs": self.obs[t, e], "actions": self.actions[t, e], "returns": ret, "discounts": disc,
                "next_obs": self.next_obs[boot, e], "weights": weights, "index": flat}

    def update_priorities(self, index: np.ndarray, td_errors: np.ndarray, eps: float = 1e-6) -> None:
        pr = np.abs(td_errors) + eps
        t, e = np.divmod(index, self.num_envs)
        self.priorities[t, e] = pr
        self.max_priority = max(self.max_priority, float(pr.max()))

    def state_dict(self) -> dict[str, torch.Tensor | int | bool | float]:
        state: dict[str, torch.Tensor | int | bool | float] = {
            k: torch.from_numpy(getattr(self, k).copy())
            for k in ("obs", "next_obs", "actions", "rewards", "terminated", "done")}
        if self.priorities is not None:
            state["priorities"] = torch.from_numpy(self.priorities.copy())
        state.update(pos=self.pos, full=self.full, max_priority=self.max_priority)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int | bool | float]) -> None:
        for k in ("obs", "next_obs", "actions", "rewards", "terminated", "done", "priorities"):
            if k in state and getattr(self, k) is not None:
                arr = state[k].numpy()
                if arr.shape != getattr(self, k).shape:
                    raise ValueError(f"the checkpoint's replay buffer `{k}` has shape {arr.shape}, this run's "
                                     f"{getattr(self, k).shape}: resume with the same buffer_size and env.num_envs.")
                getattr(self, k)[...] = arr
        self.pos, self.full, self.max_priority = int(state["pos"]), bool(state["full"]), float(state["max_priority"])
