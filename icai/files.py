"""Atomic file writes with one mode policy: every file icai writes is renamed into place whole and gets
the process's umask, like any other file the user's process makes (run files, versions, exports, results)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from icai.errors import DataError

_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """The process's umask (read without changing it where /proc allows; else set and restored under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[str]], object]) -> Path:
    """`write(file)` into a temp file beside `path`, then rename it into place; the file gets the umask's mode.

    A directory at `path`, or a parent that cannot be made, is a DataError naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"{path}: cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            # mkstemp makes the file 0600; a run file should be as readable as any other file this process writes
            os.fchmod(fh.fileno(), 0o666 & ~process_umask())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`text` written atomically to `path` (see `write_atomic`)."""
    return write_atomic(path, lambda fh: fh.write(text))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """`data` as indented JSON, written atomically to `path`."""
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
