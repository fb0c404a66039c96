"""Resumable long runs: the finished parts of a computation, saved atomically under the
problem's key.

A ``Checkpoint`` at ``path`` holds named NumPy arrays. ``save(**parts)`` adds or replaces
parts and rewrites the file atomically (a temporary file in the same folder, then
``os.replace``): a run killed at any moment leaves either the previous complete file or the
new one. Opening an existing file with another key (another problem, or another version of
the file's layout) is refused with a ValueError instead of mixing two problems' results.
``path=None`` keeps the parts in memory only.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def problem_key(*items) -> str:
    """SHA-256 of ``items``: arrays by shape, dtype and bytes, anything else by ``repr``."""
    digest = hashlib.sha256()
    for item in items:
        if isinstance(item, np.ndarray):
            arr = np.ascontiguousarray(item)
            digest.update(f"{arr.shape}{arr.dtype}".encode())
            digest.update(arr.tobytes())
        else:
            digest.update(repr(item).encode())
        digest.update(b"|")
    return digest.hexdigest()


class Checkpoint:
    """Named arrays of a run, kept at ``path`` (None: in memory only) under ``key``."""

    def __init__(self, path, key: str):
        self.path = None if path is None else Path(path)
        self.key = key
        self.parts = {}
        if self.path is None or not self.path.exists():
            return
        if self.path.is_dir():
            raise ValueError(f"checkpoint {self.path} is a directory; give a file path")
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                parts = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"checkpoint {self.path} is not a symdmft checkpoint ({err}); "
                             f"delete it or choose another path") from None
        if str(parts.pop("key", "")) != key:
            raise ValueError(f"checkpoint {self.path} holds another problem (or another layout); "
                             f"delete it or choose another path")
        self.parts = parts

    def get(self, name: str):
        return self.parts.get(name)

    def save(self, **parts) -> None:
        """Add or replace ``parts`` and rewrite the file atomically."""
        self.parts.update({name: np.asarray(value) for name, value in parts.items()})
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, key=np.array(self.key), **self.parts)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
