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
from agents.common.module import RLModule
from agents.common.spaces import to_env_actions
from agents.ppo.nets import ActorCritic
from lab.checks import check_ints


class PPO(RLModule):
    """PPO with GAE, clipping (and optional value clipping), advantage normalization, entropy bonus,
    target-KL early stop, linear annealing of learning rate and clip range; MLP or Nature-CNN policies."""

    def __init__(
        self,
        env: EnvConfig,
        optimizer: Callable[..., torch.optim.Optimizer],
        total_timesteps: int = 100_000,
        seed: int = 0,
        learning_rate: float = 3e-4,
        anneal_lr: bool = False,
        num_steps: int = 2048,
        batch_size: int = 64,
        update_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_coef: float = 0.2,
        anneal_clip: bool = False,
        clip_vloss: bool = False,
        norm_adv: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        encoder: str = "auto",
        net_arch: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        eval_freq: int = 5000,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        log_interval: int = 2048,
        video: bool = True,
        torch_threads: int | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(env, total_timesteps, seed, gamma, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        check_ints("agent.", num_steps=(num_steps, 1), batch_size=(batch_size, 1), update_epochs=(update_epochs, 1))
        rollout = num_steps * env.num_envs
        if batch_size > rollout:
            raise ValueError(f"agent.batch_size={batch_size} is larger than the rollout, agent.num_steps x "
                             f"env.num_envs = {num_steps} x {env.num_envs} = {rollout}; choose batch_size <= {rollout}.")
        if learning_rate <= 0 or clip_coef <= 0:
            raise ValueError(f"agent.learning_rate={learning_rate!r} and agent.clip_coef={clip_coef!r} must be > 0.")
        if not 0.0 <= gae_lambda <= 1.0:
            raise ValueError(f"agent.gae_lambda={gae_lambda!r} is not valid: it must be in [0, 1].")
        if target_kl is not None and target_kl <= 0:
            raise ValueError(f"agent.target_kl={target_kl!r} is not valid: null (off) or a number > 0.")
        self.save_hyperparameters(ignore=["env", "optimizer"])
        self.optimizer_factory = optimizer
        self.learning_rate, self.anneal_lr = learning_rate, anneal_lr
        self.num_steps, self.batch_size, self.update_epochs = num_steps, batch_size, update_epochs
        self.gae_lambda, self.clip_coef, self.anneal_clip, self.clip_vloss = gae_lambda, clip_coef, anneal_clip, clip_vloss
        self.norm_adv, self.ent_coef, self.vf_coef = norm_adv, ent_coef, vf_coef
        self.max_grad_norm, self.target_kl = max_grad_norm, target_kl
        self.net_kwargs = dict(net_arch=list(net_arch), activation=activation, ortho_init=ortho_init,
                               log_std_init=log_std_init, encoder=encoder)
        self.policy: ActorCritic | None = None
        self.buffer: RolloutBuffer | None = None
        self.generator = torch.Generator().manual_seed(seed)  # minibatch shuffling
        # torch.compile of the minibatch loss (forward and, through AOTAutograd, backward): fused kernels,
        # about 2.7x faster per minibatch on this CPU, for ~30 s of compilation once per process.
        self.compile = compile
        self.loss_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] = ppo_loss

    @property
    def steps_per_iteration(self) -> int:
        return self.num_steps * self.env_cfg.num_envs

    def check_env(self) -> None:
        super().check_env()
        _, action_space = self.spaces()
        if not isinstance(action_space, spaces.Box) and self.hparams.log_std_init != 0.0:  # it would be ignored
            raise ValueError(f"agent.log_std_init={self.hparams.log_std_init!r} only acts on Gaussian policies (Box "
                             f"actions); env.id={self.env_cfg.id!r} has {action_space}.")
        ActorCritic(self.observation_space(), action_space, **self.net_kwargs)  # spaces and encoder checks

    def build_networks(self) -> None:
        if self.policy is None:
            _, action_space = self.spaces()
            self.policy = ActorCritic(self.observation_space(), action_space, **self.net_kwargs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.policy.parameters(), lr=self.learning_rate)

    def on_fit_start(self) -> None:
        if self.compile and self.loss_fn is ppo_loss:
            self.loss_fn = torch.compile(ppo_loss)
        # Not in `setup`: the Trainer moves the module to its device after setup, and the buffer lives there.
        if self.buffer is None or self.buffer.obs.device != self.device:
            obs_space, _ = self.spaces()
            kind = self.policy.kind
            action_shape = {"discrete": (), "multi_discrete": (len(getattr(self.policy, "nvec", ())),)}.get(
                kind, (self.policy.pi_head.out_features,))
            self.buffer = RolloutBuffer(
                self.num_steps, self.env_cfg.num_envs, obs_space.shape, action_shape,
                obs_dtype=torch.uint8 if obs_space.dtype == np.uint8 else torch.float32,
                action_dtype=torch.long if kind in ("discrete", "multi_discrete") else torch.float32,
                device=self.device)

    @torch.inference_mode()
    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        action, _, _ = self.policy.act(torch.as_tensor(obs, device=self.device), deterministic)
        return to_env_actions(self.action_space, action.cpu().numpy())

    def training_step(self, batch: int, batch_idx: int) -> None:
        opt = self.optimizers()
        buf, envs = self.buffer, self.envs

        # 1. Rollout: num_steps vector steps with the current policy, written into the preallocated buffer.
        buf.final_values.zero_()
        with torch.inference_mode():
            for t in range(self.num_steps):
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

            # 2. Advantages and value targets.
            next_value = self.policy.value(torch.as_tensor(self.next_obs, device=self.device))
        buf.compute_returns_and_advantages(next_value, self.gamma, self.gae_lambda)

        # 3. Schedules: linear in the fraction of the budget left (SB3's progress_remaining).
        progress = max(1.0 - self.env_steps / self.total_timesteps, 0.0)
        lr = self.learning_rate * (progress if self.anneal_lr else 1.0)
        clip = self.clip_coef * (progress if self.anneal_clip else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        clip_t = torch.tensor(clip, device=self.device)  # a tensor: a compiled loss is not rebuilt as clip decays

        # 4. Update epochs over shuffled minibatches. Statistics stay tensors (summed, read once at the end):
        # reading each minibatch's would cost a host sync per minibatch on a GPU.
        totals = torch.zeros(len(STATS), device=self.device)
        n_minibatches, stop = 0, False
        for _ in range(self.update_epochs):
            for mb in buf.minibatches(self.batch_size, self.generator):
                loss, stats = self.loss_fn(self.policy, mb, clip_t, self.clip_vloss, self.norm_adv, self.ent_coef,
                                           self.vf_coef)
                if self.target_kl is not None and stats[STATS.index("approx_kl")].item() > 1.5 * self.target_kl:
                    stop = True  # this minibatch's policy already moved too far: no step on it
                    break
                self.optimizer_step_on(loss, opt)  # clips the gradients first (RLModule.on_before_optimizer_step)
                totals += stats
                n_minibatches += 1
            if stop:
                break

        values, returns = buf.values.flatten(), buf.returns.flatten()
        var_returns, var_residual = torch.stack([returns.var(), (returns - values).var()]).tolist()
        metrics: dict[str, Any] = {}
        if n_minibatches:
            metrics.update({f"train/{k}": v / n_minibatches for k, v in zip(STATS, totals.tolist(), strict=True)})
        metrics.update({
            "train/explained_variance": float("nan") if var_returns == 0 else 1 - var_residual / var_returns,
            "train/learning_rate": lr, "train/clip_range": clip, "train/early_stop": float(stop),
        })
        if self.policy.log_std is not None:
            metrics["train/std"] = self.policy.log_std.exp().mean().item()
        self.end_iteration(metrics)


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
