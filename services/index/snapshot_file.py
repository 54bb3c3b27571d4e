"""The on-disk snapshot of one FAISS index, written atomically.

Layout: ``MAGIC`` | header length (u32, little endian) | JSON header | payload, where the
payload is the serialised FAISS index followed by the deleted-id array (int64, little
endian) and the header carries the payload's sha256, so a truncated or altered file is
detected and ignored rather than loaded.

Atomic write: the bytes go to a temporary file in the same directory, which is flushed and
fsynced, then ``os.replace``d over the target, then the directory is fsynced so the rename
itself is durable. A crash leaves either the old snapshot or the new one, never a mix, plus
possibly a stray temporary file that ``remove_stale_temporaries`` deletes on the next open.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"AVIDSNAP"
FORMAT_VERSION = 1
_TMP_SUFFIX = ".tmp"
_LEN = struct.Struct("<I")


class SnapshotCorrupt(ValueError):
    """The file is not a complete, intact snapshot."""


@dataclass(frozen=True)
class SnapshotData:
    header: dict[str, Any]
    index_bytes: npt.NDArray[np.uint8]
    deleted_ids: npt.NDArray[np.int64]


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(
    path: Path,
    header: dict[str, Any],
    index_bytes: npt.NDArray[np.uint8],
    deleted_ids: npt.NDArray[np.int64],
) -> None:
    """Write header + payload to ``path`` atomically and durably (see the module doc)."""
    deleted_le = np.ascontiguousarray(deleted_ids, dtype="<i8").tobytes()
    index_view = np.ascontiguousarray(index_bytes, dtype=np.uint8).data
    digest = hashlib.sha256(index_view)
    digest.update(deleted_le)
    full_header = {
        **header,
        "format": FORMAT_VERSION,
        "index_bytes": len(index_view),
        "deleted_count": len(deleted_ids),
        "sha256": digest.hexdigest(),
    }
    header_bytes = json.dumps(full_header, sort_keys=True).encode()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(_LEN.pack(len(header_bytes)))
            f.write(header_bytes)
            f.write(index_view)
            f.write(deleted_le)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_directory(path.parent)


def read_snapshot(path: Path) -> SnapshotData | None:
    """The snapshot at ``path``; ``None`` if there is none; ``SnapshotCorrupt`` if damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + _LEN.size:
        raise SnapshotCorrupt(f"{path}: not a snapshot file")
    (header_len,) = _LEN.unpack_from(raw, len(MAGIC))
    body_start = len(MAGIC) + _LEN.size + header_len
    try:
        header = json.loads(raw[len(MAGIC) + _LEN.size : body_start])
        n_index = int(header["index_bytes"])
        n_deleted = int(header["deleted_count"])
        expected = str(header["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotCorrupt(f"{path}: unreadable header ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise SnapshotCorrupt(f"{path}: unknown snapshot format")
    if len(raw) != body_start + n_index + 8 * n_deleted:
        raise SnapshotCorrupt(f"{path}: truncated or padded payload")
    payload = memoryview(raw)[body_start:]
    if hashlib.sha256(payload).hexdigest() != expected:
        raise SnapshotCorrupt(f"{path}: checksum mismatch")
    index_bytes = np.frombuffer(raw, dtype=np.uint8, count=n_index, offset=body_start)
    deleted = np.frombuffer(raw, dtype="<i8", count=n_deleted, offset=body_start + n_index)
    return SnapshotData(header, index_bytes, deleted.astype(np.int64))


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files a crash left behind mid-write."""
    for stray in directory.glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()
