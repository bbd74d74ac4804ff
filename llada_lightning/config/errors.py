"""The one exception type for bad configuration: a single line naming the key and the fix."""


class ConfigError(ValueError):
    """A configuration problem found before any work starts."""
