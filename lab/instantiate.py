"""hydra.utils.instantiate for the lab: errors of a constructor reach the user as a ConfigError naming the key."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from lab.errors import ConfigError


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, turning a constructor's ValueError (or a missing file, an unimportable
    `_target_`, an unknown keyword) into a ConfigError that names the key."""
    try:
        # plain Python containers, so checkpoints (hyperparameters) load with torch's weights_only
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause: BaseException = e
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, (ValueError, FileNotFoundError)):
            raise ConfigError(f"Invalid config under `{key}`: {cause}") from None
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            raise ConfigError(
                f"Invalid config under `{key}`: {cause}. A key its class does not take: a key left over from "
                "another option or a misspelt key; see the option's YAML in conf/ for its keys, and delete extra "
                "ones with `~key`."
            ) from None
        if isinstance(cause, (ImportError, AttributeError)) or "Error locating target" in str(e):
            raise ConfigError(f"{key}._target_={target!r} cannot be imported: {str(cause).splitlines()[0]}. "
                              "Is its package importable from where you run (your project's folder or "
                              "PYTHONPATH)?") from None
        raise
