"""Each algorithm's hyperparameters as one dataclass, the single place their names, types and defaults are written.

Design. `PPOConfig` (agents/ppo/config.py), `DQNConfig` (agents/dqn/config.py), `SACConfig` (agents/sac/config.py)
and `SB3AlgorithmConfig` (agents/sb3/any.py) extend `AgentConfig`, the keys every agent takes (the run's length
and seed, evaluation, logging, torch threads). Their fields are the keys of conf/agent/<algo>.yaml, named with
the SB3/CleanRL vocabulary; each dataclass checks its own values (`__post_init__`: a ValueError naming the
`agent.<key>`), so the lab's agent and its Stable-Baselines3 wrapper refuse the same bad values.

Both the LightningModule (`PPO`) and the SB3 wrapper (`SB3PPO`, `agent=sb3_ppo`) take that dataclass's fields as
their constructor's keyword arguments: Hydra instantiates `_target_` with the YAML keys as kwargs. The constructor
is not written out by hand (it would repeat every name and default, twice per algorithm): `keyword_init`
generates it from the dataclass, as `dataclasses` generates a dataclass's own `__init__`, with one explicit
keyword-only parameter per field (no `**kwargs`: a key the algorithm does not take is Python's "unexpected keyword
argument" TypeError, which lab.instantiate reports), its default the field's default. The generated constructor
builds the dataclass and calls `self.initialize(env, [optimizer,] hp)`, the class's real initializer, which keeps
`hp` as `self.hp`: the module reads its hyperparameters there (`self.hp.gamma`), nowhere else.
`inspect.signature(PPO)` shows every key with its default; tests/unit/agents/test_hyperparameters.py checks the
YAML files against the dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lab.checks import check_ints

C = TypeVar("C", bound="AgentConfig")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """The keys every agent takes besides its algorithm's hyperparameters.

    One frozen dataclass per algorithm extends it (PPOConfig, DQNConfig, SACConfig, SB3AlgorithmConfig): its
    fields are the algorithm's YAML keys with their defaults, written nowhere else. The agent's constructor is
    generated from it (`keyword_init`: one keyword-only parameter per field, no **kwargs) and keeps the built
    dataclass as `self.hp`; the lab's module and its SB3 wrapper take the same dataclass, the wrapper mapping
    it to SB3's names once. See this module's docstring."""

    total_timesteps: int = 100_000
    seed: int = 0
    eval_freq: int = 5000  # env steps between evaluations (= one Lightning epoch; a checkpoint after each)
    eval_episodes: int = 10
    eval_deterministic: bool = True
    log_interval: int = 1000  # env steps between metric logs
    video: bool = True  # record the final evaluation's first episode (mp4) and log it to W&B
    torch_threads: int | None = None  # torch threads while training; None: torch's default (one per core)

    def __post_init__(self) -> None:
        if self.torch_threads is not None:
            check_ints("agent.", torch_threads=(self.torch_threads, 1))
        check_ints("agent.", total_timesteps=(self.total_timesteps, 1), eval_freq=(self.eval_freq, 1),
                   eval_episodes=(self.eval_episodes, 1), log_interval=(self.log_interval, 1))


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig(AgentConfig):
    """The keys the lab's algorithms (agent=ppo | dqn | sac, and their SB3 wrappers) share."""

    learning_rate: float = 3e-4
    anneal_lr: bool = False  # true: linear decay to 0 over total_timesteps (zoo's lin_<lr>)
    gamma: float = 0.99
    encoder: str = "auto"  # auto (a CNN for images, else MLPs on the encoded observation) | mlp | cnn | nature_cnn

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit(gamma=self.gamma)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not self.learning_rate > 0:
            raise ValueError(f"agent.learning_rate={self.learning_rate!r} is not valid: it must be a number > 0.")


@dataclass(frozen=True, kw_only=True)
class ReplayConfig(AlgorithmConfig):
    """The replay keys of the off-policy algorithms (DQN, SAC), with SB3's meanings; each algorithm sets the
    defaults of the ones without."""

    buffer_size: int = 1_000_000
    learning_starts: int = 100  # env steps before the first gradient step (replay warm-up)
    batch_size: int
    tau: float  # the targets' Polyak averaging weight (1: a copy)
    train_freq: int  # vector env steps between training phases
    gradient_steps: int = 1  # per training phase; -1: as many as env steps collected
    target_update_interval: int
    save_replay_buffer: bool = False  # true: checkpoints carry the replay buffer (exact resume; large files)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints("agent.", buffer_size=(self.buffer_size, 1), batch_size=(self.batch_size, 1),
                   train_freq=(self.train_freq, 1), target_update_interval=(self.target_update_interval, 1),
                   learning_starts=(self.learning_starts, 0), gradient_steps=(self.gradient_steps, -1))
        if self.gradient_steps == 0:
            raise ValueError("agent.gradient_steps=0 is not valid: a positive number, or -1 for as many as env steps.")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"agent.batch_size={self.batch_size} is larger than agent.buffer_size={self.buffer_size}.")
        tau = self.tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
            raise ValueError(f"agent.tau={tau!r} is not valid: it must be in (0, 1] (Polyak averaging weight; 1 = a "
                             "copy).")


def check_unit(**values: float) -> None:
    """ValueError naming the first of `values` outside [0, 1]."""
    for key, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"agent.{key}={value!r} is not valid: it must be in [0, 1].")


def defaults(config: type[AgentConfig]) -> dict[str, Any]:
    """{field: default} of a hyperparameter dataclass (every field has one)."""
    return {f.name: f.default for f in dataclasses.fields(config)}


def keyword_init(config: type[C], *leading: str) -> Callable[..., None]:
    """`__init__(self, <leading>, *, <one keyword per field of config, defaulting to the field's default>)` that
    calls `self.initialize(<leading>, config(<fields>))`: see this module's docstring."""
    fields = dataclasses.fields(config)
    for f in fields:
        if f.default is dataclasses.MISSING or isinstance(f.default, (list, dict, set)):
            raise TypeError(f"{config.__name__}.{f.name} needs an immutable default to be a constructor keyword")
    params = ", ".join(f"{f.name}=_defaults[{f.name!r}]" for f in fields)
    args = ", ".join(f"{f.name}={f.name}" for f in fields)
    lead = "".join(f"{name}, " for name in leading)
    source = (f"def __init__(self, {lead}*, {params}) -> None:\n"
              f"    self.initialize({lead}_config({args}))\n")
    namespace: dict[str, Any] = {"_defaults": defaults(config), "_config": config, "__name__": config.__module__}
    exec(source, namespace)  # as `dataclasses` builds a dataclass's __init__  # noqa: S102
    init = namespace["__init__"]
    init.__annotations__ = {f.name: f.type for f in fields} | {"return": "None"}
    init.__doc__ = f"The keys of {config.__name__} (their defaults), built into `self.hp`; see `initialize`."
    return init


class RunKeys:
    """The keys code outside an agent reads from it (runners, lab.modes.predict), and its `video` switch."""

    hp: AgentConfig
    video: bool  # hp.video, turned off by the runner when the env cannot render

    @property
    def total_timesteps(self) -> int:
        return self.hp.total_timesteps

    @property
    def eval_episodes(self) -> int:
        return self.hp.eval_episodes
