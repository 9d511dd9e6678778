"""A run directory's own files: its lock (one process trains a run at a time), its ``failed`` marker,
and what Ctrl-C left of it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from offrl_zoo.errors import RunDirConflict, RunLockedError, TrainingDiverged, WriteError
from offrl_zoo.io import write_json
from offrl_zoo.train.trainer import CHECKPOINT, DONE

FAILED = "failed"  # JSON marker of a run that stopped on an error (a report shows it as failed, never a score)
LOCK = ".lock"
TRAIN_LOG = "train.log"  # a sweep's copy of the training process's output


def interrupted_run(run_dir: Path) -> str:
    """What Ctrl-C left of a run, for the CLI's message."""
    if (run_dir / CHECKPOINT).is_file():
        return f"{run_dir} stopped; re-run the same command to resume it from its last checkpoint"
    if (run_dir / "config.yaml").is_file():
        return f"{run_dir} stopped before its first checkpoint; re-run the same command to start it again"
    return f"{run_dir} had not started and nothing was kept; re-run the same command to start it"


@contextmanager
def claim_runs(run_dirs: list[Path]) -> Iterator[list[Path]]:
    """Lock the unfinished ones of ``run_dirs`` (``run_lock``, in their order) for the block; yields those
    still unfinished once locked, as another process may have finished one between the check and the lock."""
    with ExitStack() as locks:
        for run_dir in run_dirs:
            if not (run_dir / DONE).is_file():
                locks.enter_context(run_lock(run_dir))
        yield [d for d in run_dirs if not (d / DONE).is_file()]


@contextmanager
def failures_marked(run_dirs: list[Path]) -> Iterator[None]:
    """An error in the block marks each of ``run_dirs`` failed, then propagates; re-running retries them."""
    try:
        yield
    except RunDirConflict:
        raise  # the folder holds another run: this request has nothing in it to mark
    except Exception as err:
        for run_dir in run_dirs:
            mark_failed(run_dir, err)
        raise


def mark_failed(run_dir: Path, err: Exception) -> None:
    """The ``failed`` marker, for reports: ``diverged`` or ``error``, and the error."""
    kind = "diverged" if isinstance(err, TrainingDiverged) else "error"
    with contextlib.suppress(OSError):  # a full disk that broke the run: its own error matters more
        write_json(run_dir / FAILED, {"kind": kind, "error": f"{type(err).__name__}: {err}"})


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run directory for the life of the process that trains it.

    Two processes (e.g. two ``compare`` sweeps over one results store) never train the same run at
    once; the second is told who holds it. The OS releases the lock when the holder dies, even by SIGKILL.
    A run that fails before it is claimed (no config.yaml: a refused dataset, Ctrl-C while loading it)
    leaves nothing behind: its lock, its ``failed`` marker and the folders made for it are removed.
    """
    made = _missing_folders(run_dir)
    with _locked_file(run_dir) as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}")
        fh.flush()
        try:
            yield
        except BaseException:
            if not (run_dir / "config.yaml").is_file():
                _remove_unclaimed(run_dir, made)
            raise
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _locked_file(run_dir: Path) -> IO[str]:
    """The run's lock file, open and exclusively locked (``RunLockedError`` when another process holds it)."""
    path = run_dir / LOCK
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")  # noqa: SIM115 - returned open: the lock lives as long as it
        except OSError as err:  # a read-only --out
            raise WriteError(err.errno, f"cannot create {err.filename or path}: {err.strerror}") from err
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLockedError(f"{run_dir} is being trained by {holder}; not starting it twice") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh
        fh.close()  # a refused run removed the file we locked (``_remove_unclaimed``): lock the new one


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_unclaimed(run_dir: Path, made: list[Path]) -> None:
    """Remove what ``run_lock`` and ``mark_failed`` left in a run directory never claimed, unless it
    holds more (a sweep's train.log: the ``failed`` marker stays for the sweep to report)."""
    if any(p.name not in (LOCK, FAILED) for p in run_dir.iterdir()):
        return
    for name in (FAILED, LOCK):
        (run_dir / name).unlink(missing_ok=True)
    for folder in made:
        with contextlib.suppress(OSError):  # not empty: another run is in it
            folder.rmdir()
