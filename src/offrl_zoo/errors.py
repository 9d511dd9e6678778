"""User-facing error types (no heavy imports, so the CLI can catch them cheaply)."""


class OffrlZooError(Exception):
    """Base of the errors the CLI reports as one line instead of a traceback."""


class ConfigError(OffrlZooError, ValueError):
    """A config that cannot be used; the message names the key, the offending value and the valid ones."""


class UnsupportedTaskError(ConfigError):
    """The algorithm has no official settings for this task (e.g. SRPO's β on pen/kitchen): not guessed."""


class DatasetError(OffrlZooError, ValueError):
    """A dataset that cannot be used; the message names the file, the field and what was expected."""


class UnknownNameError(OffrlZooError, KeyError):
    """An unknown algorithm/task/suite name; the message carries the suggestions."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class TrainingDiverged(OffrlZooError, RuntimeError):
    """A loss became NaN/Inf; the message names the stage, step and term and the last good checkpoint."""


class RunLockedError(OffrlZooError, RuntimeError):
    """Another process holds the run directory's lock (it is training that run right now)."""


class WriteError(OffrlZooError, OSError):
    """A file could not be written (full disk, permissions); the previous version of it is intact."""


class UnsafeFileError(OffrlZooError, ValueError):
    """A checkpoint or weights file that would run code when loaded (a pickle payload): refused."""


class CheckpointError(OffrlZooError, ValueError):
    """A checkpoint that cannot be resumed from; the message says what it holds and what was expected."""
