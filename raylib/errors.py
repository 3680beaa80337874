"""Errors a user can act on: each names the input that is wrong and the fix."""


class LandcoverError(Exception):
    """Base class: a problem with the user's input or environment, not a bug.

    The CLI prints these as one line and exits with ``exit_code`` (2), without a traceback.
    """

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None, reason: str | None = None):
        self.what = what
        self.fix = fix
        self.reason = reason  # a map error-row reason code when the problem is one scene's
        super().__init__(f"{what}" + (f" Fix: {fix}" if fix else ""))


class ConfigError(LandcoverError):
    """A configuration value is missing, unknown or out of range."""


class InputError(LandcoverError):
    """An input (scene, model directory, data set) is missing or unusable."""


class StorageError(LandcoverError):
    """A storage location cannot be reached, read or written."""


class StoppedPartWay(StorageError):
    """A run stopped part-way for a reason outside its inputs (no space left where it
    writes): what it wrote is kept, and the same command run again resumes (exit 4)."""

    exit_code = 4
