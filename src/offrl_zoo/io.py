"""Crash-safe file writing: every file is written to a temporary sibling and renamed into place."""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from offrl_zoo.errors import CheckpointError, UnsafeFileError, WriteError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> None:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then rename it over ``path``.

    A kill at any moment leaves either the old file or the new one, never a mix; a failed write (a
    full disk) removes the temp file and raises ``WriteError`` saying that the old file is intact.
    """
    path = Path(path)
    kept = "the previous version is intact" if path.exists() else "nothing was written"
    with writing(path, kept), _temp_sibling(path) as (fd, _), os.fdopen(fd, mode) as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def writing(path: Path, kept: str) -> Iterator[None]:
    """OS errors of the block (a full disk, a read-only folder) as one ``WriteError`` that names ``path``
    and says what of it is ``kept``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(err.errno, f"could not write {path}: {err.strerror or err}; {kept}") from err


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp file next to ``path`` for writers that need a file name (h5py, downloads, copies): renamed
    over ``path`` when the block succeeds, removed when it fails; a kill leaves only the temp file."""
    with _temp_sibling(Path(path)) as (fd, tmp):
        os.close(fd)
        yield tmp


@contextmanager
def _temp_sibling(path: Path) -> Iterator[tuple[int, Path]]:
    """(open descriptor, name) of a new temp file next to ``path``; renamed over ``path`` when the block
    succeeds, removed when it fails. The one home of the temp-file mechanics of the two writers above."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the permissions open() would
        yield fd, Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temps(folder: str | Path, older_than_s: float = 0.0) -> int:
    """Delete temp files that a killed ``atomic_write`` left in ``folder``: all of them while holding the
    folder's lock, else only those older than ``older_than_s`` (another writer may be using a fresh one)."""
    now = time.time()
    stale = [p for p in Path(folder).glob(".*.tmp") if now - p.stat().st_mtime >= older_than_s]
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_torch(path: str | Path, obj: Any) -> None:
    # Serialised in memory first: a full disk then fails the plain write below with an OSError (ENOSPC),
    # where torch.save writing to the file would raise a RuntimeError of its own.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of every file torch.save writes (a zip archive)
# What torch.load raises on an archive it cannot read (the probes of tests/reliability/test_bad_checkpoints.py).
_UNREADABLE = (RuntimeError, OSError, EOFError, ValueError, LookupError)


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``): a file from someone
    else can hold tensors and plain data, never code that runs on load. A damaged file (cut, altered, not
    written by torch.save) is a ``CheckpointError``; ``UnsafeFileError`` means an intact file holding objects."""
    data = _read_checkpoint(Path(path))
    check_archive(data, path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = str(err).strip().splitlines()
        reason = next((line for line in lines if "GLOBAL" in line), lines[-1])[:200]  # the object refused
        raise UnsafeFileError(
            f"{path}: refused: it holds Python objects beyond tensors and plain data, which "
            f"could run code when loaded ({reason})"
        ) from None
    except _UNREADABLE as err:
        raise CheckpointError(f"{path}: not a file of torch.save ({_first_line(err)})") from None


def _read_checkpoint(path: Path) -> bytes:
    """The file's bytes, read once for both the archive check and torch.load."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise CheckpointError(f"{path}: cannot read it ({err.strerror})") from None


def check_archive(data: bytes, path: str | Path) -> None:
    """Refuse bytes (of the file ``path``) that are not an intact torch.save archive, a zip whose entries
    carry CRC-32 checksums: torch reads an altered one into wrong weights without a word, and fails on a
    cut one with a message of its own (or calls garbage unsafe)."""
    try:
        if data[:4] != ZIP_MAGIC:  # zipfile skips bytes before the archive; torch.load does not
            raise zipfile.BadZipFile("it does not start as a zip archive")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except Exception as err:  # the bytes are untrusted: any failure to parse them means they are damaged
        raise CheckpointError(
            f"{path}: damaged or not a checkpoint: not a complete torch.save archive ({_first_line(err)})"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged: its part {bad!r} fails its checksum (the file was altered)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


class JsonlLog:
    """An append-only JSON-lines file whose length can be rolled back to a checkpointed offset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with writing(self.path, "nothing was written"):
            self.path.touch()

    def append(self, record: dict) -> None:
        # a cut last line is skipped when read and cut off on resume (``truncate``)
        with writing(self.path, "the lines before are intact"), open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()

    def offset(self) -> int:
        return self.path.stat().st_size

    def truncate(self, offset: int) -> None:
        with open(self.path, "r+") as fh:
            fh.truncate(offset)

    def read(self) -> list[dict]:
        return read_jsonl(self.path)


class Checkpoint:
    """A resume point: a state saved atomically with the lengths of the run's JSON-lines logs.

    ``resume`` cuts each log back to its length at save time, so that a resumed run rewrites the lines
    written after it and its logs equal an uninterrupted run's. With no checkpoint yet, the logs are
    emptied instead (lines of a process killed before its first checkpoint). The trainer and the
    behaviour-policy trainer share these mechanics; what the state holds is theirs.
    """

    def __init__(self, path: str | Path, logs: dict[str, JsonlLog]) -> None:
        self.path = Path(path)
        self.logs = logs  # saved as "<name>_offset"

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict) -> None:
        save_torch(self.path, state | {f"{name}_offset": log.offset() for name, log in self.logs.items()})

    def resume(self, restore: Callable[[dict], None]) -> dict | None:
        """The saved state (None when there is none), after ``restore(state)`` took it in and the logs were
        cut back to it: a state that ``restore`` refuses leaves the logs as they are."""
        if not self.exists():
            for log in self.logs.values():
                log.truncate(0)
            return None
        state = load_torch(self.path, map_location="cpu")  # RNG states must stay CPU tensors
        restore(state)
        for name, log in self.logs.items():
            log.truncate(state[f"{name}_offset"])
        return state


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file ([] when it is absent). A partial last line, left by a process
    killed mid-append, is skipped (a resume cuts it off); a bad line anywhere else is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return records
