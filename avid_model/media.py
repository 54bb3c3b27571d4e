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
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from av.container import InputContainer

from avid_model.errors import (
    EmptyMediaError,
    NoUsableStreamError,
)
from avid_model.features import PreprocessConfig
from avid_model.media_probe import (
    _AVFMT_NOTIMESTAMPS,
    MediaInfo,
    MediaLimits,
    _audio_stream,
    _check_complete,
    _open,
    _origin,
    _seconds,
    _video_stream,
    probe,
)

__all__ = [
    "MediaInfo",
    "MediaLimits",
    "MediaWindow",
    "WindowStats",
    "decode_audio",
    "decode_video",
    "iter_windows",
    "probe",
    "read_clip",
    "window_starts",
]

_EPS = 1e-6  # seconds; a frame stamped within this of a target time counts as "at" it
_AUDIO_PREROLL = 0.2  # seconds decoded before an audio seek target (MDCT codecs need overlap)
_END_SLACK = 0.05  # s; container rounding (Matroska adds 1 ms) must not open a last window
_VIDEO_CHUNK = 16  # target frames per internal batch in decode_video


@dataclass(eq=False)
class MediaWindow:
    """One serving window: video (clip_frames, H, W, 3) uint8, audio (audio_samples,) float32.

    `video`/`audio` are None when the file has no such stream. `end` = start + audio length,
    or the file's end when that comes first (the audio past it is zero padding).
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


def window_starts(duration: float, hop: float, length: float) -> list[float]:
    """Serving window starts over a file of ``duration`` s: 0, hop, 2 hop, ... while a window
    of ``length`` s fits, then a last one ending at the file's end where the hops stop more
    than 50 ms short of it. One window at 0 when the file is not longer than one window."""
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    room = duration - length  # latest start of a window that fits
    if room <= _END_SLACK:
        return [0.0]
    starts = [i * hop for i in range(math.floor(room / hop + 1e-9) + 1)]
    if room - starts[-1] > _END_SLACK:
        starts.append(round(room, 6))
    return starts


def iter_windows(
    path: str | Path,
    *,
    preprocess: PreprocessConfig,
    hop: float = 1.0,
    limits: MediaLimits | None = None,
    stats: WindowStats | None = None,
    streams: frozenset[str] = frozenset({"video", "audio"}),
    info: MediaInfo | None = None,
) -> Iterator[MediaWindow]:
    """Stream serving windows over a whole file, in one streaming pass per stream.

    Only the ``streams`` asked for are decoded (an audio embedding of a video file never
    decodes a frame; the other stream's field is None). ``info``: the file's probe, when the
    caller has it already (the file is then not probed again).

    Windows start at ``window_starts(duration, hop, audio_seconds)``: every hop while a window
    fits in the file, then one that ends at the file's end (a file shorter than a window gets
    one window at 0); so a window runs past the file only when the file is shorter than it
    (a padded window is out of the training distribution: silence the model never heard);
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
    info = info if info is not None else probe(p, limits)
    starts = window_starts(info.duration, hop, preprocess.audio_seconds)
    want_video = info.has_video and "video" in streams
    want_audio = info.has_audio and "audio" in streams
    videos = _video_windows(p, starts, preprocess, limits, stats) if want_video else None
    audios = _audio_windows(p, starts, preprocess, limits, stats) if want_audio else None
    for i, s in enumerate(starts):
        video = next(videos) if videos is not None else None
        audio = next(audios) if audios is not None else None
        stats.windows = i + 1
        yield MediaWindow(
            index=i,
            start=s,
            end=min(s + preprocess.audio_seconds, max(info.duration, s)),
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
