"""An exclusive, advisory lock on a data directory: one writer process per store.

``flock`` on a file in the directory; the kernel drops it when the process dies (``kill -9``
included), so a crashed writer never leaves the directory locked.
"""

from __future__ import annotations

import fcntl
import os
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
