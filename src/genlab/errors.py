"""User-facing errors: the CLI prints their message and exits with status 2, no traceback."""


class GenlabError(Exception):
    """An error caused by input the user can fix (a file, a flag, a config value)."""


class DataError(GenlabError):
    """A dataset file is missing, truncated, corrupt or does not match its checksum."""


class ConfigError(GenlabError, ValueError):
    """A configuration value is invalid."""


class TrainingDiverged(GenlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
