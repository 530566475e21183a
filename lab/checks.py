"""The one validation style of the lab: checks that raise ValueError naming the key, the value and what is
valid (turned into the user's one-paragraph `error:` by lab.run), and the one activation table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation_class(key: str, name: str) -> type[nn.Module]:
    """The nn.Module class of the activation called `name` (the value of config key `key`)."""
    check_choice(key, name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not valid; valid choices: {', '.join(map(str, choices))}.")


def check_positive(key: str, value: int | float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{key}={value!r} is not valid: it must be a number > 0.")


def check_ints(prefix: str = "", **values: tuple[int, int]) -> None:
    """ValueError naming the first `<prefix><key>` that is not an integer >= its minimum: key=(value, minimum)."""
    for key, (value, minimum) in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{prefix}{key}={value!r} is not valid: it must be an integer >= {minimum}.")
