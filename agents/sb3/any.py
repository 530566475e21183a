"""Any Stable-Baselines3 algorithm by name (`agent=sb3 agent.algo=A2C|PPO|DQN|SAC|TD3|DDPG`), with SB3's
own defaults and rl-baselines3-zoo style hyperparameters, under the lab's envs, evaluation, checkpoints,
loggers and sweeps (conf/agent/sb3.yaml).

`agent.hyperparams` is handed to the algorithm's constructor as it is (a null value: SB3's default), after
every key is checked against the constructor's signature, so a misspelt or foreign key (n_epochs for SAC)
is an error naming the algorithm's keys before anything is built. The arguments the lab sets itself (the
env, the policy, the seed, the device, ...) are refused there with the lab key that sets them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from hydra.utils import get_class
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import VecEnv

from agents.common.envs import EnvConfig
from agents.common.hyperparameters import AgentConfig, keyword_init
from agents.sb3.base import SB3Agent
from agents.sb3.spaces import check_observation_space, check_policy
from lab.checks import activation_class, check_choice, check_positive

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"A2C": A2C, "PPO": PPO, "DQN": DQN, "SAC": SAC, "TD3": TD3,
                                              "DDPG": DDPG}
POLICY_CHOICES = ("auto", "MlpPolicy", "CnnPolicy", "MultiInputPolicy")

# Constructor arguments the lab sets itself, and the key that sets them.
LAB_KEYS = {
    "policy": "agent.policy (auto, or MlpPolicy | CnnPolicy | MultiInputPolicy)",
    "env": "env=<name> or env.id=<id> (the lab builds the vector env, with env.num_envs sub-envs)",
    "seed": "seed=<n> (the run's seed, also agent.seed)",
    "device": "trainer.accelerator=cpu|gpu|auto",
    "verbose": "logger=... (the lab logs SB3's metrics itself, every agent.log_interval env steps)",
    "tensorboard_log": "logger=tensorboard",
    "_init_setup_model": "none: the lab builds the model when training starts",
    "policy_kwargs": "agent.policy_kwargs (e.g. agent.policy_kwargs.net_arch=[400,300])",
    "action_noise": "agent.action_noise (e.g. agent.action_noise.type=normal agent.action_noise.std=0.1)",
}
# Arguments that take rl-baselines3-zoo's linear schedules, "lin_<start>": start x progress remaining.
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
NOISES = ("normal", "ornstein_uhlenbeck")
# Policy constructor arguments SB3 fills in itself.
POLICY_SET_BY_SB3 = ("self", "observation_space", "action_space", "lr_schedule")


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """SB3's algorithm called `algo` (case-insensitive); ValueError listing the valid names."""
    cls = ALGORITHMS.get(str(algo).upper())
    if cls is None:
        raise ValueError(f"agent.algo={algo!r} is not a Stable-Baselines3 algorithm the lab runs; valid choices: "
                         f"{', '.join(ALGORITHMS)}.")
    return cls


def constructor_keys(cls: type) -> list[str]:
    """The keyword arguments of `cls.__init__`, in order (without self)."""
    return [k for k in inspect.signature(cls.__init__).parameters if k != "self"]


def _default(cls: type, key: str) -> Any:
    return inspect.signature(cls.__init__).parameters[key].default


def linear_schedule(key: str, value: Any) -> Any:
    """rl-baselines3-zoo's "lin_<start>" as SB3's schedule (start x progress remaining); other values as given."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            raise ValueError(f"agent.hyperparams.{key}={value!r} is not valid: lin_<number> (e.g. lin_3e-4) is a "
                             "linear decay from <number> to 0.") from None
        return lambda progress: start * progress
    return value


def check_hyperparams(cls: type[BaseAlgorithm], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """The non-null `hyperparams`, every key checked against the constructor of `cls` (null keys against
    those of every algorithm, so a misspelt one is caught even unset); ValueError naming the key."""
    name = cls.__name__
    valid = [k for k in constructor_keys(cls) if k not in LAB_KEYS]
    known = {k for algo in ALGORITHMS.values() for k in constructor_keys(algo)}
    out: dict[str, Any] = {}
    for key, value in hyperparams.items():
        if key in LAB_KEYS:
            raise ValueError(f"agent.hyperparams.{key}: the lab sets {name}'s `{key}` argument itself; use "
                             f"{LAB_KEYS[key]}.")
        if key not in valid and (value is not None or key not in known):
            raise ValueError(f"agent.hyperparams.{key}={value!r}: Stable-Baselines3's {name} takes no argument "
                             f"`{key}`; its arguments: {', '.join(valid)} (and the lab's agent.policy_kwargs, "
                             "agent.action_noise). A null value leaves the algorithm's default.")
        if value is None:
            continue
        if key in SCHEDULES:
            value = linear_schedule(key, value)
        elif key == "train_freq" and isinstance(value, (list, tuple)):  # zoo's [n, episode]: SB3 wants a tuple
            if len(value) != 2 or value[1] not in ("step", "episode"):
                raise ValueError(f"agent.hyperparams.train_freq={value!r} is not valid: an integer (env steps), or "
                                 "[n, step] / [n, episode].")
            value = tuple(value)
        out[key] = value
    return out


def policy_kwargs_for(cls: type[BaseAlgorithm], policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The non-null `policy_kwargs`, checked against the policy's constructor: activation_fn by name (relu,
    tanh, ...), *_class arguments by import path (torch.optim.AdamW)."""
    policy_cls = cls.policy_aliases["MlpPolicy"]  # CnnPolicy and MultiInputPolicy take the same arguments
    valid = [k for k in constructor_keys(policy_cls) if k not in POLICY_SET_BY_SB3]
    out: dict[str, Any] = {}
    for key, value in policy_kwargs.items():
        if value is None:
            continue
        if key not in valid:
            raise ValueError(f"agent.policy_kwargs.{key}={value!r}: {cls.__name__}'s policy "
                             f"({policy_cls.__name__}) takes no argument `{key}`; its arguments: {', '.join(valid)}.")
        if key == "activation_fn" and isinstance(value, str):
            value = activation_class("agent.policy_kwargs.activation_fn", value)
        elif key.endswith("_class") and isinstance(value, str):
            try:
                value = get_class(value)
            except Exception:
                raise ValueError(f"agent.policy_kwargs.{key}={value!r} cannot be imported; give a class's import "
                                 "path, e.g. torch.optim.AdamW.") from None
        out[key] = value
    return out


def check_action_noise(cls: type[BaseAlgorithm], noise: dict[str, Any] | None) -> dict[str, Any] | None:
    """agent.action_noise ({type: normal | ornstein_uhlenbeck | null, std, theta, dt}) checked; None for none."""
    if noise is None or noise.get("type") is None:
        return None
    noise = dict(noise)
    kind = noise.pop("type")
    check_choice("agent.action_noise.type", kind, NOISES)
    if "action_noise" not in constructor_keys(cls):
        raise ValueError(f"agent.action_noise.type={kind!r}: Stable-Baselines3's {cls.__name__} takes no action "
                         "noise (SAC, TD3 and DDPG do, which explore with it); set agent.action_noise.type=null.")
    allowed = ("std", "theta", "dt") if kind == "ornstein_uhlenbeck" else ("std",)
    extra = [k for k in noise if k not in allowed]
    if extra:
        raise ValueError(f"agent.action_noise.{extra[0]}={noise[extra[0]]!r}: {kind} noise takes "
                         f"{', '.join(allowed)} only.")
    for key, value in noise.items():
        check_positive(f"agent.action_noise.{key}", value)
    return {"type": kind, "std": 0.1, **noise}


def make_action_noise(noise: dict[str, Any], shape: tuple[int, ...]) -> ActionNoise:
    """zoo's noise_type / noise_std: the same std for every action dimension (SB3 acts in [-1, 1])."""
    mean, sigma = np.zeros(shape), noise["std"] * np.ones(shape)
    if noise["type"] == "normal":
        return NormalActionNoise(mean=mean, sigma=sigma)
    return OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma, theta=noise.get("theta", 0.15),
                                        dt=noise.get("dt", 1e-2))


@dataclass(frozen=True, kw_only=True)
class SB3AlgorithmConfig(AgentConfig):
    """The keys of agent=sb3 (conf/agent/sb3.yaml): agents.common.hyperparameters explains the design."""

    algo: str = "PPO"  # A2C | PPO | DQN | SAC | TD3 | DDPG
    policy: str = "auto"  # auto (from the observation space, with encoder) | MlpPolicy | CnnPolicy | MultiInputPolicy
    encoder: str = "auto"
    hyperparams: dict[str, Any] | None = None  # the algorithm's constructor arguments (zoo's names); null: its default
    policy_kwargs: dict[str, Any] | None = None  # the policy's constructor arguments
    action_noise: dict[str, Any] | None = None  # {type: normal | ornstein_uhlenbeck | null, std, theta, dt}


class SB3Algorithm(SB3Agent):
    """Stable-Baselines3's `algo` with its own defaults, `hyperparams` (the constructor's arguments, zoo's
    names), `policy_kwargs` and `action_noise`; the policy chosen from the observation space (policy=auto,
    with agent.encoder) or named."""

    __init__ = keyword_init(SB3AlgorithmConfig, "env")
    hp: SB3AlgorithmConfig

    def initialize(self, env: EnvConfig, hp: SB3AlgorithmConfig) -> None:
        cls = algorithm_class(hp.algo)
        self.algorithm = cls
        params = check_hyperparams(cls, dict(hp.hyperparams or {}))
        check_choice("agent.policy", hp.policy, POLICY_CHOICES)
        if hp.policy != "auto" and hp.encoder != "auto":
            raise ValueError(f"agent.policy={hp.policy!r} and agent.encoder={hp.encoder!r} both choose the policy; set "
                             "one of them (the other stays auto).")
        super().initialize(env, hp, params.get("gamma", _default(cls, "gamma")), hp.encoder)
        self.policy_choice = hp.policy
        self.noise = check_action_noise(cls, hp.action_noise)
        pkw = policy_kwargs_for(cls, dict(hp.policy_kwargs or {}))
        self.kwargs = {**params, **({"policy_kwargs": pkw} if pkw else {})}

    def choose_policy(self, obs_space: Any) -> str:
        if self.policy_choice == "auto":
            return super().choose_policy(obs_space)
        check_observation_space(obs_space, self.env_cfg.id)
        check_policy(obs_space, self.policy_choice, f"agent.policy={self.policy_choice!r}", self.env_cfg.id)
        return self.policy_choice

    def model_kwargs(self, venv: VecEnv) -> dict[str, Any]:
        kwargs = super().model_kwargs(venv)
        if self.noise is not None:
            kwargs["action_noise"] = make_action_noise(self.noise, venv.action_space.shape)
        return kwargs
