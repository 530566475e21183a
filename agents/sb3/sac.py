"""stable_baselines3.SAC under the keys of `agent=sac` (conf/agent/sb3_sac.yaml extends sac.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.common.envs import EnvConfig
from agents.sac.module import check_sac_keys, parse_ent_coef
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class


class SB3SAC(SB3Agent):
    """Every key of agent=sac, under the same name in SB3 (net_arch and activation as policy_kwargs; the
    `_partial_` optimizer as the actor's and critics' optimizer_class; SB3's temperature optimizer is its own
    Adam at the same learning rate). `encoder` chooses SB3's policy as for the other baselines (auto: CnnPolicy
    for images, MultiInputPolicy for Dict observations, MlpPolicy otherwise), where agent=sac takes vectors."""

    algorithm = SAC

    def __init__(self, env: EnvConfig, optimizer: Callable[..., torch.optim.Optimizer], total_timesteps: int = 100_000,
                 seed: int = 0, learning_rate: float = 3e-4, anneal_lr: bool = False, buffer_size: int = 1_000_000,
                 learning_starts: int = 100, batch_size: int = 256, tau: float = 0.005, gamma: float = 0.99,
                 train_freq: int = 1, gradient_steps: int = 1, ent_coef: str | float = "auto",
                 target_entropy: str | float = "auto", target_update_interval: int = 1, encoder: str = "auto",
                 net_arch: tuple[int, ...] = (256, 256), activation: str = "relu", save_replay_buffer: bool = False,
                 eval_freq: int = 5000, eval_episodes: int = 10, eval_deterministic: bool = True,
                 log_interval: int = 1000, video: bool = True, torch_threads: int | None = None) -> None:
        super().__init__(env, total_timesteps, seed, gamma, encoder, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        check_sac_keys(learning_rate, buffer_size, learning_starts, batch_size, tau, train_freq, gradient_steps,
                       target_update_interval, ent_coef, target_entropy)
        auto, value = parse_ent_coef(ent_coef)
        self.save_replay_buffer = save_replay_buffer
        policy_kwargs: dict[str, Any] = {"net_arch": list(net_arch),
                                         "activation_fn": activation_class("agent.activation", activation),
                                         **optimizer_kwargs(optimizer)}
        self.kwargs = dict(learning_rate=linear(learning_rate, anneal_lr), buffer_size=buffer_size,
                           learning_starts=learning_starts, batch_size=batch_size, tau=tau, gamma=gamma,
                           train_freq=train_freq, gradient_steps=gradient_steps,
                           ent_coef=ent_coef if auto else value, target_update_interval=target_update_interval,
                           target_entropy=target_entropy if target_entropy == "auto" else float(target_entropy),
                           policy_kwargs=policy_kwargs)

    def check_env(self) -> None:
        super().check_env()  # SB3's observation spaces and policies, SAC's action spaces
        _, action_space = self.env_cfg.spaces()
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"SAC needs a Box action space; env.id={self.env_cfg.id!r} has {action_space} "
                             "(use agent=sb3_dqn or agent=sb3_ppo).")

    def after_learn(self, model: BaseAlgorithm, ckpt_dir: Path) -> None:
        if self.save_replay_buffer:  # beside last.zip; SB3's SAC.load_replay_buffer reads it back
            model.save_replay_buffer(ckpt_dir / "last_replay_buffer.pkl")
