"""Decode media files with PyAV: probe, re-timed RGB frames, mono audio, serving windows, clips.

Times are seconds from the container's start time (the earliest stream start), so streams keep
their offsets, and encoder delays FFmpeg removes (AAC priming samples, MP3 delay) do not shift
audio against video. Frames are resized while they are converted to RGB
(`VideoFrame.to_ndarray(width=..., height=..., format="rgb24")`) and only frames a caller uses
are converted. PyAV/FFmpeg failures surface as `avid_model.errors.MediaError` subclasses.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.container import InputContainer

from avid_model.errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaTooLargeError,
    MediaTooLongError,
    NoUsableStreamError,
    UnreadableMediaError,
)
from avid_model.features import PreprocessConfig

_EPS = 1e-6  # seconds; a frame stamped within this of a target time counts as "at" it
_AUDIO_PREROLL = 0.2  # seconds decoded before an audio seek target (MDCT codecs need overlap)
_TRUNCATION_SLACK = (1.0, 0.1)  # a stream may end this early (s, fraction) before "corrupt"
_AVFMT_NOTIMESTAMPS = 0x0080  # libavformat flag of raw streams (.h264): no seeking by time
_END_SLACK = 0.05  # s; container rounding (Matroska adds 1 ms) must not open a last window
_VIDEO_CHUNK = 16  # target frames per internal batch in decode_video
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


@dataclass(eq=False)
class MediaWindow:
    """One serving window: video (clip_frames, H, W, 3) uint8, audio (audio_samples,) float32.

    `video`/`audio` are None when the file has no such stream. `end` = start + audio length.
    """

    index: int
    start: float
    end: float
    video: torch.Tensor | None
    audio: torch.Tensor | None


@dataclass
class WindowStats:
    """Filled in by `iter_windows`: how much decoded data was held at once."""

    windows: int = 0
    max_buffered_frames: int = 0
    max_buffered_samples: int = 0


# ----------------------------------------------------------------------------- opening, errors


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
    if not p.is_file():
        raise FileNotFoundError(f"no such media file: {p}")
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


# ----------------------------------------------------------------------------- video


def _decode_from(
    container: InputContainer, stream: av.VideoStream | av.AudioStream, t: float
) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Decoded frames of `stream` in a fresh container from the keyframe at or before absolute
    time t (callers drop what comes before their target). Without a seek when t is at the
    stream's start (raw streams cannot seek); from the top if the seek yields nothing."""
    first = _seconds(stream.start_time, stream.time_base) or 0.0
    seekable = not container.format.flags & _AVFMT_NOTIMESTAMPS
    for attempt in ("seek", "top") if seekable and t > first + _EPS else ("start",):
        if attempt == "seek":
            with contextlib.suppress(av.error.FFmpegError):
                container.seek(math.floor(t / (stream.time_base or 1)), stream=stream)
        elif attempt == "top":
            with contextlib.suppress(av.error.FFmpegError):
                container.seek(0)
        produced = False
        for frame in container.decode(stream):
            if isinstance(frame, av.VideoFrame | av.AudioFrame):
                produced = True
                yield frame
        if produced:
            return


def _video_frames(
    container: InputContainer, stream: av.VideoStream, origin: float, start: float
) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """(time, duration, frame) of decoded frames from the keyframe at or before `start`."""
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    default_dur = 1.0 / float(rate) if rate else 0.0
    t, dur = 0.0, 0.0
    for frame in _decode_from(container, stream, origin + start):
        assert isinstance(frame, av.VideoFrame)
        pts = _seconds(frame.pts, frame.time_base)
        t = pts - origin if pts is not None else t + dur  # no timestamp: follow the previous
        dur = _seconds(frame.duration, frame.time_base) or default_dur
        yield t, dur, frame


def _output_size(stream: av.VideoStream, short_side: int | None) -> tuple[int, int]:
    """(width, height) after resizing the short side to `short_side` (display aspect kept)."""
    w, h = stream.codec_context.width, stream.codec_context.height
    sar = stream.codec_context.sample_aspect_ratio
    if sar and sar != 1:
        w = max(1, round(w * float(sar)))
    if short_side is None:
        return w, h
    if w <= h:
        return short_side, max(1, round(h * short_side / w))
    return max(1, round(w * short_side / h)), short_side


@dataclass
class _Decoded:
    time: float
    frame: av.VideoFrame
    rgb: np.ndarray | None = None  # (H, W, 3) uint8 once a target picked it


class _FrameSampler:
    """Buffer of decoded frames; for each target time picks the latest frame at or before it
    (the first frame for targets before it), converting each picked frame to RGB once."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path = path
        self.size = (width, height)
        self.reached_end = False  # set once the decoder ran out of frames
        self.entries: deque[_Decoded] = deque()
        self.max_len = 0
        self.end = -math.inf  # time + duration of the latest frame pushed

    def push(self, t: float, dur: float, frame: av.VideoFrame) -> None:
        self.entries.append(_Decoded(t, frame))
        self.max_len = max(self.max_len, len(self.entries))
        self.end = max(self.end, t + dur)

    def covers(self, t: float) -> bool:
        """True once a frame later than t has arrived, so the pick for t is final."""
        return bool(self.entries) and self.entries[-1].time > t + _EPS

    def drop_before(self, t: float) -> None:
        """Forget frames no target >= t can pick."""
        while len(self.entries) > 1 and self.entries[1].time <= t + _EPS:
            self.entries.popleft()

    def pick(self, targets: Iterable[float]) -> np.ndarray:
        """(len(targets), H, W, 3) uint8."""
        out = []
        for target in targets:
            chosen = self.entries[0]
            for entry in self.entries:
                if entry.time > target + _EPS:
                    break
                chosen = entry
            if chosen.rgb is None:
                w, h = self.size
                chosen.rgb = chosen.frame.to_ndarray(width=w, height=h, format="rgb24")
            out.append(chosen.rgb)
        return np.stack(out)


def _sample_video(
    frames: Iterator[tuple[float, float, av.VideoFrame]],
    windows: Iterator[list[float]],
    sampler: _FrameSampler,
    *,
    hold_past_end: bool,
) -> Iterator[np.ndarray]:
    """For each window (a list of target times, first targets non-decreasing), yield its frames
    (len, H, W, 3). Past the last frame: hold it (`hold_past_end`) or drop those targets."""
    pending = next(windows, None)
    for t, dur, frame in frames:
        if pending is None:
            return
        sampler.push(t, dur, frame)
        sampler.drop_before(pending[0])
        while pending is not None and sampler.covers(pending[-1]):
            yield sampler.pick(pending)
            pending = next(windows, None)
            if pending is not None:
                sampler.drop_before(pending[0])
    sampler.reached_end = True
    if not sampler.entries:
        raise EmptyMediaError("has a video stream without a decodable frame", path=sampler.path)
    while pending is not None:
        targets = pending if hold_past_end else [t for t in pending if t < sampler.end - _EPS]
        if targets:
            yield sampler.pick(targets)
        if len(targets) < len(pending):
            return
        pending = next(windows, None)


def _grid_chunks(start: float, fps: float, end: float | None) -> Iterator[list[float]]:
    """Target times start + k / fps (< end), in chunks of _VIDEO_CHUNK."""
    k = 0
    while True:
        chunk = [start + (k + i) / fps for i in range(_VIDEO_CHUNK)]
        if end is not None:
            chunk = [t for t in chunk if t < end - _EPS]
        if not chunk:
            return
        yield chunk
        k += _VIDEO_CHUNK


def _require_video(container: InputContainer, path: Path) -> av.VideoStream:
    stream = _video_stream(container)
    if stream is None:
        raise NoUsableStreamError("has no video stream", path=path)
    return stream


def decode_video(
    path: str | Path,
    *,
    fps: float = 16.0,
    short_side: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    limits: MediaLimits | None = None,
) -> torch.Tensor:
    """Frames re-timed to `fps`: (T, H, W, 3) uint8 RGB.

    Target k is at start + k / fps (for targets < `end`, or up to the end of the video stream)
    and shows the latest source frame stamped at or before it, so slower sources repeat frames
    and variable-frame-rate sources follow their real timestamps. With `short_side`, frames are
    resized while decoding so the short side has that length (aspect kept).
    """
    p = Path(path)
    with _open(p, limits or MediaLimits()) as (container, _):
        stream = _require_video(container, p)
        origin = _origin(container)
        width, height = _output_size(stream, short_side)
        sampler = _FrameSampler(p, width, height)
        frames = _video_frames(container, stream, origin, start)
        chunks = list(
            _sample_video(frames, _grid_chunks(start, fps, end), sampler, hold_past_end=False)
        )
        if sampler.reached_end:
            _check_complete(p, container, stream, sampler.end)
    if not chunks:
        return torch.empty((0, height, width, 3), dtype=torch.uint8)
    return torch.from_numpy(np.concatenate(chunks))


# ----------------------------------------------------------------------------- audio


def _audio_chunks(
    container: InputContainer,
    stream: av.AudioStream,
    origin: float,
    start: float,
    sample_rate: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first sample at `sample_rate`, mono float32 samples), from before `start`.

    Sample i of the output is at time i / sample_rate; the decoder's first frame after the
    seek fixes the position and the rest follows contiguously.
    """
    # rematrix_maxval=1 scales FFmpeg's downmix matrix to sum to 1: stereo -> (L + R) / 2.
    resampler = av.AudioResampler(
        format="flt", layout="mono", rate=sample_rate, options={"rematrix_maxval": "1.0"}
    )
    pos: int | None = None
    for frame in _decode_from(container, stream, origin + start - _AUDIO_PREROLL):
        assert isinstance(frame, av.AudioFrame)
        if pos is None:
            pts = _seconds(frame.pts, frame.time_base)
            pos = round((pts - origin if pts is not None else 0.0) * sample_rate)
        for out in resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1)
            yield pos, samples
            pos += samples.shape[0]
    if pos is not None:
        for out in resampler.resample(None):
            samples = out.to_ndarray().reshape(-1)
            yield pos, samples
            pos += samples.shape[0]


class _SampleBuffer:
    """Samples [start, stop) of a mono stream held as chunks; zeros fill gaps."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.start = start
        self.parts: list[np.ndarray] = []
        self.length = 0
        self.max_len = 0

    @property
    def stop(self) -> int:
        return self.start + self.length

    def _data(self) -> np.ndarray:
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)]
        return self.parts[0]

    def push(self, pos: int, samples: np.ndarray) -> None:
        if pos < self.stop:  # overlaps what is held (or seek pre-roll): keep the new part
            samples = samples[self.stop - pos :]
        elif pos > self.stop:  # a gap: silence, or nothing held yet
            if self.length == 0:
                self.start = pos
            else:
                self.parts.append(np.zeros(pos - self.stop, dtype=np.float32))
                self.length += pos - self.stop
        if samples.shape[0]:
            self.parts.append(samples)
            self.length += samples.shape[0]
        self.max_len = max(self.max_len, self.length)

    def drop_before(self, index: int) -> None:
        if index <= self.start:
            return
        data = self._data()[index - self.start :]
        self.parts, self.length, self.start = [data], data.shape[0], index

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) as float32 (b - a,), zero where nothing is held."""
        out = np.zeros(b - a, dtype=np.float32)
        lo, hi = max(a, self.start), min(b, self.stop)
        if hi > lo:
            out[lo - a : hi - a] = self._data()[lo - self.start : hi - self.start]
        return out


def _sample_audio(
    chunks: Iterator[tuple[int, np.ndarray]],
    windows: Iterator[tuple[int, int]],
    buffer: _SampleBuffer,
) -> Iterator[np.ndarray]:
    """For each window [a, b) of sample indices (a non-decreasing), yield its (b - a,)
    samples, zero-padded where the stream has none. Raises EmptyMediaError without samples."""
    pending = next(windows, None)
    decoded = False
    for pos, samples in chunks:
        decoded = True
        while pending is not None and pending[1] <= pos:  # window ends before this chunk
            yield buffer.take(*pending)
            pending = next(windows, None)
        if pending is None:
            return
        buffer.drop_before(pending[0])
        buffer.push(pos, samples)
        while pending is not None and buffer.stop >= pending[1]:
            yield buffer.take(*pending)
            pending = next(windows, None)
            if pending is not None:
                buffer.drop_before(pending[0])
    if not decoded:
        raise EmptyMediaError("has an audio stream without decodable samples", path=buffer.path)
    while pending is not None:
        yield buffer.take(*pending)
        pending = next(windows, None)


def _require_audio(container: InputContainer, path: Path) -> av.AudioStream:
    stream = _audio_stream(container)
    if stream is None:
        raise NoUsableStreamError("has no audio stream", path=path)
    return stream


def _read_audio(
    container: InputContainer,
    stream: av.AudioStream,
    path: Path,
    *,
    sample_rate: int,
    start: float,
    end: float | None,
) -> np.ndarray:
    """Mono samples (N,) from `start` to `end` or the stream's end (never padded past it)."""
    origin = _origin(container)
    a = round(start * sample_rate)
    b = round(end * sample_rate) if end is not None else None
    buffer = _SampleBuffer(path, a)
    decoded = False
    for pos, samples in _audio_chunks(container, stream, origin, start, sample_rate):
        decoded = True
        buffer.push(pos, samples)
        if b is not None and buffer.stop >= b:
            return buffer.take(a, b)
    if not decoded:
        raise EmptyMediaError("has an audio stream without decodable samples", path=path)
    _check_complete(path, container, stream, buffer.stop / sample_rate)
    return buffer.take(a, max(a, buffer.stop))


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int = 24000,
    start: float = 0.0,
    end: float | None = None,
    limits: MediaLimits | None = None,
) -> torch.Tensor:
    """Mono float32 waveform (N,) at `sample_rate` from `start` to `end` (or the stream end).

    FFmpeg's resampler downmixes and converts the rate; sample i is at start + i / sample_rate
    on the file's timeline (silence where the audio stream starts later than `start`).
    """
    p = Path(path)
    with _open(p, limits or MediaLimits()) as (container, _):
        stream = _require_audio(container, p)
        samples = _read_audio(container, stream, p, sample_rate=sample_rate, start=start, end=end)
    return torch.from_numpy(samples)


# ----------------------------------------------------------------------------- windows, clips


def _clip_targets(start: float, cfg: PreprocessConfig) -> list[float]:
    return [start + k / cfg.fps for k in range(cfg.clip_frames)]


def _video_windows(
    path: Path, starts: list[float], cfg: PreprocessConfig, limits: MediaLimits, stats: WindowStats
) -> Iterator[np.ndarray]:
    """(clip_frames, H, W, 3) per window start, streaming one pass over the video stream."""
    with _open(path, limits) as (container, _):
        stream = _require_video(container, path)
        origin = _origin(container)
        sampler = _FrameSampler(path, *_output_size(stream, cfg.resize_short))
        frames = _video_frames(container, stream, origin, 0.0)
        windows = (_clip_targets(s, cfg) for s in starts)
        for clip in _sample_video(frames, windows, sampler, hold_past_end=True):
            stats.max_buffered_frames = max(stats.max_buffered_frames, sampler.max_len)
            yield clip
        if sampler.reached_end:
            _check_complete(path, container, stream, sampler.end)


def _audio_windows(
    path: Path, starts: list[float], cfg: PreprocessConfig, limits: MediaLimits, stats: WindowStats
) -> Iterator[np.ndarray]:
    """(audio_samples,) per window start, streaming one pass over the audio stream."""
    with _open(path, limits) as (container, _):
        stream = _require_audio(container, path)
        origin = _origin(container)
        sr, n = cfg.sample_rate, cfg.audio_samples
        buffer = _SampleBuffer(path, 0)
        chunks = _audio_chunks(container, stream, origin, 0.0, sr)
        windows = ((round(s * sr), round(s * sr) + n) for s in starts)
        for samples in _sample_audio(chunks, windows, buffer):
            stats.max_buffered_samples = max(stats.max_buffered_samples, buffer.max_len)
            yield samples
        _check_complete(path, container, stream, buffer.stop / sr)


def iter_windows(
    path: str | Path,
    *,
    preprocess: PreprocessConfig,
    hop: float = 1.0,
    limits: MediaLimits | None = None,
    stats: WindowStats | None = None,
) -> Iterator[MediaWindow]:
    """Stream serving windows over a whole file, in one streaming pass per stream.

    Window i starts at i * hop, for every start more than 50 ms before the file's end (at
    least one window);
    video: (clip_frames, H, W, 3) uint8 from the window start, short side `resize_short` (the
    last frame held past the end of the stream); audio: (audio_samples,) float32 from the
    window start, zero-padded past the end. A missing stream gives None. Only frames and
    samples that pending windows still need are kept (see `stats`). Raises a MediaError; a
    truncated file raises CorruptMediaError when decoding reaches the missing part.
    """
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    p = Path(path)
    limits = limits or MediaLimits()
    stats = stats if stats is not None else WindowStats()
    info = probe(p, limits)
    count = max(1, math.ceil((info.duration - _END_SLACK) / hop))
    starts = [i * hop for i in range(count)]
    videos = _video_windows(p, starts, preprocess, limits, stats) if info.has_video else None
    audios = _audio_windows(p, starts, preprocess, limits, stats) if info.has_audio else None
    for i, s in enumerate(starts):
        video = next(videos) if videos is not None else None
        audio = next(audios) if audios is not None else None
        stats.windows = i + 1
        yield MediaWindow(
            index=i,
            start=s,
            end=s + preprocess.audio_seconds,
            video=torch.from_numpy(video) if video is not None else None,
            audio=torch.from_numpy(audio) if audio is not None else None,
        )
    for rest in (videos, audios):  # run each stream to its end: truncation check, cleanup
        if rest is not None:
            for _ in rest:
                pass


def read_clip(
    path: str | Path,
    *,
    video_start: float,
    audio_start: float,
    preprocess: PreprocessConfig,
    limits: MediaLimits | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One training sample by seeking: video (clip_frames, H, W, 3) uint8 from `video_start`
    (short side `resize_short`, last frame held past the end) and audio (audio_samples,)
    float32 from `audio_start` (zero-padded). None for a stream the file does not have."""
    p = Path(path)
    cfg = preprocess
    limits = limits or MediaLimits()
    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    with _open(p, limits) as (container, info):
        v_stream = _video_stream(container)
        if v_stream is not None:
            sampler = _FrameSampler(p, *_output_size(v_stream, cfg.resize_short))
            frames = _video_frames(container, v_stream, _origin(container), video_start)
            windows = iter([_clip_targets(video_start, cfg)])
            video = torch.from_numpy(
                next(_sample_video(frames, windows, sampler, hold_past_end=True))
            )
            if sampler.reached_end:
                _check_complete(p, container, v_stream, sampler.end)
    if info.has_audio:
        with _open(p, limits) as (container, _):  # a fresh demuxer for the second stream
            samples = _read_audio(
                container,
                _require_audio(container, p),
                p,
                sample_rate=cfg.sample_rate,
                start=audio_start,
                end=audio_start + cfg.audio_seconds,
            )
        padded = np.zeros(cfg.audio_samples, dtype=np.float32)
        padded[: samples.shape[0]] = samples[: cfg.audio_samples]
        audio = torch.from_numpy(padded)
    return video, audio
