"""Errors raised for media a user handed in that cannot be used.

Each class carries a short machine-readable `code`; the service maps `too_long` and `too_large`
to HTTP 413 and every other code to 422. Messages name the file's base name and, for limits,
the limit and the actual value.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(Exception):
    """A media file that cannot be used; `code` says why, `str(err)` says it to a person."""

    code: str = "media_error"

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.filename = Path(path).name if path is not None else None
        self.message = f"{self.filename}: {message}" if self.filename else message
        super().__init__(self.message)


class UnreadableMediaError(MediaError):
    """Not a media file, or FFmpeg cannot open it."""

    code = "unreadable"


class CorruptMediaError(MediaError):
    """The file opens but decoding fails part-way (truncated or damaged data)."""

    code = "corrupt"


class EmptyMediaError(MediaError):
    """Zero bytes, or a stream without a single frame or sample."""

    code = "empty"


class NoUsableStreamError(MediaError):
    """No video stream where video is required, or no audio stream where audio is required."""

    code = "no_stream"


class MediaTooLongError(MediaError):
    """Duration over the configured limit."""

    code = "too_long"


class MediaTooLargeError(MediaError):
    """Resolution or file size over the configured limit."""

    code = "too_large"


__all__ = [
    "CorruptMediaError",
    "EmptyMediaError",
    "MediaError",
    "MediaTooLargeError",
    "MediaTooLongError",
    "NoUsableStreamError",
    "UnreadableMediaError",
]
