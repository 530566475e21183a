"""stable_baselines3.PPO under the keys of `agent=ppo` (conf/agent/sb3_ppo.yaml extends ppo.yaml)."""

from __future__ import annotations

from typing import Any

from stable_baselines3 import PPO

from agents.common.envs import EnvConfig
from agents.common.hyperparameters import keyword_init
from agents.common.module import OptimizerFactory
from agents.ppo.config import PPOConfig
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class


class SB3PPO(SB3Agent):
    """Every key of agent=ppo (PPOConfig), translated to SB3's name (num_steps -> n_steps, clip_coef -> clip_range,
    ...)."""

    algorithm = PPO
    __init__ = keyword_init(PPOConfig, "env", "optimizer")
    hp: PPOConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: PPOConfig) -> None:
        if hp.compile:
            raise ValueError("agent.compile=true: Stable-Baselines3's PPO has no compiled update; it is an option of "
                             "agent=ppo only.")
        hp.check_rollout(env.num_envs)
        super().initialize(env, hp, hp.gamma, hp.encoder)
        clip = linear(hp.clip_coef, hp.anneal_clip)
        policy_kwargs: dict[str, Any] = {"ortho_init": hp.ortho_init, "log_std_init": hp.log_std_init,
                                         "activation_fn": activation_class("agent.activation", hp.activation),
                                         **optimizer_kwargs(optimizer)}
        # the MLP towers of MlpPolicy and MultiInputPolicy; SB3's CnnPolicy has none after its CNN
        self.mlp_policy_kwargs = {"net_arch": dict(pi=list(hp.net_arch), vf=list(hp.net_arch))}
        self.kwargs = dict(learning_rate=linear(hp.learning_rate, hp.anneal_lr), n_steps=hp.num_steps,
                           batch_size=hp.batch_size, n_epochs=hp.update_epochs, gamma=hp.gamma,
                           gae_lambda=hp.gae_lambda, clip_range=clip, clip_range_vf=clip if hp.clip_vloss else None,
                           normalize_advantage=hp.norm_adv, ent_coef=hp.ent_coef, vf_coef=hp.vf_coef,
                           max_grad_norm=hp.max_grad_norm, target_kl=hp.target_kl, policy_kwargs=policy_kwargs)
