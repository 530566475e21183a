"""Each conf/agent/*.yaml against its agent's hyperparameter dataclass (agents.common.hyperparameters): the same
keys, the same defaults, and constructors whose keywords are the dataclass's fields."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from agents.common.hyperparameters import AgentConfig, defaults, keyword_init
from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig
from agents.sac import SAC, SACConfig
from agents.sb3 import SB3DQN, SB3PPO, SB3SAC, SB3Algorithm
from agents.sb3.any import SB3AlgorithmConfig
from lab.paths import CONFIG_DIR

CONFIGS = {PPO: PPOConfig, SB3PPO: PPOConfig, DQN: DQNConfig, SB3DQN: DQNConfig, SAC: SACConfig, SB3SAC: SACConfig,
           SB3Algorithm: SB3AlgorithmConfig}
AGENTS = sorted(p.stem for p in (CONFIG_DIR / "agent").glob("*.yaml"))
# Constructor arguments that are no hyperparameters: the env node (given by the runner), the `_partial_` optimizer.
NOT_HYPERPARAMETERS = {"env", "optimizer"}
# Keys whose YAML value is the lab's preset rather than the dataclass's default, and why.
PRESETS = {
    "seed": "the run's seed, ${seed}",
    "torch_threads": "agent=ppo|dqn|sac train on one thread (fastest for small MLPs); the default is torch's",
    "hyperparams": "agent=sb3 lists the algorithm's common arguments with null values (null: SB3's default)",
    "policy_kwargs": "the same for the policy's arguments",
    "action_noise": "type null (no noise), and the std a chosen noise takes",
}


def agent_node(name: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["family=rl", f"agent={name}"])
    return OmegaConf.to_container(cfg.agent, resolve=False)


def test_every_agent_yaml_is_covered():
    targets = {agent_node(name)["_target_"] for name in AGENTS}
    assert {get_class(t) for t in targets} == set(CONFIGS)


@pytest.mark.parametrize("name", AGENTS)
def test_yaml_keys_and_defaults_are_the_dataclass(name):
    node = agent_node(name)
    cls = get_class(node.pop("_target_"))
    config = CONFIGS[cls]
    fields = defaults(config)
    keys = set(node) - NOT_HYPERPARAMETERS
    assert keys - set(fields) == set(), f"conf/agent/{name}.yaml keys that {config.__name__} lacks"
    assert set(fields) - keys == set(), f"{config.__name__} fields that conf/agent/{name}.yaml does not list"
    for key in sorted(keys - set(PRESETS)):
        value = node[key]
        default = list(fields[key]) if isinstance(fields[key], tuple) else fields[key]
        assert value == default, f"conf/agent/{name}.yaml: {key}: {value!r}, but {config.__name__}.{key} = {default!r}"


@pytest.mark.parametrize("cls", list(CONFIGS), ids=lambda c: c.__name__)
def test_constructor_keywords_are_the_dataclass_fields(cls):
    config = CONFIGS[cls]
    params = inspect.signature(cls).parameters
    kinds = {p.kind for name, p in params.items() if name not in NOT_HYPERPARAMETERS}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}  # no **kwargs catch-all
    assert {k: p.default for k, p in params.items() if k not in NOT_HYPERPARAMETERS} == defaults(config)
    assert issubclass(config, AgentConfig) and dataclasses.is_dataclass(config)


def test_a_key_the_agent_does_not_take_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_epochs'"):
        PPO(None, None, n_epochs=5)


def test_the_module_keeps_its_hyperparameters_in_hp():
    import functools

    import torch

    from agents.common.envs import EnvConfig

    agent = PPO(EnvConfig("CartPole-v1", num_envs=2), functools.partial(torch.optim.Adam), num_steps=8, batch_size=8)
    assert agent.hp == PPOConfig(num_steps=8, batch_size=8)
    assert dict(agent.hparams) == dataclasses.asdict(agent.hp)  # the checkpoint's hyper_parameters
    assert agent.total_timesteps == PPOConfig.total_timesteps and agent.video


def test_fields_need_immutable_defaults():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Bad(AgentConfig):
        net_arch: list = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="Bad.net_arch needs an immutable default"):
        keyword_init(Bad, "env")
