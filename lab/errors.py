"""The one exception type for bad input: its message is shown to the user as it is."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and the valid choices."""
