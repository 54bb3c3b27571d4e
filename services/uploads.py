"""Store an uploaded file: streamed in chunks, hashed (SHA-256), size-capped, renamed atomically.

The client's file name is never used as a path: the file is stored as ``<sha256><ext>``, with
``ext`` taken from a whitelist keyed on the client's extension (none when it is not listed;
FFmpeg probes the content anyway). Framework-free: takes any binary file object (a FastAPI
``UploadFile.file``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from avid_model.errors import EmptyMediaError, MediaTooLargeError
from avid_model.media_suffixes import MEDIA_SUFFIXES

CHUNK_BYTES = 1 << 20
ALLOWED_EXTENSIONS = MEDIA_SUFFIXES


@dataclass(frozen=True)
class StoredUpload:
    """An upload on disk. ``created`` is False when the same bytes were already stored."""

    path: Path
    sha256: str
    size: int
    client_name: str
    created: bool

    def discard(self) -> None:
        """Remove the file if this upload created it (rejected media, unkept queries)."""
        if self.created:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def safe_extension(client_name: str | None) -> str:
    """The lower-cased extension of the client's name when whitelisted, else ''."""
    suffix = PurePath(client_name or "").suffix.lower()
    return suffix if suffix in ALLOWED_EXTENSIONS else ""


MAX_FILE_NAME_CHARS = 255
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def sanitised_name(client_name: str | None) -> str | None:
    """The client's base name as an item keeps it: no directories, no control characters,
    at most ``MAX_FILE_NAME_CHARS`` characters; None when nothing is left. Shown to people
    only, never used as a path."""
    base = PurePath(_CONTROL_CHARS.sub("", client_name or "").replace("\\", "/")).name.strip()
    if base in ("", ".", ".."):
        return None
    return base[:MAX_FILE_NAME_CHARS]


def display_name(client_name: str | None) -> str:
    """The client's base name, shortened, for error messages only (never a path)."""
    name = sanitised_name(client_name) or "upload"
    return name if len(name) <= 80 else name[:77] + "..."


def save_upload(
    source: BinaryIO,
    client_name: str | None,
    dest_dir: Path,
    max_bytes: int,
    *,
    unique_name: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> StoredUpload:
    """Copy ``source`` to ``dest_dir/<sha256><ext>`` (``<sha256>-<random><ext>`` with
    ``unique_name``: a private copy, for uploads that are deleted after use).

    Raises ``MediaTooLargeError`` (over ``max_bytes``; HTTP 413) or ``EmptyMediaError``
    (0 bytes; HTTP 422); nothing is left behind then.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    shown = display_name(client_name)
    tmp = dest_dir / f".upload-{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("xb") as out:
            while chunk := source.read(chunk_bytes):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLargeError(
                        f"upload is over the limit of {max_bytes} bytes", path=shown
                    )
                digest.update(chunk)
                out.write(chunk)
            if size == 0:
                raise EmptyMediaError("upload is empty (0 bytes)", path=shown)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        stem = f"{sha256}-{uuid.uuid4().hex[:12]}" if unique_name else sha256
        final = dest_dir / f"{stem}{safe_extension(client_name)}"
        created = not final.exists()
        if created:
            os.replace(tmp, final)
        else:
            tmp.unlink()  # the same bytes are already stored
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return StoredUpload(final, sha256, size, shown, created)
