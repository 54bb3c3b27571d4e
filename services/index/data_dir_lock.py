"""An exclusive, advisory lock on a data directory: one writer process per store.

``flock`` on a file in the directory; the kernel drops it when the process dies (``kill -9``
included), so a crashed writer never leaves the directory locked.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

from services.index.errors import StoreLocked


class DataDirLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._fd)
            self._fd = None
            raise StoreLocked(
                f"{path.parent} is open by another IndexStore (one writer per data directory)"
            ) from exc

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def data_dir_id(directory: Path) -> str:
    """A name for ``directory`` that stays across restarts (``<directory>/ID``, made on first
    use; the caller holds the directory's lock): which process's job records are whose when
    several processes share one database."""
    path = directory / "ID"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    temporary = directory / f"ID.{uuid.uuid4().hex}.tmp"
    temporary.write_text(uuid.uuid4().hex)
    os.replace(temporary, path)
    return path.read_text().strip()
