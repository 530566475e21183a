"""stable_baselines3.PPO under the keys of `agent=ppo` (conf/agent/sb3_ppo.yaml extends ppo.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from stable_baselines3 import PPO

from agents.common.envs import EnvConfig
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class


class SB3PPO(SB3Agent):
    """Every key of agent=ppo, translated to SB3's name (num_steps -> n_steps, clip_coef -> clip_range, ...)."""

    algorithm = PPO

    def __init__(self, env: EnvConfig, optimizer: Callable[..., torch.optim.Optimizer], total_timesteps: int = 100_000,
                 seed: int = 0, learning_rate: float = 3e-4, anneal_lr: bool = False, num_steps: int = 2048,
                 batch_size: int = 64, update_epochs: int = 10, gamma: float = 0.99, gae_lambda: float = 0.95,
                 clip_coef: float = 0.2, anneal_clip: bool = False, clip_vloss: bool = False, norm_adv: bool = True,
                 ent_coef: float = 0.0, vf_coef: float = 0.5, max_grad_norm: float = 0.5,
                 target_kl: float | None = None, encoder: str = "auto", net_arch: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", ortho_init: bool = True, log_std_init: float = 0.0, eval_freq: int = 5000,
                 eval_episodes: int = 10, eval_deterministic: bool = True, log_interval: int = 2048,
                 video: bool = True, torch_threads: int | None = None, compile: bool = False) -> None:
        super().__init__(env, total_timesteps, seed, gamma, encoder, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        if compile:
            raise ValueError("agent.compile=true: Stable-Baselines3's PPO has no compiled update; it is an option of "
                             "agent=ppo only.")
        if batch_size > num_steps * env.num_envs:
            raise ValueError(f"agent.batch_size={batch_size} is larger than the rollout, agent.num_steps x "
                             f"env.num_envs = {num_steps * env.num_envs}.")
        clip = linear(clip_coef, anneal_clip)
        policy_kwargs: dict[str, Any] = {"ortho_init": ortho_init, "log_std_init": log_std_init,
                                         "activation_fn": activation_class("agent.activation", activation),
                                         **optimizer_kwargs(optimizer)}
        # the MLP towers of MlpPolicy and MultiInputPolicy; SB3's CnnPolicy has none after its CNN
        self.mlp_policy_kwargs = {"net_arch": dict(pi=list(net_arch), vf=list(net_arch))}
        self.kwargs = dict(learning_rate=linear(learning_rate, anneal_lr), n_steps=num_steps, batch_size=batch_size,
                           n_epochs=update_epochs, gamma=gamma, gae_lambda=gae_lambda, clip_range=clip,
                           clip_range_vf=clip if clip_vloss else None, normalize_advantage=norm_adv,
                           ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, target_kl=target_kl,
                           policy_kwargs=policy_kwargs)
