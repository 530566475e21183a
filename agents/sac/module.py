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
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.common.buffers import ReplayBuffer
from agents.common.envs import EnvConfig, final_observations, make_single_env
from agents.common.hyperparameters import keyword_init
from agents.common.module import OptimizerFactory, RLModule
from agents.common.replay import ReplayAgent
from agents.sac.config import SACConfig, parse_ent_coef, parse_target_entropy
from agents.sac.maths import (
    actor_loss,
    critic_loss,
    polyak_update,
    soft_td_target,
    temperature_loss,
    unscale_action,
)
from agents.sac.nets import SquashedGaussianActor, TwinQ

STATS = ("actor_loss", "critic_loss", "ent_coef", "ent_coef_loss")
ENCODERS = ("auto", "mlp")  # both: MLPs on the flat vector observation (the only kind agent=sac takes for now)


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


class SAC(ReplayAgent, RLModule):
    """SAC with twin critics, Polyak-averaged target critics, a squashed Gaussian actor and an automatic (or
    fixed) entropy temperature; SB3's SAC defaults."""

    __init__ = keyword_init(SACConfig, "env", "optimizer")
    clock = "n_updates"  # ReplayAgent: checkpoints carry it
    hp: SACConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: SACConfig) -> None:
        if hp.encoder not in ENCODERS:
            raise ValueError(f"agent.encoder={hp.encoder!r} is not valid for agent=sac, which takes flat vector "
                             f"observations with MLPs for now; valid choices: {', '.join(ENCODERS)} (agent=sb3_sac "
                             "takes images with SB3's CnnPolicy).")
        super().initialize(env, optimizer, hp)
        self.auto_ent_coef, init = parse_ent_coef(hp.ent_coef)
        self.target_entropy: float | None = None  # a number once the action space is known (build_networks)
        # The temperature: log alpha, learnt (a parameter: checkpointed, moved to the device, averaged under
        # DDP like the networks' gradients) or fixed.
        self.log_ent_coef = torch.nn.Parameter(torch.full((1,), math.log(init))) if self.auto_ent_coef else None
        self.ent_coef_value = init
        self._fixed_alpha: torch.Tensor | None = None  # ent_coef_value as a tensor on the device
        self.net_kwargs = dict(net_arch=list(hp.net_arch), activation=hp.activation)
        self.actor: SquashedGaussianActor | None = None
        self.critic: TwinQ | None = None
        self.critic_target: TwinQ | None = None
        self.buffer: ReplayBuffer | None = None
        self.action_low: np.ndarray | None = None
        self.action_high: np.ndarray | None = None
        self.n_updates = 0  # gradient steps so far: the clock of target updates

    @property
    def action_dim(self) -> int:
        return self.actor.action_dim

    def check_env(self) -> None:
        low, _ = check_sac_env(self.env_cfg)
        parse_target_entropy(self.hp.target_entropy, len(low))
        super().check_env()

    def build_networks(self) -> None:
        if self.actor is not None:
            return
        self.action_low, self.action_high = check_sac_env(self.env_cfg)
        obs_space, action_space = self.spaces()
        obs_dim, action_dim = int(obs_space.shape[0]), int(action_space.shape[0])
        self.target_entropy = parse_target_entropy(self.hp.target_entropy, action_dim)
        self.actor = SquashedGaussianActor(obs_dim, action_dim, **self.net_kwargs)
        self.critic = TwinQ(obs_dim, action_dim, self.net_kwargs["net_arch"], self.net_kwargs["activation"])
        self.critic_target = TwinQ(obs_dim, action_dim, self.net_kwargs["net_arch"], self.net_kwargs["activation"])
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """actor, critics and (when learnt) temperature, each its own optimizer at agent.learning_rate (SB3's)."""
        opts = [self.optimizer_factory(self.actor.parameters(), lr=self.hp.learning_rate),
                self.optimizer_factory(self.critic.parameters(), lr=self.hp.learning_rate)]
        if self.log_ent_coef is not None:
            opts.append(self.optimizer_factory([self.log_ent_coef], lr=self.hp.learning_rate))
        return opts

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.buffer is None:
            obs_space, action_space = self.spaces()
            # float32 observations whatever the env's dtype (MuJoCo's are float64): what the networks take
            self.buffer = ReplayBuffer(self.hp.buffer_size, self.env_cfg.num_envs, obs_space.shape, np.float32,
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
        self.collect()
        metrics: dict[str, Any] = {}
        if self.env_steps > self.hp.learning_starts:  # gradient steps, once warm
            metrics = self.gradient_updates()
        self.end_iteration(metrics)

    def collect(self) -> None:
        """train_freq vector steps into the replay buffer (SB3: uniform actions before learning_starts)."""
        n_envs = self.env_cfg.num_envs
        for _ in range(self.hp.train_freq):
            obs = self.next_obs
            if self.env_steps < self.hp.learning_starts:
                actions = self.rng.uniform(-1.0, 1.0, (n_envs, self.action_dim)).astype(np.float32)
            else:
                actions = self.act(obs, deterministic=False)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(self.unscale(actions))
            done = terminated | truncated
            self.buffer.add(obs, final_observations(next_obs, infos, done), actions, rewards, terminated, truncated)
            if done.any():
                self.record_episodes(infos)
            self.next_obs = next_obs
            self.env_steps += n_envs * self.world_size

    def gradient_updates(self) -> dict[str, float]:
        """The iteration's updates (gradient_steps of them; -1: as many as env steps collected); their metrics."""
        opts = self.optimizers()
        lr = self.set_lr(*opts)
        n_updates = self.hp.gradient_steps if self.hp.gradient_steps > 0 else self.steps_per_iteration
        totals = torch.zeros(len(STATS), device=self.device)
        for b in self.sample_batches(n_updates):
            totals += self.update(b, opts)
        metrics = {f"train/{k}": v / n_updates for k, v in zip(STATS, totals.tolist(), strict=True)}
        if self.log_ent_coef is None:
            del metrics["train/ent_coef_loss"]
        metrics["train/learning_rate"] = lr
        return metrics

    def sample_batches(self, n: int) -> list[dict[str, torch.Tensor]]:
        """The iteration's `n` replay batches, drawn at once (the same random numbers, in the same order, as `n`
        draws of one batch) and converted to tensors once."""
        batch_size = self.hp.batch_size
        sample = self.buffer.sample(n * batch_size, self.rng, self.hp.gamma)
        t = {k: torch.as_tensor(sample[k], device=self.device)
             for k in ("obs", "actions", "returns", "discounts", "next_obs")}
        if n == 1:
            return [t]
        return [{k: v[i * batch_size:(i + 1) * batch_size] for k, v in t.items()} for i in range(n)]

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
        if self.n_updates % self.hp.target_update_interval == 0:
            polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.hp.tau)
        return torch.stack([a_loss.detach(), c_loss.detach(), alpha.reshape(()), ent_loss.detach()])

    def ent_coef(self) -> float:
        """The current temperature alpha."""
        return float(self.log_ent_coef.detach().exp()) if self.log_ent_coef is not None else self.ent_coef_value
