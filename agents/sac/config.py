"""SAC's hyperparameters (agent=sac and agent=sb3_sac): see agents.common.hyperparameters for the design."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agents.common.hyperparameters import ReplayConfig


@dataclass(frozen=True, kw_only=True)
class SACConfig(ReplayConfig):
    """SB3's SAC defaults and names."""

    batch_size: int = 256
    tau: float = 0.005
    train_freq: int = 1
    target_update_interval: int = 1  # gradient steps between target-critic updates
    ent_coef: str | float = "auto"  # temperature alpha: auto (learnt, from 1.0) | auto_<init> (e.g. auto_0.1) | a number
    target_entropy: str | float = "auto"  # what a learnt alpha steers the policy's entropy to; auto: -dim(action space)
    net_arch: tuple[int, ...] = (256, 256)  # per network (actor, and each of the twin critics)
    activation: str = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_ent_coef(self.ent_coef)
        parse_target_entropy(self.target_entropy, 1)


def parse_ent_coef(ent_coef: str | float) -> tuple[bool, float]:
    """agent.ent_coef -> (learnt?, initial or fixed value): 'auto' (learnt from 1.0), 'auto_0.1' (learnt from 0.1),
    or a fixed number >= 0 (SB3's forms). ValueError naming the value and the valid forms otherwise."""
    valid = "valid choices: auto, auto_<initial value> (e.g. auto_0.1), or a fixed number >= 0"
    if isinstance(ent_coef, str) and ent_coef.startswith("auto"):
        if ent_coef == "auto":
            return True, 1.0
        try:
            init = float(ent_coef.removeprefix("auto_")) if ent_coef.startswith("auto_") else math.nan
        except ValueError:
            init = math.nan
        if not init > 0 or not math.isfinite(init):
            raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid: the initial value after 'auto_' must be a "
                             f"number > 0; {valid}.")
        return True, init
    if isinstance(ent_coef, bool):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.")
    try:
        value = float(ent_coef)
    except (TypeError, ValueError):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.") from None
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"agent.ent_coef={ent_coef!r} is not valid; {valid}.")
    return False, value


def parse_target_entropy(target_entropy: str | float, action_dim: int) -> float:
    """agent.target_entropy -> a number: 'auto' is -dim(A) (SB3's and the paper's heuristic)."""
    if target_entropy == "auto":
        return -float(action_dim)
    if not isinstance(target_entropy, bool):
        try:
            value = float(target_entropy)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return value
    raise ValueError(f"agent.target_entropy={target_entropy!r} is not valid; valid choices: auto (-dim(A) = "
                     f"{-float(action_dim)} here) or a number.")
