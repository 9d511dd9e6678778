"""The CLI's one error boundary: how every failure of a command reaches the user.

- Expected failures are one line on stderr, ``offrl-zoo: error: <what> (hint: <what to do>)``, and exit
  code 2 (3 when training diverged): the project's errors (``OffrlZooError``, raised where the cause is
  known, naming the file, key or value), argparse's refusals, and a full disk or a folder without write
  permission anywhere (the environment, not a bug).
- Ctrl-C says what it stopped and how to go on (``Interrupted``), and exits 130.
- Anything else is a bug: its traceback, then one line asking for a report, with the version and the
  command.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

from offrl_zoo import __version__
from offrl_zoo.errors import Interrupted, OffrlZooError, TrainingDiverged, UsageError, WriteError

EXIT_BUG, EXIT_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 3, 130, 141
# OS errors that the machine causes, not offrl-zoo: reported in one line wherever they arise.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
NOT_FINISHED = "files are replaced whole, never left half-written: re-run the same command to go on"


class Parser(argparse.ArgumentParser):
    """argparse, with its refusals raised as ``UsageError`` (one line through the boundary) instead of
    printing the usage and exiting. Sub-command parsers are made of the same class."""

    def error(self, message: str) -> NoReturn:
        raise usage_error(self.prog, message)


def usage_error(prog: str, message: str) -> UsageError:
    """A refused command line: ``prog`` is ``offrl-zoo`` or ``offrl-zoo SUBCOMMAND``, named in the message."""
    command = prog.partition(" ")[2]
    err = UsageError(f"{command}: {message}" if command else message)
    err.hint = f"see `{prog} --help`"
    return err


def guarded(argv: list[str], run: Callable[[], int]) -> int:
    """``run()``'s exit code, with every failure turned into what the module docstring says."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(warnings.showwarning)
        try:
            return run()
        except KeyboardInterrupt as err:
            _say("interrupted", str(err) if isinstance(err, Interrupted) else NOT_FINISHED)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of stdout went away (`offrl-zoo list | head`): not an error
            _discard_stdout()
            return EXIT_BROKEN_PIPE
        except Exception as err:
            return _failed(err, argv)


def _failed(err: Exception, argv: list[str]) -> int:
    if isinstance(err, TrainingDiverged):
        _say("training diverged", str(err), _hint(err, argv))
        return EXIT_DIVERGED
    if isinstance(err, OffrlZooError):
        _say("error", str(err), _hint(err, argv))
        return EXIT_ERROR
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        where = f"{err.filename}: " if err.filename else ""
        _say("error", f"{where}{err.strerror}", WriteError.hint)
        return EXIT_ERROR
    traceback.print_exception(err)
    print(
        f"offrl-zoo {__version__}: unexpected error, a bug in offrl-zoo or a plugin: please report it with the "
        f"traceback above and the command: offrl-zoo {shlex.join(argv)}",
        file=sys.stderr,
    )
    return EXIT_BUG


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again (Python's recipe)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _hint(err: OffrlZooError, argv: list[str]) -> str:
    command = next((a for a in argv if not a.startswith("-")), "")
    return err.hint.replace("{command}", command).replace("  ", " ")


def _say(kind: str, message: str, hint: str = "") -> None:
    """One line on stderr, whatever newlines the message holds."""
    text = f"offrl-zoo: {kind}: {message}" + (f" (hint: {hint})" if hint else "")
    print(" ".join(text.split()), file=sys.stderr)


def _one_line_warning(default: Callable[..., None]) -> Callable[..., None]:
    """offrl-zoo's own warnings as ``offrl-zoo: warning: ...`` (one line); others as Python shows them."""

    def show(
        message: Warning | str, category: type[Warning], *args: Any, file: TextIO | None = None, **kw: Any
    ) -> None:
        if not category.__module__.startswith("offrl_zoo"):
            default(message, category, *args, file=file, **kw)
            return
        print(" ".join(f"offrl-zoo: warning: {message}".split()), file=file or sys.stderr)

    return show
