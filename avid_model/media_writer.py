"""Write real media files with PyAV (test fixtures, synthetic data sets, benchmarks).

`write_media` encodes an RGB frame array and/or a float waveform into the container named by the
file's extension (.mp4, .mkv, .mov, .webm, .wav, .flac, .mp3, .ogg, .m4a, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Audio codec used when the caller keeps the default ("aac") but the container cannot hold AAC.
_AUDIO_CODEC_FOR_EXT: dict[str, tuple[str, ...]] = {
    ".wav": ("pcm_s16le",),
    ".flac": ("flac",),
    ".mp3": ("libmp3lame", "mp3"),
    ".ogg": ("libvorbis", "vorbis", "libopus", "opus"),
    ".oga": ("libvorbis", "vorbis", "libopus", "opus"),
    ".opus": ("libopus", "opus"),
    ".webm": ("libopus", "opus", "libvorbis", "vorbis"),
}
# Video codec used when the caller keeps the default ("libx264") but the container cannot hold it.
_VIDEO_CODEC_FOR_EXT: dict[str, tuple[str, ...]] = {
    ".webm": ("libvpx-vp9", "libvpx"),
}
_LAYOUT_FOR_CHANNELS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
_DEFAULT_VIDEO_CODEC = "libx264"
_DEFAULT_AUDIO_CODEC = "aac"
_PTS_TIME_BASE = Fraction(1, 90000)  # used when explicit frame times are given (VFR)


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        return False
    return True


def _resolve_codec(
    requested: str, default: str, ext: str, table: dict[str, tuple[str, ...]]
) -> str:
    """The requested codec, or the container's natural one when the caller kept the default."""
    if requested != default or ext not in table:
        return requested
    for name in table[ext]:
        if _has_encoder(name):
            return name
    raise ValueError(f"no encoder available for {ext} (tried {', '.join(table[ext])})")


def _even(rgb: np.ndarray) -> np.ndarray:
    """Pad one (H, W, 3) frame to even H and W by repeating the last row/column (yuv420p)."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if pad_h or pad_w:
        return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(rgb)


def _add_video_stream(
    container: av.container.OutputContainer,
    codec: str,
    video: np.ndarray,
    fps: float,
    crf: int,
    variable_rate: bool,
    keyframe_interval: int | None,
) -> av.VideoStream:
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    if not isinstance(stream, av.VideoStream):
        raise ValueError(f"{codec} is not a video encoder")
    stream.width = video.shape[2] + video.shape[2] % 2
    stream.height = video.shape[1] + video.shape[1] % 2
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = _PTS_TIME_BASE if variable_rate else 1 / rate
    if keyframe_interval is not None:
        stream.codec_context.gop_size = keyframe_interval
    if codec in ("libx264", "libx265"):
        stream.options = {"crf": str(crf), "preset": "veryfast"}
    elif codec in ("libvpx", "libvpx-vp9"):
        stream.options = {"crf": str(crf + 10), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return stream


def _add_audio_stream(
    container: av.container.OutputContainer,
    codec: str,
    channels: int,
    sample_rate: int,
    bitrate: int | None,
) -> av.AudioStream:
    stream = container.add_stream(codec, rate=sample_rate)
    if not isinstance(stream, av.AudioStream):
        raise ValueError(f"{codec} is not an audio encoder")
    stream.layout = _LAYOUT_FOR_CHANNELS.get(channels, f"{channels}c")
    ctx = stream.codec_context
    if ctx.codec.experimental:
        ctx.options = {**ctx.options, "strict": "experimental"}
    formats = ctx.codec.audio_formats
    if formats:
        float_fmts = [f for f in formats if f.name in ("fltp", "flt")]
        stream.format = (float_fmts or list(formats))[0]
    if bitrate is not None and codec not in ("pcm_s16le", "flac"):
        stream.bit_rate = bitrate
    return stream


def _video_frames(
    stream: av.VideoStream, video: np.ndarray, fps: float, pts: Sequence[float] | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time in s, frame) for each RGB frame, stamped k / fps or with the given times."""
    for k, rgb in enumerate(video):
        frame = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")
        if pts is None:
            frame.pts = k
            frame.time_base = stream.codec_context.time_base
            yield k / fps, frame
        else:
            frame.pts = round(float(pts[k]) / _PTS_TIME_BASE)
            frame.time_base = _PTS_TIME_BASE
            yield float(pts[k]), frame


def _audio_frames(
    stream: av.AudioStream, audio: np.ndarray, sample_rate: int
) -> Iterator[tuple[float, av.AudioFrame | None]]:
    """(time in s, frame) for the (C, N) waveform in blocks; a final None flushes the resampler."""
    layout = stream.layout.name
    chunk = 2048
    for offset in range(0, audio.shape[1], chunk):
        block = np.ascontiguousarray(audio[:, offset : offset + chunk])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        yield offset / sample_rate, frame
    yield audio.shape[1] / sample_rate, None


def _encode_interleaved(
    container: av.container.OutputContainer,
    v_stream: av.VideoStream | None,
    v_frames: Iterator[tuple[float, av.VideoFrame]],
    a_stream: av.AudioStream | None,
    a_frames: Iterator[tuple[float, av.AudioFrame | None]],
    sample_rate: int,
) -> None:
    """Encode both streams in time order so the file is interleaved like a real recording."""
    resampler = None
    if a_stream is not None:
        resampler = av.AudioResampler(
            format=a_stream.format.name,
            layout=a_stream.layout.name,
            rate=sample_rate,
            frame_size=a_stream.codec_context.frame_size or None,
        )
    next_v = next(v_frames, None)
    next_a = next(a_frames, None)
    while next_v is not None or next_a is not None:
        if next_v is not None and (next_a is None or next_v[0] <= next_a[0]):
            assert v_stream is not None
            container.mux(v_stream.encode(next_v[1]))
            next_v = next(v_frames, None)
        elif next_a is not None:
            assert a_stream is not None
            assert resampler is not None
            for out in resampler.resample(next_a[1]):
                container.mux(a_stream.encode(out))
            next_a = next(a_frames, None)
    if v_stream is not None:
        container.mux(v_stream.encode(None))
    if a_stream is not None:
        container.mux(a_stream.encode(None))


def write_media(
    path: str | Path,
    *,
    video: np.ndarray | None = None,
    fps: float = 16.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 24000,
    video_codec: str = _DEFAULT_VIDEO_CODEC,
    audio_codec: str = _DEFAULT_AUDIO_CODEC,
    crf: int = 23,
    audio_bitrate: int | None = 128_000,
    pts: Sequence[float] | None = None,
    keyframe_interval: int | None = None,
) -> None:
    """Encode frames and/or a waveform into a real media file.

    Args:
        path: output file; its extension picks the container (.mp4, .mkv, .webm, .wav, .mp3...).
        video: (T, H, W, 3) uint8 RGB frames, or None for an audio-only file. Odd H or W are
            padded to even by repeating the last row/column (yuv420p needs even sizes).
        fps: nominal frame rate; frame k is stamped k / fps unless `pts` is given.
        audio: (C, N) or (N,) float waveform in [-1, 1] (clipped), or None for video only.
        sample_rate: audio sample rate in Hz.
        video_codec: encoder name; the default libx264 becomes VP9 for .webm.
        audio_codec: encoder name; the default aac becomes the container's natural codec for
            .wav (pcm_s16le), .flac (flac), .mp3 (libmp3lame), .ogg (vorbis), .webm (opus).
        crf: constant rate factor for x264 (VP9 gets crf + 10).
        audio_bitrate: bits per second for lossy audio codecs (None: the encoder's default).
        pts: optional (T,) increasing frame times in seconds, for variable-frame-rate files.
        keyframe_interval: frames between keyframes (None: the encoder's default, 250 for x264).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if video is None and audio is None:
        raise ValueError("write_media needs video, audio or both")
    if video is not None:
        video = np.asarray(video)
        if video.ndim != 4 or video.shape[3] != 3 or video.dtype != np.uint8:
            raise ValueError(f"video must be (T, H, W, 3) uint8, got {video.shape} {video.dtype}")
        if pts is not None and len(pts) != video.shape[0]:
            raise ValueError(f"pts has {len(pts)} entries for {video.shape[0]} frames")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None, :]
        if audio.ndim != 2:
            raise ValueError(f"audio must be (C, N) or (N,), got {audio.shape}")
        audio = np.clip(audio, -1.0, 1.0)

    with av.open(str(path), mode="w") as container:
        v_stream = a_stream = None
        if video is not None:
            v_codec = _resolve_codec(video_codec, _DEFAULT_VIDEO_CODEC, ext, _VIDEO_CODEC_FOR_EXT)
            v_stream = _add_video_stream(
                container, v_codec, video, fps, crf, pts is not None, keyframe_interval
            )
        if audio is not None:
            a_codec = _resolve_codec(audio_codec, _DEFAULT_AUDIO_CODEC, ext, _AUDIO_CODEC_FOR_EXT)
            if a_codec == "vorbis" and audio.shape[0] == 1:
                audio = np.repeat(audio, 2, axis=0)  # FFmpeg's own Vorbis encoder is stereo-only
            a_stream = _add_audio_stream(
                container, a_codec, audio.shape[0], sample_rate, audio_bitrate
            )
        v_frames = (
            _video_frames(v_stream, video, fps, pts)
            if v_stream is not None and video is not None
            else iter(())
        )
        a_frames = (
            _audio_frames(a_stream, audio, sample_rate)
            if a_stream is not None and audio is not None
            else iter(())
        )
        _encode_interleaved(container, v_stream, v_frames, a_stream, a_frames, sample_rate)
