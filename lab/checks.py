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
    "sigmoid": nn.Sigmoid,
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


def check_choices(key: str, values: Iterable[Any], choices: Iterable[Any]) -> None:
    """`values` must be a non-empty list of `choices` (e.g. the methods a mode runs)."""
    values, choices = list(values), tuple(choices)
    if not values:
        raise ValueError(f"{key} is empty; list one or more of {', '.join(map(str, choices))}.")
    for v in values:
        if v not in choices:
            raise ValueError(f"{key}={values}: {v!r} is not valid; valid choices: {', '.join(map(str, choices))}.")


def check_number(key: str, value: Any, minimum: float, integer: bool = False, strict: bool = True) -> None:
    """`value` must be a number (an integer when `integer`) > minimum (>= when not `strict`)."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{key}={value!r} is not valid: it must be {kind} {'>' if strict else '>='} {minimum}.")


def check_positive(key: str, value: int | float) -> None:
    check_number(key, value, 0)


def check_ints(prefix: str = "", **values: tuple[int, int]) -> None:
    """ValueError naming the first `<prefix><key>` that is not an integer >= its minimum: key=(value, minimum)."""
    for key, (value, minimum) in values.items():
        check_number(f"{prefix}{key}", value, minimum, integer=True, strict=False)
