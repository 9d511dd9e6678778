"""Crash-safe file writing: every file is written to a temporary sibling and renamed into place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> None:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_torch(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


class JsonlLog:
    """An append-only JSON-lines file whose length can be rolled back to a checkpointed offset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.touch()

    def append(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()

    def offset(self) -> int:
        return self.path.stat().st_size

    def truncate(self, offset: int) -> None:
        with open(self.path, "r+") as fh:
            fh.truncate(offset)

    def read(self) -> list[dict]:
        with open(self.path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
