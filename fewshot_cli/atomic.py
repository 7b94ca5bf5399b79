"""Atomic file writes: a temporary file in the same folder, then a rename.

A process killed at any moment leaves either the previous file or the new one, never a
truncated mix. Checkpoints, the tensor cache, logs and result CSVs are all written this way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from fewshot_cli.errors import FewshotError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file, then rename it to ``path``.

    Example::

        atomic_write("notes.txt", lambda f: f.write(b"hello"))
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise FewshotError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        # mkstemp makes owner-only files; give the result the permissions of a plain open().
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))
