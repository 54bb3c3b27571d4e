"""An item's kept file, for people: the file itself (to play it) and a picture of it (JPEG).

Framework-free: ``kept_file`` finds the upload kept as ``media/<sha256><ext>``; ``poster_jpeg``
decodes one picture near a time with PyAV and encodes it as a JPEG (Pillow), scaled down;
``waveform_jpeg`` draws a sound's waveform (its peaks per pixel column); ``item_poster``
gives an item's picture, decoded once and then read from its cache file
(``media/posters/<sha256>/<kind>-<at ms|mid>.jpg``, at most ``MAX_CACHED_POSTERS`` per file;
removed with the kept media: ``services.media_files``).
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from avid_model.errors import CorruptMediaError
from avid_model.media import decode_audio
from services.errors import NotFound
from services.index import IndexStore, ItemNotFound, ItemRecord
from services.media_files import content_hash_of, poster_dir

POSTER_MAX_SIDE = 320
JPEG_QUALITY = 80
MAX_CACHED_POSTERS = 32  # per kept file: other times are decoded on each request

# The media types of the suffixes a kept file can have (mimetypes lacks a few of them).
_MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
}


@dataclass(frozen=True)
class KeptFile:
    path: Path
    media_type: str
    record: ItemRecord


def media_type_of(path: Path, kind: str) -> str:
    suffix = path.suffix.lower()
    guessed = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    return guessed or ("video/mp4" if kind == "video" else "application/octet-stream")


def kept_file(store: IndexStore, media_dir: Path, item_id: str) -> KeptFile:
    """The item's kept upload; ``ItemNotFound``, or ``NotFound`` (code ``no_media``) when the
    file is gone (removed by hand, say)."""
    record = store.get(item_id)
    if record is None:
        raise ItemNotFound(item_id)
    for path in sorted(media_dir.glob(f"{record.content_hash}*")):
        if content_hash_of(path) == record.content_hash and path.is_file():
            return KeptFile(path, media_type_of(path, record.kind), record)
    raise NotFound(f"the media file of item {item_id!r} is not kept", code="no_media")


def poster_jpeg(path: Path, at: float, max_side: int = POSTER_MAX_SIDE) -> bytes:
    """A JPEG of the first picture at or after ``at`` seconds (the last one when the file
    ends before), at most ``max_side`` pixels on its longer side. ``NotFound`` (code
    ``no_video``) for a file without pictures."""
    try:
        return _poster(path, at, max_side)
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"no poster could be decoded: {exc}", path=path.name) from exc


def _poster(path: Path, at: float, max_side: int) -> bytes:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise NotFound("this item has no pictures (an audio file)", code="no_video")
        stream = container.streams.video[0]
        if at > 0 and stream.time_base is not None:
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is None or frame.time >= at:
                break
        if chosen is None:
            raise NotFound("no picture could be decoded from the file", code="no_video")
        scale = min(1.0, max_side / max(chosen.width, chosen.height))
        width, height = max(1, round(chosen.width * scale)), max(1, round(chosen.height * scale))
        image = chosen.to_image(width=width, height=height)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


WAVEFORM_SIZE = (320, 120)
WAVEFORM_RATE = 8000
_BACKGROUND = (250, 250, 250)
_INK = (43, 108, 176)


def waveform_jpeg(path: Path, size: tuple[int, int] = WAVEFORM_SIZE) -> bytes:
    """A JPEG of the file's sound: for each pixel column, a bar from the lowest to the
    highest sample of its stretch of time (full height = full scale)."""
    width, height = size
    samples = decode_audio(path, sample_rate=WAVEFORM_RATE).numpy()
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    middle = (height - 1) / 2
    if samples.size:
        columns = np.array_split(np.clip(samples, -1.0, 1.0), width)
        for x, column in enumerate(columns):
            if column.size == 0:
                continue
            top = middle - float(column.max()) * middle
            bottom = middle - float(column.min()) * middle
            draw.line([(x, round(top)), (x, round(bottom))], fill=_INK)
    draw.line([(0, round(middle)), (width - 1, round(middle))], fill=_INK)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def item_poster(media_dir: Path, kept: KeptFile, at: float | None) -> bytes:
    """The item's picture (``waveform_jpeg`` of a sound, else ``poster_jpeg`` at ``at``,
    default mid-file), from its cache file when an earlier request made it."""
    record = kept.record
    when = record.duration / 2 if at is None else min(at, record.duration)
    # a waveform does not depend on the time
    name = "audio.jpg" if record.kind == "audio" else f"video-{round(when * 1000)}.jpg"
    folder = poster_dir(media_dir, record.content_hash)
    cached = folder / name
    with contextlib.suppress(FileNotFoundError):
        return cached.read_bytes()
    jpeg = waveform_jpeg(kept.path) if record.kind == "audio" else poster_jpeg(kept.path, when)
    folder.mkdir(parents=True, exist_ok=True)
    if len(os.listdir(folder)) < MAX_CACHED_POSTERS:
        _write_atomically(cached, jpeg)
    return jpeg


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: a
    reader sees the whole file or none."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".poster-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
