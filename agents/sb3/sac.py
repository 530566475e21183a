"""stable_baselines3.SAC under the keys of `agent=sac` (conf/agent/sb3_sac.yaml extends sac.yaml)."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces
from stable_baselines3 import SAC

from agents.common.envs import EnvConfig
from agents.common.hyperparameters import keyword_init
from agents.common.module import OptimizerFactory
from agents.sac.config import SACConfig, parse_ent_coef
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class


class SB3SAC(SB3Agent):
    """Every key of agent=sac (SACConfig), under the same name in SB3 (net_arch and activation as policy_kwargs;
    the `_partial_` optimizer as the actor's and critics' optimizer_class; SB3's temperature optimizer is its own
    Adam at the same learning rate). `encoder` chooses SB3's policy as for the other baselines (auto: CnnPolicy
    for images, MultiInputPolicy for Dict observations, MlpPolicy otherwise), where agent=sac takes vectors."""

    algorithm = SAC
    __init__ = keyword_init(SACConfig, "env", "optimizer")
    hp: SACConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: SACConfig) -> None:
        super().initialize(env, hp, hp.gamma, hp.encoder)
        auto, value = parse_ent_coef(hp.ent_coef)
        policy_kwargs: dict[str, Any] = {"net_arch": list(hp.net_arch),
                                         "activation_fn": activation_class("agent.activation", hp.activation),
                                         **optimizer_kwargs(optimizer)}
        self.kwargs = dict(learning_rate=linear(hp.learning_rate, hp.anneal_lr), buffer_size=hp.buffer_size,
                           learning_starts=hp.learning_starts, batch_size=hp.batch_size, tau=hp.tau, gamma=hp.gamma,
                           train_freq=hp.train_freq, gradient_steps=hp.gradient_steps,
                           ent_coef=hp.ent_coef if auto else value, target_update_interval=hp.target_update_interval,
                           target_entropy=hp.target_entropy if hp.target_entropy == "auto" else float(hp.target_entropy),
                           policy_kwargs=policy_kwargs)

    def check_env(self) -> None:
        super().check_env()  # SB3's observation spaces and policies, SAC's action spaces
        _, action_space = self.env_cfg.spaces()
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"SAC needs a Box action space; env.id={self.env_cfg.id!r} has {action_space} "
                             "(use agent=sb3_dqn or agent=sb3_ppo).")
