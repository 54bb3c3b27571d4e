"""Open media files with PyAV: header checks, limits, stream lookup and `probe`.

Times are seconds from the container's start (the video stream's start, else the audio's).
PyAV/FFmpeg failures surface as `avid_model.errors.MediaError` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer

from avid_model.errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaTooLargeError,
    MediaTooLongError,
    NoUsableStreamError,
    UnreadableMediaError,
)

_TRUNCATION_SLACK = (1.0, 0.1)  # a stream may end this early (s, fraction) before "corrupt"
_AVFMT_NOTIMESTAMPS = 0x0080  # libavformat flag of raw streams (.h264): no seeking by time
# First bytes of containers FFmpeg knows; an unopenable file that starts like this is damaged.
_MAGIC = (b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"fLaC", b"ID3", b"FORM", b"\x00\x00\x01\xba")
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


@dataclass(frozen=True)
class MediaLimits:
    """Size limits for user media; exceeding one raises MediaTooLongError/MediaTooLargeError."""

    max_duration_s: float = 3600.0
    max_pixels: int = 3840 * 2160
    max_file_bytes: int = 2 * 1024**3


@dataclass(frozen=True)
class MediaInfo:
    """What the container headers say (no decoding). Sizes in pixels, rates in Hz / fps."""

    duration: float
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    video_codec: str | None
    audio_codec: str | None
    format_name: str
    file_bytes: int


def _looks_like_media(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(12)
    return head.startswith(_MAGIC) or head[4:8] in _ISO_BOXES or head[:2] == b"\xff\xfb"


@contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    """Turn FFmpeg failures while demuxing/decoding into CorruptMediaError."""
    try:
        yield
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"decoding failed part-way ({exc.strerror})", path=path) from exc


def _video_stream(container: InputContainer) -> av.VideoStream | None:
    """The first decodable video stream that is not cover art."""
    for s in container.streams.video:
        if s.codec_context is not None and not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _audio_stream(container: InputContainer) -> av.AudioStream | None:
    """The first decodable audio stream."""
    return next((s for s in container.streams.audio if s.codec_context is not None), None)


def _origin(container: InputContainer) -> float:
    """Time zero of the file in seconds: the start of the video stream (else the audio, else
    the container). Other streams keep their offset to it, so encoder delay that a container
    stores as an earlier audio start (AAC in MPEG-TS) does not shift audio against video."""
    for stream in (_video_stream(container), _audio_stream(container)):
        start = _seconds(stream.start_time, stream.time_base) if stream is not None else None
        if start is not None:
            return start
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    """A timestamp in seconds, or None when either part is unknown."""
    return float(value * time_base) if value is not None and time_base is not None else None


def _scan_duration(path: Path) -> float:
    """Seconds to the end of the last packet, demuxing without decoding (for inputs whose
    headers give no duration, such as raw elementary streams)."""
    ends: dict[int, float] = {}
    with av.open(str(path)) as container:
        origin = _origin(container)
        for packet in container.demux():
            dur = _seconds(packet.duration, packet.time_base) or 0.0
            pts = _seconds(packet.pts, packet.time_base)
            end = ends.get(packet.stream.index, 0.0)
            ends[packet.stream.index] = (
                max(end, pts - origin + dur) if pts is not None else end + dur
            )
    return max(ends.values(), default=0.0)


def _duration(container: InputContainer, path: Path) -> float:
    """From the container, else the longest stream, else a demux scan."""
    if container.duration is not None:
        return container.duration / av.time_base
    ends = [_seconds(s.duration, s.time_base) for s in container.streams]
    known = [e for e in ends if e is not None]
    return max(known) if known else _scan_duration(path)


def _info(container: InputContainer, path: Path, file_bytes: int) -> MediaInfo:
    v, a = _video_stream(container), _audio_stream(container)
    rate = (v.average_rate or v.guessed_rate) if v is not None else None
    return MediaInfo(
        duration=_duration(container, path),
        has_video=v is not None,
        has_audio=a is not None,
        width=v.codec_context.width if v is not None else None,
        height=v.codec_context.height if v is not None else None,
        fps=float(rate) if rate else None,
        sample_rate=a.codec_context.sample_rate if a is not None else None,
        channels=a.codec_context.channels if a is not None else None,
        video_codec=v.codec_context.name if v is not None else None,
        audio_codec=a.codec_context.name if a is not None else None,
        format_name=container.format.name,
        file_bytes=file_bytes,
    )


def _check_limits(
    container: InputContainer, info: MediaInfo, limits: MediaLimits, path: Path
) -> None:
    if not info.has_video and not info.has_audio:
        if container.streams.video or container.streams.audio:
            raise UnreadableMediaError("has no audio or video stream FFmpeg can decode", path=path)
        raise NoUsableStreamError("has neither a video nor an audio stream", path=path)
    if info.duration > limits.max_duration_s:
        raise MediaTooLongError(
            f"lasts {info.duration:.1f} s, over the limit of {limits.max_duration_s:.0f} s",
            path=path,
        )
    pixels = (info.width or 0) * (info.height or 0)
    if pixels > limits.max_pixels:
        raise MediaTooLargeError(
            f"video is {info.width}x{info.height} ({pixels} pixels), "
            f"over the limit of {limits.max_pixels} pixels",
            path=path,
        )


@contextmanager
def _open(path: str | Path, limits: MediaLimits) -> Iterator[tuple[InputContainer, MediaInfo]]:
    """Open a media file, check it against `limits`; FFmpeg errors inside become MediaErrors."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such media file: {p}")
    if not p.is_file():
        what = "a directory" if p.is_dir() else "not a regular file"
        raise UnreadableMediaError(f"is {what}, not a media file", path=p)
    size = p.stat().st_size
    if size == 0:
        raise EmptyMediaError("is empty (0 bytes)", path=p)
    if size > limits.max_file_bytes:
        raise MediaTooLargeError(
            f"is {size} bytes, over the limit of {limits.max_file_bytes} bytes", path=p
        )
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_media(p):
            raise CorruptMediaError(
                f"looks like a media file but FFmpeg cannot read it; truncated or damaged "
                f"({exc.strerror})",
                path=p,
            ) from exc
        raise UnreadableMediaError("is not a media file FFmpeg can open", path=p) from exc
    try:
        with _decode_errors(p):
            info = _info(container, p, size)
            _check_limits(container, info, limits, p)
            yield container, info
    finally:
        container.close()


def _check_complete(
    path: Path,
    container: InputContainer,
    stream: av.VideoStream | av.AudioStream,
    decoded_end: float,
) -> None:
    """Raise CorruptMediaError when a stream ended well before its declared end (truncation)."""
    declared: float | None = None
    if stream.duration is not None:
        begin = _seconds(stream.start_time, stream.time_base) or 0.0
        declared = begin + (_seconds(stream.duration, stream.time_base) or 0.0) - _origin(container)
    elif "DURATION" in stream.metadata:  # Matroska/WebM per-track duration tag
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")
        declared = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    elif len(container.streams) == 1 and container.duration is not None:
        declared = container.duration / av.time_base
    if declared is None:
        return
    slack = max(_TRUNCATION_SLACK[0], _TRUNCATION_SLACK[1] * declared)
    if decoded_end < declared - slack:
        raise CorruptMediaError(
            f"{stream.type} stream ends at {decoded_end:.2f} s but should last "
            f"{declared:.2f} s; the file looks truncated",
            path=path,
        )


def probe(path: str | Path, limits: MediaLimits | None = None) -> MediaInfo:
    """Read the headers of a media file and check it against `limits` (default MediaLimits())."""
    with _open(path, limits or MediaLimits()) as (_, info):
        if info.duration <= 0:
            raise EmptyMediaError("contains no frames or samples", path=path)
        return info
