"""stable_baselines3.DQN under the keys of `agent=dqn` (conf/agent/sb3_dqn.yaml extends dqn.yaml)."""

from __future__ import annotations

from typing import Any

from stable_baselines3 import DQN

from agents.common.envs import EnvConfig
from agents.common.hyperparameters import defaults, keyword_init
from agents.common.module import OptimizerFactory
from agents.dqn.config import DQNConfig
from agents.sb3.base import SB3Agent, linear, optimizer_kwargs
from lab.checks import activation_class

# The extensions SB3's DQN lacks. per_alpha and per_beta only act with prioritized replay: a changed value would
# be silently ignored, so it is refused like the options themselves.
UNSUPPORTED = ("double_q", "dueling", "prioritized", "loss", "per_alpha", "per_beta")


class SB3DQN(SB3Agent):
    """Every key of agent=dqn (DQNConfig), translated to SB3's name; the extensions SB3's DQN lacks (double_q,
    dueling, prioritized replay and so per_alpha / per_beta, the MSE loss) must stay at their defaults."""

    algorithm = DQN
    __init__ = keyword_init(DQNConfig, "env", "optimizer")
    hp: DQNConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: DQNConfig) -> None:
        plain = defaults(DQNConfig)
        for key in UNSUPPORTED:
            if getattr(hp, key) != plain[key]:
                raise ValueError(f"agent.{key}={getattr(hp, key)!r}: Stable-Baselines3's DQN has no such option; set "
                                 f"agent.{key}={plain[key]!r} for agent=sb3_dqn (our agent=dqn has it).")
        super().initialize(env, hp, hp.gamma, hp.encoder)
        policy_kwargs: dict[str, Any] = {"activation_fn": activation_class("agent.activation", hp.activation),
                                         **optimizer_kwargs(optimizer)}
        self.mlp_policy_kwargs = {"net_arch": list(hp.net_arch)}  # not for SB3's CnnPolicy (no MLP after its CNN)
        self.kwargs = dict(learning_rate=linear(hp.learning_rate, hp.anneal_lr), buffer_size=hp.buffer_size,
                           learning_starts=hp.learning_starts, batch_size=hp.batch_size, tau=hp.tau, gamma=hp.gamma,
                           train_freq=hp.train_freq, gradient_steps=hp.gradient_steps, n_steps=hp.n_step,
                           target_update_interval=hp.target_update_interval,
                           exploration_fraction=hp.exploration_fraction,
                           exploration_initial_eps=hp.exploration_initial_eps,
                           exploration_final_eps=hp.exploration_final_eps, max_grad_norm=hp.max_grad_norm,
                           policy_kwargs=policy_kwargs)
