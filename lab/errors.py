"""The one exception type for bad input: its message is shown to the user as it is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and the valid choices."""


@contextmanager
def building(key: str, what: object = None) -> Iterator[None]:
    """ValueError / FileNotFoundError raised while building or reading config key `key` (e.g. `data`,
    `ckpt_path`) become the ConfigError that names it, instead of a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as e:
        if str(e).startswith(f"{key}="):  # it names the key already (lab.checks)
            raise ConfigError(str(e)) from None
        shown = f"{key}={what!r}" if what is not None else f"`{key}`"
        raise ConfigError(f"Invalid {shown}: {e}") from None
