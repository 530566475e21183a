"""Proximal Policy Optimization (Schulman et al., 2017) as a LightningModule.

One training_step = one iteration, read top to bottom: collect `num_steps` x `num_envs` transitions,
compute GAE advantages, then `update_epochs` passes of clipped-objective minibatch updates. Conventions
follow Stable-Baselines3's PPO (the lab's reference): linear schedules decay with the fraction of
`total_timesteps` left, the value loss is a plain MSE (optionally clipped around the old values), and
`target_kl` stops the update before a minibatch whose approximate KL exceeds 1.5 x target_kl.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.common.buffers import RolloutBuffer
from agents.common.envs import EnvConfig, final_observations
from agents.common.hyperparameters import keyword_init
from agents.common.module import OptimizerFactory, RLModule
from agents.common.spaces import to_env_actions
from agents.ppo.config import PPOConfig
from agents.ppo.nets import ActorCritic


class PPO(RLModule):
    """PPO with GAE, clipping (and optional value clipping), advantage normalization, entropy bonus,
    target-KL early stop, linear annealing of learning rate and clip range; MLP or Nature-CNN policies."""

    __init__ = keyword_init(PPOConfig, "env", "optimizer")
    hp: PPOConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: PPOConfig) -> None:
        hp.check_rollout(env.num_envs)
        super().initialize(env, optimizer, hp)
        self.max_grad_norm = hp.max_grad_norm
        self.net_kwargs = dict(net_arch=list(hp.net_arch), activation=hp.activation, ortho_init=hp.ortho_init,
                               log_std_init=hp.log_std_init, encoder=hp.encoder)
        self.policy: ActorCritic | None = None
        self.buffer: RolloutBuffer | None = None
        self.generator = torch.Generator().manual_seed(hp.seed)  # minibatch shuffling
        # torch.compile of the minibatch loss (forward and, through AOTAutograd, backward): fused kernels,
        # about 2.7x faster per minibatch on this CPU, for ~30 s of compilation once per process.
        self.loss_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] = ppo_loss

    @property
    def steps_per_iteration(self) -> int:
        return self.hp.num_steps * self.env_cfg.num_envs

    def check_env(self) -> None:
        super().check_env()
        _, action_space = self.spaces()
        if not isinstance(action_space, spaces.Box) and self.hp.log_std_init != 0.0:  # it would be ignored
            raise ValueError(f"agent.log_std_init={self.hp.log_std_init!r} only acts on Gaussian policies (Box "
                             f"actions); env.id={self.env_cfg.id!r} has {action_space}.")
        ActorCritic(self.observation_space(), action_space, **self.net_kwargs)  # spaces and encoder checks

    def build_networks(self) -> None:
        if self.policy is None:
            _, action_space = self.spaces()
            self.policy = ActorCritic(self.observation_space(), action_space, **self.net_kwargs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.policy.parameters(), lr=self.hp.learning_rate)

    def on_fit_start(self) -> None:
        if self.hp.compile and self.loss_fn is ppo_loss:
            self.loss_fn = torch.compile(ppo_loss)
        # Not in `setup`: the Trainer moves the module to its device after setup, and the buffer lives there.
        if self.buffer is None or self.buffer.obs.device != self.device:
            obs_space, _ = self.spaces()
            kind = self.policy.kind
            self.buffer = RolloutBuffer(
                self.hp.num_steps, self.env_cfg.num_envs, obs_space.shape, self.policy.action_shape,
                obs_dtype=torch.uint8 if obs_space.dtype == np.uint8 else torch.float32,
                action_dtype=torch.long if kind in ("discrete", "multi_discrete") else torch.float32,
                device=self.device)

    @torch.inference_mode()
    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        action, _, _ = self.policy.act(torch.as_tensor(obs, device=self.device), deterministic)
        return to_env_actions(self.action_space, action.cpu().numpy())

    def training_step(self, batch: int, batch_idx: int) -> None:
        opt = self.optimizers()
        next_value = self.collect_rollout()
        self.buffer.compute_returns_and_advantages(next_value, self.hp.gamma, self.hp.gae_lambda)
        # Schedules: linear in the fraction of the budget left (SB3's progress_remaining).
        lr = self.set_lr(opt)
        clip = self.hp.clip_coef * (self.progress_remaining() if self.hp.anneal_clip else 1.0)
        metrics, stop = self.update(opt, clip)
        metrics.update({"train/learning_rate": lr, "train/clip_range": clip, "train/early_stop": float(stop)})
        if self.policy.log_std is not None:
            metrics["train/std"] = self.policy.log_std.exp().mean().item()
        self.end_iteration(metrics)

    @torch.inference_mode()
    def collect_rollout(self) -> torch.Tensor:
        """num_steps vector steps with the current policy into the preallocated buffer; returns the value of the
        observation after them (GAE's bootstrap)."""
        buf, envs = self.buffer, self.envs
        buf.final_values.zero_()
        for t in range(self.hp.num_steps):
            obs = torch.as_tensor(self.next_obs, device=self.device)
            action, logprob, value = self.policy.act(obs)
            action_np = to_env_actions(self.action_space, action.cpu().numpy())
            next_obs, reward, terminated, truncated, infos = envs.step(action_np)
            buf.add(t, obs, action, logprob, value, reward, terminated, truncated)
            cut = truncated & ~terminated
            if cut.any():  # time limit: bootstrap from the observation before the autoreset
                final = final_observations(next_obs, infos, cut)[cut]
                buf.final_values[t, torch.as_tensor(cut)] = self.policy.value(torch.as_tensor(final, device=self.device))
            if "final_info" in infos:
                self.record_episodes(infos)
            self.next_obs = next_obs
        self.env_steps += self.global_steps_per_iteration
        return self.policy.value(torch.as_tensor(self.next_obs, device=self.device))

    def update(self, opt: Any, clip: float) -> tuple[dict[str, Any], bool]:
        """update_epochs passes over shuffled minibatches; the update's metrics, and whether target_kl stopped it.
        Statistics stay tensors (summed, read once at the end): reading each minibatch's would cost a host sync
        per minibatch on a GPU."""
        hp, buf = self.hp, self.buffer
        clip_t = torch.tensor(clip, device=self.device)  # a tensor: a compiled loss is not rebuilt as clip decays
        totals = torch.zeros(len(STATS), device=self.device)
        n_minibatches, stop = 0, False
        for _ in range(hp.update_epochs):
            for mb in buf.minibatches(hp.batch_size, self.generator):
                loss, stats = self.loss_fn(self.policy, mb, clip_t, hp.clip_vloss, hp.norm_adv, hp.ent_coef, hp.vf_coef)
                if hp.target_kl is not None and stats[STATS.index("approx_kl")].item() > 1.5 * hp.target_kl:
                    stop = True  # this minibatch's policy already moved too far: no step on it
                    break
                self.optimizer_step_on(loss, opt)  # clips the gradients first (on_before_optimizer_step)
                totals += stats
                n_minibatches += 1
            if stop:
                break
        values, returns = buf.values.flatten(), buf.returns.flatten()
        var_returns, var_residual = torch.stack([returns.var(), (returns - values).var()]).tolist()
        metrics: dict[str, Any] = {}
        if n_minibatches:
            metrics.update({f"train/{k}": v / n_minibatches for k, v in zip(STATS, totals.tolist(), strict=True)})
        metrics["train/explained_variance"] = float("nan") if var_returns == 0 else 1 - var_residual / var_returns
        return metrics, stop

STATS = ("pg_loss", "v_loss", "entropy", "approx_kl", "clip_fraction")


def ppo_loss(policy: ActorCritic, mb: dict[str, torch.Tensor], clip: torch.Tensor | float, clip_vloss: bool,
             norm_adv: bool, ent_coef: float, vf_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's loss on one minibatch, and its statistics (detached, in the order of STATS)."""
    logprob, entropy, value = policy.evaluate_actions(mb["obs"], mb["actions"])
    log_ratio = logprob - mb["logprobs"]
    ratio = log_ratio.exp()
    adv = mb["advantages"]
    if norm_adv and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    if clip_vloss:
        v_clipped = mb["values"] + (value - mb["values"]).clamp(-clip, clip)
        v_loss = torch.max((value - mb["returns"]) ** 2, (v_clipped - mb["returns"]) ** 2).mean()
    else:
        v_loss = ((value - mb["returns"]) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = pg_loss - ent_coef * entropy_mean + vf_coef * v_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's k3 estimator
        clip_fraction = ((ratio - 1).abs() > clip).float().mean()
        stats = torch.stack([pg_loss, v_loss, entropy_mean, approx_kl, clip_fraction])
    return loss, stats
