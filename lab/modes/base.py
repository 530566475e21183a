"""What several modes that work on a trained checkpoint share (the Mode contract itself: lab.contracts)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from lab.errors import ConfigError


def load_weights(model: nn.Module, ckpt_path: str | Path, mode: str) -> nn.Module:
    """The checkpoint's state_dict loaded into the configured model (on the CPU, in eval mode); a ConfigError
    naming the checkpoint when they do not match."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} does not match the configured model: "
                          f"{str(e).splitlines()[0]} Run mode={mode} with the same experiment and overrides the "
                          "checkpoint was trained with.") from None
    return model.cpu().eval()


def refuse(cfg: DictConfig, applies_to: str, what: str) -> ConfigError:
    """The error for a mode asked of a model it does not apply to."""
    return ConfigError(f"mode={cfg.mode} applies to {applies_to}; {what} is not one.")
