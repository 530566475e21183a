"""The runner of the lab's own agents (agent=ppo | dqn): env + agent -> Lightning fit, one epoch per
evaluation period -> the final evaluation of the best checkpoint (with its video)."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import Trainer
from omegaconf import DictConfig

from agents.common.envs import EnvConfig
from agents.common.evaluate import evaluation_lines
from lab.contracts import RunContext, Runner, scalars
from lab.errors import ConfigError
from lab.instantiate import instantiate

log = logging.getLogger("lab")


def build_env_and_agent(cfg: DictConfig) -> tuple[EnvConfig, Any]:
    """`env`, then `agent` (given the env node), checked to suit each other: what every RL runner builds."""
    env = instantiate(cfg.env, "env")  # checked here, so its errors name `env`
    # the node, not the object: Hydra would flatten a dataclass instance into a dict
    agent = instantiate(cfg.agent, "agent", env=cfg.env)
    try:
        agent.check_env()
    except ValueError as e:
        raise ConfigError(f"The agent `{cfg.agent._target_}` does not suit env.id={env.id!r}: {e}") from None
    if agent.video and not env.renders():
        log.warning("agent.video=true, but env.id=%r cannot render (its constructor takes no render_mode): no "
                    "evaluation videos; set agent.video=false to silence this", env.id)
        agent.video = False
    return env, agent


class AgentRunner(Runner):
    """Builds `env` and `agent` (which gets the env node), checks they suit each other, sets the run's
    length from agent.total_timesteps, and evaluates the best (or given) checkpoint at the end."""

    length_keys = ("agent.total_timesteps",)

    def build(self, cfg: DictConfig) -> None:
        if cfg.trainer.get("max_epochs") is not None:
            raise ConfigError(f"trainer.max_epochs={cfg.trainer.max_epochs!r} is not used by RL runs: their length "
                              "is agent.total_timesteps, one epoch per agent.eval_freq env steps. Set "
                              "agent.total_timesteps instead (trainer.max_epochs stays null).")
        self.env, self.agent = build_env_and_agent(cfg)

    def check_checkpoint_contents(self, ckpt: dict[str, Any]) -> None:
        if "agent_state" not in ckpt:
            raise ValueError("it has no agent state: it was not written by one of the lab's agents")

    def configure_trainer(self, trainer: Trainer) -> None:
        # DDP: every process steps its own envs (seeded by rank) and gradients are averaged; the budget
        # agent.total_timesteps and eval_freq count env steps over all processes.
        self.agent.world_size = trainer.world_size
        trainer.fit_loop.max_epochs = self.agent.num_epochs

    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        run.trainer.fit(self.agent, ckpt_path=ckpt_path)
        return scalars(run.trainer.callback_metrics)

    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        if ckpt_path:
            try:
                self.agent.load_policy(ckpt_path)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"ckpt_path={ckpt_path!r} does not fit this agent and env: "
                                  f"{str(e).splitlines()[0]} Evaluate with the experiment and overrides it was "
                                  "trained with.") from None
        if not run.trainer.is_global_zero:  # the closing evaluation runs once, on rank 0
            return {}
        return self.agent.final_evaluation(self.agent.eval_episodes, run.layout.videos, run.loggers)

    def summary(self, metrics: dict[str, float]) -> list[str]:
        return evaluation_lines(self.agent.eval_episodes, metrics)
