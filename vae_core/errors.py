"""The project's exceptions: the CLI prints any of them as one line and exits non-zero."""


class VaeSweepError(Exception):
    """Base class for every error a user can cause and fix."""


class ConfigError(VaeSweepError, ValueError):
    """A configuration value, option or search-space file is invalid."""


class DataError(VaeSweepError):
    """The requested data cannot be found, downloaded or read."""


class DeviceError(VaeSweepError):
    """The requested device is not available (e.g. CUDA without a GPU)."""


class CheckpointError(VaeSweepError):
    """A checkpoint is missing, corrupt, or does not belong to this model."""


class ResultsError(VaeSweepError):
    """A results directory or one of its tables is missing or unreadable."""


def one_line(err: BaseException, limit: int = 500) -> str:
    """An exception as one line for a message: its first line (at most `limit` characters), or
    its type when it has no text."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
