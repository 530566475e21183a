"""stable_baselines3.DQN under the keys of `agent=dqn` (conf/agent/sb3_dqn.yaml extends dqn.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.common.envs import EnvConfig
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class


class SB3DQN(SB3Agent):
    """Every key of agent=dqn, translated to SB3's name; the extensions SB3's DQN lacks (double_q, dueling,
    prioritized replay and so per_alpha / per_beta, the MSE loss) must stay at their defaults."""

    algorithm = DQN

    def __init__(self, env: EnvConfig, optimizer: Callable[..., torch.optim.Optimizer], total_timesteps: int = 100_000,
                 seed: int = 0, learning_rate: float = 1e-4, anneal_lr: bool = False, buffer_size: int = 1_000_000,
                 learning_starts: int = 100, batch_size: int = 32, gamma: float = 0.99, tau: float = 1.0,
                 target_update_interval: int = 10_000, train_freq: int = 4, gradient_steps: int = 1,
                 exploration_fraction: float = 0.1, exploration_initial_eps: float = 1.0,
                 exploration_final_eps: float = 0.05, max_grad_norm: float = 10.0, double_q: bool = False,
                 dueling: bool = False, n_step: int = 1, prioritized: bool = False, per_alpha: float = 0.6,
                 per_beta: float = 0.4, loss: str = "huber", encoder: str = "auto", net_arch: tuple[int, ...] = (64, 64),
                 activation: str = "relu", save_replay_buffer: bool = False, eval_freq: int = 5000,
                 eval_episodes: int = 10, eval_deterministic: bool = True, log_interval: int = 1000,
                 video: bool = True, torch_threads: int | None = None) -> None:
        super().__init__(env, total_timesteps, seed, gamma, encoder, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        # per_alpha and per_beta only act with prioritized replay, which SB3's DQN lacks: a changed value would be
        # silently ignored, so it is refused like the options themselves.
        for key, value, plain in (("double_q", double_q, False), ("dueling", dueling, False),
                                  ("prioritized", prioritized, False), ("loss", loss, "huber"),
                                  ("per_alpha", per_alpha, 0.6), ("per_beta", per_beta, 0.4)):
            if value != plain:
                raise ValueError(f"agent.{key}={value!r}: Stable-Baselines3's DQN has no such option; set "
                                 f"agent.{key}={plain!r} for agent=sb3_dqn (our agent=dqn has it).")
        self.save_replay_buffer = save_replay_buffer
        policy_kwargs: dict[str, Any] = {"activation_fn": activation_class("agent.activation", activation),
                                         **optimizer_kwargs(optimizer)}
        self.mlp_policy_kwargs = {"net_arch": list(net_arch)}  # not for SB3's CnnPolicy (no MLP after its CNN)
        self.kwargs = dict(learning_rate=linear(learning_rate, anneal_lr), buffer_size=buffer_size,
                           learning_starts=learning_starts, batch_size=batch_size, tau=tau, gamma=gamma,
                           train_freq=train_freq, gradient_steps=gradient_steps, n_steps=n_step,
                           target_update_interval=target_update_interval, exploration_fraction=exploration_fraction,
                           exploration_initial_eps=exploration_initial_eps, exploration_final_eps=exploration_final_eps,
                           max_grad_norm=max_grad_norm, policy_kwargs=policy_kwargs)

    def after_learn(self, model: BaseAlgorithm, ckpt_dir: Path) -> None:
        if self.save_replay_buffer:  # beside last.zip; SB3's DQN.load_replay_buffer reads it back
            model.save_replay_buffer(ckpt_dir / "last_replay_buffer.pkl")
