"""Soft Actor-Critic (Haarnoja et al., 2018) as a LightningModule, following Stable-Baselines3's SAC.

One training_step = one iteration, read top to bottom: `train_freq` vector env steps into the replay
buffer (uniformly random actions before `learning_starts` env steps, then samples of the policy), then
`gradient_steps` updates once `learning_starts` env steps are collected. Each update, in SB3's order, on one
replay batch: the temperature (when `ent_coef` is learnt: towards `target_entropy`), the twin critics
(towards the soft TD target of the target critics), the actor (against the updated critics), then the
Polyak update of the target critics every `target_update_interval` gradient steps. The alpha of an update
is the temperature before its own step, as in SB3. The maths is in agents/sac/maths.py.

`target_update_interval` counts gradient steps over the whole run (as CleanRL does); SB3 counts them within
each training phase, so there, with gradient_steps=1, the targets move every step whatever the interval
(the default interval, 1, is the same in both).

The policy is a tanh-squashed Gaussian: its actions are in [-1, 1] (what the buffer stores and the critics
see), rescaled to the env's Box bounds when stepping the env.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.common.buffers import ReplayBuffer
from agents.common.envs import EnvConfig, final_observations, make_single_env
from agents.common.module import RLModule
from agents.sac.maths import (
    actor_loss,
    critic_loss,
    polyak_update,
    soft_td_target,
    temperature_loss,
    unscale_action,
)
from agents.sac.nets import SquashedGaussianActor, TwinQ
from lab.checks import check_ints

STATS = ("actor_loss", "critic_loss", "ent_coef", "ent_coef_loss")
ENCODERS = ("auto", "mlp")  # both: MLPs on the flat vector observation (the only kind agent=sac takes for now)


def parse_ent_coef(ent_coef: str | float) -> tuple[bool, float]:
    """agent.ent_coef -> (learnt?, initial or fixed value): 'auto' (learnt from 1.0), 'auto_0.1' (learnt from 0.1),
    or a fixed number >= 0 (SB3's forms). ValueError naming the value and the valid forms otherwise."""
    valid = "valid choices: auto, auto_<initial value> (e.g. auto_0.1), or a fixed number >= 0"
    if isinstance(ent_coef, str) and ent_coef.startswith("auto"):
        if ent_coef == "auto":
            return True, 1.0
        try:
            init = float(ent_coef.removeprefix("auto_")) if ent_coef.startswith("auto_") else math.nan
        except ValueError:
            init = math.nan
        if not init > 0 or not math.isfinite(init):
            raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid: the initial value after 'auto_' must be a "
                             f"number > 0; {valid}.")
        return True, init
    if isinstance(ent_coef, bool):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.")
    try:
        value = float(ent_coef)
    except (TypeError, ValueError):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.") from None
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.")
    return False, value


def parse_target_entropy(target_entropy: str | float, action_dim: int) -> float:
    """agent.target_entropy -> a number: 'auto' is -dim(A) (SB3's and the paper's heuristic)."""
    if target_entropy == "auto":
        return -float(action_dim)
    if not isinstance(target_entropy, bool):
        try:
            value = float(target_entropy)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return value
    raise ValueError(f"agent.target_entropy={target_entropy!r} is not valid; valid choices: auto (-dim(A) = "
                     f"{-float(action_dim)} here) or a number.")


def check_sac_keys(learning_rate: float, buffer_size: int, learning_starts: int, batch_size: int, tau: float,
                   train_freq: int, gradient_steps: int, target_update_interval: int, ent_coef: str | float,
                   target_entropy: str | float) -> None:
    """ValueError naming the first bad SAC key (shared by agent=sac and agent=sb3_sac)."""
    check_ints("agent.", buffer_size=(buffer_size, 1), batch_size=(batch_size, 1), train_freq=(train_freq, 1),
               target_update_interval=(target_update_interval, 1), learning_starts=(learning_starts, 0),
               gradient_steps=(gradient_steps, -1))
    if gradient_steps == 0:
        raise ValueError("agent.gradient_steps=0 is not valid: a positive number, or -1 for as many as env steps.")
    if batch_size > buffer_size:
        raise ValueError(f"agent.batch_size={batch_size} is larger than agent.buffer_size={buffer_size}.")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
        raise ValueError(f"agent.tau={tau!r} is not valid: it must be in (0, 1] (Polyak averaging weight; 1 = a copy).")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"agent.learning_rate={learning_rate!r} is not valid: it must be a number > 0.")
    parse_ent_coef(ent_coef)
    parse_target_entropy(target_entropy, 1)


def check_sac_env(env_cfg: EnvConfig, others: str = "agent=dqn or agent=ppo") -> tuple[np.ndarray, np.ndarray]:
    """ValueError unless SAC suits the env: a flat Box action space with finite bounds, flat vector (1-D Box)
    observations. Returns the env's action bounds (low, high) as float32, read from the env without
    ClipAction (which widens them to +-inf)."""
    obs_space, action_space = env_cfg.spaces()  # the env's own spaces (its errors named)
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"SAC needs a Box action space; env.id={env_cfg.id!r} has {action_space} (use {others}).")
    if len(action_space.shape) != 1:
        raise ValueError(f"SAC needs a flat Box action space (one dimension); env.id={env_cfg.id!r} has "
                         f"{action_space}.")
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"SAC takes flat vector observations (a 1-D Box) for now; env.id={env_cfg.id!r} has "
                         f"{obs_space} (use {others} for image, Dict, Tuple or Discrete observations).")
    env = make_single_env(env_cfg, training=True, clip_actions=False)
    try:
        bounds = env.action_space
    finally:
        env.close()
    low, high = (np.asarray(b, dtype=np.float32) for b in (bounds.low, bounds.high))
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"SAC needs finite action bounds (its tanh-squashed actions are rescaled to them); "
                         f"env.id={env_cfg.id!r} has {bounds}.")
    return low, high


class SAC(RLModule):
    """SAC with twin critics, Polyak-averaged target critics, a squashed Gaussian actor and an automatic (or
    fixed) entropy temperature; SB3's SAC defaults."""

    def __init__(
        self,
        env: EnvConfig,
        optimizer: Callable[..., torch.optim.Optimizer],
        total_timesteps: int = 100_000,
        seed: int = 0,
        learning_rate: float = 3e-4,
        anneal_lr: bool = False,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int = 1,
        gradient_steps: int = 1,
        ent_coef: str | float = "auto",
        target_entropy: str | float = "auto",
        target_update_interval: int = 1,
        encoder: str = "auto",
        net_arch: tuple[int, ...] = (256, 256),
        activation: str = "relu",
        save_replay_buffer: bool = False,
        eval_freq: int = 5000,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        log_interval: int = 1000,
        video: bool = True,
        torch_threads: int | None = None,
    ) -> None:
        super().__init__(env, total_timesteps, seed, gamma, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        check_sac_keys(learning_rate, buffer_size, learning_starts, batch_size, tau, train_freq, gradient_steps,
                       target_update_interval, ent_coef, target_entropy)
        if encoder not in ENCODERS:
            raise ValueError(f"agent.encoder={encoder!r} is not valid for agent=sac, which takes flat vector "
                             f"observations with MLPs for now; valid choices: {', '.join(ENCODERS)} (agent=sb3_sac "
                             "takes images with SB3's CnnPolicy).")
        self.save_hyperparameters(ignore=["env", "optimizer"])
        self.optimizer_factory = optimizer
        self.learning_rate, self.anneal_lr = learning_rate, anneal_lr
        self.buffer_size, self.learning_starts, self.batch_size = buffer_size, learning_starts, batch_size
        self.tau, self.target_update_interval = tau, target_update_interval
        self.train_freq, self.gradient_steps = train_freq, gradient_steps
        self.auto_ent_coef, init = parse_ent_coef(ent_coef)
        self.target_entropy_key = target_entropy
        self.target_entropy: float | None = None  # a number once the action space is known (build_networks)
        # The temperature: log alpha, learnt (a parameter: checkpointed, moved to the device, averaged under
        # DDP like the networks' gradients) or fixed.
        self.log_ent_coef = torch.nn.Parameter(torch.full((1,), math.log(init))) if self.auto_ent_coef else None
        self.ent_coef_value = init
        self._fixed_alpha: torch.Tensor | None = None  # ent_coef_value as a tensor on the device
        self.net_kwargs = dict(net_arch=list(net_arch), activation=activation)
        self.save_replay_buffer = save_replay_buffer
        self.actor: SquashedGaussianActor | None = None
        self.critic: TwinQ | None = None
        self.critic_target: TwinQ | None = None
        self.buffer: ReplayBuffer | None = None
        self.action_low: np.ndarray | None = None
        self.action_high: np.ndarray | None = None
        self.n_updates = 0  # gradient steps so far: the clock of target updates

    @property
    def steps_per_iteration(self) -> int:
        return self.train_freq * self.env_cfg.num_envs

    @property
    def action_dim(self) -> int:
        return self.actor.action_dim

    def check_env(self) -> None:
        low, _ = check_sac_env(self.env_cfg)
        parse_target_entropy(self.target_entropy_key, len(low))
        super().check_env()

    def build_networks(self) -> None:
        if self.actor is not None:
            return
        self.action_low, self.action_high = check_sac_env(self.env_cfg)
        obs_space, action_space = self.spaces()
        obs_dim, action_dim = int(obs_space.shape[0]), int(action_space.shape[0])
        self.target_entropy = parse_target_entropy(self.target_entropy_key, action_dim)
        self.actor = SquashedGaussianActor(obs_dim, action_dim, **self.net_kwargs)
        self.critic = TwinQ(obs_dim, action_dim, self.net_kwargs["net_arch"], self.net_kwargs["activation"])
        self.critic_target = TwinQ(obs_dim, action_dim, self.net_kwargs["net_arch"], self.net_kwargs["activation"])
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """actor, critics and (when learnt) temperature, each its own optimizer at agent.learning_rate (SB3's)."""
        opts = [self.optimizer_factory(self.actor.parameters(), lr=self.learning_rate),
                self.optimizer_factory(self.critic.parameters(), lr=self.learning_rate)]
        if self.log_ent_coef is not None:
            opts.append(self.optimizer_factory([self.log_ent_coef], lr=self.learning_rate))
        return opts

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.buffer is None:
            obs_space, action_space = self.spaces()
            # float32 observations whatever the env's dtype (MuJoCo's are float64): what the networks take
            self.buffer = ReplayBuffer(self.buffer_size, self.env_cfg.num_envs, obs_space.shape, np.float32,
                                       action_shape=action_space.shape, action_dtype=np.float32)

    # ---- acting --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """The policy's actions in [-1, 1] (float32): tanh of the mean, or a sample."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.actor.act(obs_t, deterministic).cpu().numpy()

    def unscale(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] -> the env's action bounds."""
        return unscale_action(actions, self.action_low, self.action_high).astype(np.float32)

    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Env actions (within the Box bounds) for a batch of observations."""
        return self.unscale(self.act(obs, deterministic))

    # ---- training ------------------------------------------------------------------------------------
    def training_step(self, batch: int, batch_idx: int) -> None:
        envs, buf = self.envs, self.buffer
        n_envs = self.env_cfg.num_envs

        # 1. Collect train_freq vector steps into the replay buffer (SB3: uniform actions before learning_starts).
        for _ in range(self.train_freq):
            obs = self.next_obs
            if self.env_steps < self.learning_starts:
                actions = self.rng.uniform(-1.0, 1.0, (n_envs, self.action_dim)).astype(np.float32)
            else:
                actions = self.act(obs, deterministic=False)
            next_obs, rewards, terminated, truncated, infos = envs.step(self.unscale(actions))
            done = terminated | truncated
            buf.add(obs, final_observations(next_obs, infos, done), actions, rewards, terminated, truncated)
            if done.any():
                self.record_episodes(infos)
            self.next_obs = next_obs
            self.env_steps += n_envs * self.world_size

        # 2. Gradient steps, once warm.
        metrics: dict[str, Any] = {}
        if self.env_steps > self.learning_starts:
            opts = self.optimizers()
            lr = self.learning_rate * (max(1.0 - self.env_steps / self.total_timesteps, 0.0) if self.anneal_lr else 1.0)
            for opt in opts:
                for group in opt.param_groups:
                    group["lr"] = lr
            n_updates = self.gradient_steps if self.gradient_steps > 0 else self.steps_per_iteration
            totals = torch.zeros(len(STATS), device=self.device)
            for b in self.sample_batches(n_updates):
                totals += self.update(b, opts)
            metrics = {f"train/{k}": v / n_updates for k, v in zip(STATS, totals.tolist(), strict=True)}
            if self.log_ent_coef is None:
                del metrics["train/ent_coef_loss"]
            metrics["train/learning_rate"] = lr
        self.end_iteration(metrics)

    def sample_batches(self, n: int) -> list[dict[str, torch.Tensor]]:
        """The iteration's `n` replay batches, drawn at once (the same random numbers, in the same order, as `n`
        draws of one batch) and converted to tensors once."""
        sample = self.buffer.sample(n * self.batch_size, self.rng, self.gamma)
        t = {k: torch.as_tensor(sample[k], device=self.device)
             for k in ("obs", "actions", "returns", "discounts", "next_obs")}
        if n == 1:
            return [t]
        return [{k: v[i * self.batch_size:(i + 1) * self.batch_size] for k, v in t.items()} for i in range(n)]

    def update(self, b: dict[str, torch.Tensor], opts: list[Any]) -> torch.Tensor:
        """One SAC gradient step on a replay batch (SB3's order); returns the statistics (detached, as STATS)."""
        actor_opt, critic_opt = opts[0], opts[1]
        actions_pi, logp = self.actor.sample(b["obs"])

        # Temperature: alpha for this step is the value before its own update.
        if self.log_ent_coef is not None:
            alpha = self.log_ent_coef.detach().exp()
            ent_loss = temperature_loss(self.log_ent_coef, logp, self.target_entropy)
            self.optimizer_step_on(ent_loss, opts[2])
        else:
            if self._fixed_alpha is None or self._fixed_alpha.device != self.device:
                self._fixed_alpha = torch.full((1,), self.ent_coef_value, device=self.device)
            alpha, ent_loss = self._fixed_alpha, torch.zeros((), device=self.device)

        # Critics towards the soft TD target of the target critics.
        with torch.no_grad():
            next_actions, next_logp = self.actor.sample(b["next_obs"])
            next_q1, next_q2 = self.critic_target(b["next_obs"], next_actions)
            target = soft_td_target(b["returns"], b["discounts"], next_q1, next_q2, next_logp, alpha)
        q1, q2 = self.critic(b["obs"], b["actions"])
        c_loss = critic_loss(q1, q2, target)
        self.optimizer_step_on(c_loss, critic_opt)

        # Actor against the updated critics (their weights as constants: gradients for the actor only).
        q1_pi, q2_pi = self.critic(b["obs"], actions_pi, detach_params=True)
        a_loss = actor_loss(logp, q1_pi, q2_pi, alpha)
        self.optimizer_step_on(a_loss, actor_opt)

        self.n_updates += 1
        if self.n_updates % self.target_update_interval == 0:
            polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.tau)
        return torch.stack([a_loss.detach(), c_loss.detach(), alpha.reshape(()), ent_loss.detach()])

    def ent_coef(self) -> float:
        """The current temperature alpha."""
        return float(self.log_ent_coef.detach().exp()) if self.log_ent_coef is not None else self.ent_coef_value

    # ---- state ---------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_updates": self.n_updates}
        if self.save_replay_buffer and self.buffer is not None:
            state["replay_buffer"] = self.buffer.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.n_updates = int(state.get("n_updates", 0))
        if "replay_buffer" in state and self.buffer is not None:
            self.buffer.load_state_dict(state["replay_buffer"])
