"""User-facing error types (no heavy imports, so the CLI can catch them cheaply).

The CLI prints an ``OffrlZooError`` as one line, ``offrl-zoo: error: <message> (hint: <hint>)``, and exits
with code 2 (3 for ``TrainingDiverged``). Each class's ``hint`` says what to do next; ``{command}`` in it
becomes the sub-command that failed.
"""

from collections.abc import Iterator
from contextlib import contextmanager


class OffrlZooError(Exception):
    """Base of the errors the CLI reports as one line instead of a traceback."""

    hint = "see `offrl-zoo {command} --help`"


class UsageError(OffrlZooError):
    """A command line that argparse refuses (unknown option, a bad number, a missing argument)."""


class ConfigError(OffrlZooError, ValueError):
    """A config that cannot be used; the message names the key, the offending value and the valid ones."""

    hint = "`offrl-zoo config ALGO --task TASK` prints every key with its value and origin"


class ConfigWarning(UserWarning):
    """A run's config value that cannot hold on this machine and is replaced by a stated one (acting only)."""


class FlagError(ConfigError):
    """Command-line flags that cannot be used together or on this machine (``--seed``/``--seeds`` past the last
    seed, ``--device cuda`` without CUDA): the fix is on the command line, not in a config."""

    hint = "see `offrl-zoo {command} --help`"


class RunDirConflict(ConfigError):
    """A run directory that holds another experiment, finished or not; nothing in it is touched."""

    hint = "give another --out/--run-dir, or delete the folder to train this request in it"


class StoreDataConflict(ConfigError):
    """A results store whose finished runs trained on other data than new runs would load here (generated data
    made on another CPU type): one report could not compare them; nothing is trained."""

    hint = "train into another store (--out NEW), or copy the finished runs' data file (with its .json) into this cache"


class UnsupportedTaskError(ConfigError):
    """The algorithm has no official settings for this task (e.g. SRPO's β on pen/kitchen): not guessed."""


class ReferenceFileError(OffrlZooError, ValueError):
    """A reference-run file or a store that references cannot be made from (bench/references.py)."""

    hint = "`offrl-zoo reference --help` says what a reference is and how to make one"


class DatasetError(OffrlZooError, ValueError):
    """A dataset that cannot be used; the message names the file, the field and what was expected."""

    hint = "`offrl-zoo data verify PATH --env ENV` checks a file in full"


class UnknownNameError(OffrlZooError, KeyError):
    """An unknown algorithm/task/suite name; the message carries the suggestions."""

    hint = "`offrl-zoo list algorithms|tasks|suites` prints the known names"

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class PluginError(OffrlZooError, TypeError):
    """An installed plugin's algorithm that cannot be loaded or is not an algorithm; names the package."""

    hint = "fix or uninstall the plugin package named above; the built-in algorithms still work"


class TrainingDiverged(OffrlZooError, RuntimeError):
    """A loss became NaN/Inf; the message names the stage, step and term and the last good checkpoint."""

    hint = "lower the learning rates or change the config; re-running the same command retries the run"


class RunLockedError(OffrlZooError, RuntimeError):
    """Another process holds the run directory's lock (it is training that run right now)."""

    hint = "wait for that process, or give another --out/--run-dir"


class WriteError(OffrlZooError, OSError):
    """A file could not be written (full disk, permissions); the previous version of it is intact.

    Raised as ``WriteError(errno, message)``; its text is the message alone, without OSError's
    ``[Errno N]`` prefix."""

    hint = "free some disk space or give a writable --out, then re-run the same command"

    def __str__(self) -> str:
        return str(self.strerror)


class UnsafeFileError(OffrlZooError, ValueError):
    """A checkpoint or weights file that would run code when loaded (a pickle payload): refused."""

    hint = "load only files made by offrl-zoo or torch.save of tensors and plain data"


class CheckpointError(OffrlZooError, ValueError):
    """A checkpoint that cannot be resumed from; the message says what it holds and what was expected."""

    hint = "restore the file from a copy, or delete it to start over"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it stopped and how to go on: the CLI prints the message instead of a traceback.

    A ``KeyboardInterrupt`` still, so that nothing meant for errors (``except Exception``) catches it."""


@contextmanager
def interrupted_as(message: str) -> Iterator[None]:
    """Ctrl-C in the block becomes ``Interrupted(message)``; one from deeper that says more is kept."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(message) from None


_sigint_pending = False


def _remember_sigint(signum: int, frame: object) -> None:
    global _sigint_pending
    _sigint_pending = True
    raise KeyboardInterrupt


@contextmanager
def sigint_remembered() -> Iterator[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` as Python's own handler does, and is also remembered.

    Python drops an exception raised where it cannot propagate (a ``__del__``, a weakref or garbage
    collection callback), so a Ctrl-C landing there would be lost and the run would carry on to the end;
    ``raise_pending_sigint()`` at every training step raises it again. Left as it is where SIGINT is not
    Python's default (ignored by the parent, or handled by an embedding program) or off the main thread.
    """
    import signal
    import threading

    global _sigint_pending
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _sigint_pending = False
    signal.signal(signal.SIGINT, _remember_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _sigint_pending = False


def raise_pending_sigint() -> None:
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C that was swallowed on its way (see ``sigint_remembered``)."""
    if _sigint_pending:
        raise KeyboardInterrupt
