"""Small helpers shared by the backbones."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str, owner: str = "backbone") -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}.activation={name!r} is not known; valid choices: {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not valid; valid choices: {', '.join(choices)}.")


def check_positive(key: str, value: int | float) -> None:
    if not value > 0:
        raise ValueError(f"{key}={value!r} must be positive.")
