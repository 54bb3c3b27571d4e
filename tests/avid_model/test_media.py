"""Decoding real files written with PyAV: timing, resizing, audio alignment, windows, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avid_model.errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaTooLargeError,
    MediaTooLongError,
    NoUsableStreamError,
    UnreadableMediaError,
)
from avid_model.features import PreprocessConfig
from avid_model.media import (
    MediaLimits,
    WindowStats,
    decode_audio,
    decode_video,
    iter_windows,
    probe,
    read_clip,
    window_starts,
)
from avid_model.media_writer import write_media
from tests.avid_model.media_fixtures import (
    av_file,
    clicks,
    first_click,
    frame_indices,
    index_frames,
    sine,
)

CFG = PreprocessConfig()
SR = CFG.sample_rate


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def mp4_25fps(media_dir: Path) -> Path:
    """3 s, 25 fps, 64x48 H.264 + 48 kHz stereo AAC, clicks at 1.0 s and 2.3 s, GOP 10."""
    return av_file(
        media_dir / "a25.mp4", seconds=3.0, fps=25, click_times=(1.0, 2.3), keyframe_interval=10
    )


# ----------------------------------------------------------------------------- probe


def test_probe_reports_streams(mp4_25fps: Path) -> None:
    info = probe(mp4_25fps)
    assert info.has_video
    assert info.has_audio
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(25.0)
    assert info.sample_rate == 48000
    assert info.channels == 2
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert info.file_bytes == mp4_25fps.stat().st_size


def test_probe_audio_only_flac(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    write_media(path, audio=sine(1.5, 44100, 440), sample_rate=44100)
    info = probe(path)
    assert not info.has_video
    assert info.has_audio
    assert info.width is None
    assert info.sample_rate == 44100
    assert info.duration == pytest.approx(1.5, abs=0.01)


# ----------------------------------------------------------------------------- video timing


@pytest.mark.parametrize("src_fps", [25.0, 10.0])
def test_decode_video_retimes_to_16fps(tmp_path: Path, src_fps: float) -> None:
    path = tmp_path / f"v{src_fps:.0f}.mp4"
    write_media(path, video=index_frames(round(2.0 * src_fps)), fps=src_fps)
    frames = decode_video(path, fps=16.0)
    assert frames.dtype == torch.uint8
    assert frames.shape == (32, 48, 64, 3)  # 2 s at 16 fps
    # target k at k/16 s shows the latest source frame at or before it
    expected = [math.floor(k / 16 * src_fps + 1e-9) for k in range(32)]
    assert frame_indices(frames) == expected
    if src_fps < 16:
        assert len(set(expected)) < len(expected)  # a slower source repeats frames


def test_variable_frame_rate_uses_real_timestamps(tmp_path: Path) -> None:
    times = [0.0, 0.02, 0.31, 0.33, 0.5, 0.95, 1.0, 1.2, 1.4, 1.43]
    path = tmp_path / "vfr.mkv"
    write_media(path, video=index_frames(len(times)), fps=10.0, pts=times)
    frames = decode_video(path, fps=16.0, end=1.5)
    targets = [k / 16 for k in range(24)]
    expected = [max(i for i, t in enumerate(times) if t <= target + 1e-9) for target in targets]
    assert frame_indices(frames) == expected


def test_seek_start_end_matches_full_decode(mp4_25fps: Path) -> None:
    native = decode_video(mp4_25fps, fps=25.0)  # every source frame once
    assert frame_indices(native) == list(range(75))
    part = decode_video(mp4_25fps, start=1.3, end=2.0)  # seeks to the keyframe at 1.2 s
    expected = [math.floor((1.3 + k / 16) * 25 + 1e-9) for k in range(12)]  # 1.3 + k/16 < 2
    assert frame_indices(part) == expected
    assert torch.equal(part, native[expected])


def test_resize_while_decoding_keeps_aspect(tmp_path: Path, mp4_25fps: Path) -> None:
    assert decode_video(mp4_25fps, short_side=32, end=0.5).shape == (8, 32, 43, 3)
    portrait = tmp_path / "portrait.mp4"
    write_media(portrait, video=index_frames(8, height=90, width=50), fps=16)
    assert decode_video(portrait, short_side=128).shape == (8, 230, 128, 3)


def test_odd_size_video_is_written_and_decoded(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    write_media(path, video=index_frames(5, height=33, width=45), fps=16)
    frames = decode_video(path)
    assert frames.shape[1:] == (34, 46, 3)  # padded to even for yuv420p
    assert frame_indices(frames) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize(
    ("name", "sample_rate", "channels"),
    [
        ("c.mp4", 48000, 2),
        ("c.m4a", 44100, 1),
        ("c.mkv", 44100, 6),
        ("c.wav", 44100, 2),
        ("c.flac", 48000, 1),
        ("c.mp3", 44100, 2),
        ("c.ogg", 48000, 2),
        ("c.webm", 48000, 2),
    ],
)
def test_click_lands_at_its_time(
    tmp_path: Path, name: str, sample_rate: int, channels: int
) -> None:
    """Encoder delay (AAC priming, MP3/Opus padding) must not shift audio: clicks within 10 ms."""
    path = tmp_path / name
    write_media(path, audio=clicks(3.0, sample_rate, [0.5, 1.7], channels), sample_rate=sample_rate)
    audio = decode_audio(path, sample_rate=SR)
    assert audio.dtype == torch.float32
    assert audio.dim() == 1
    assert abs(audio.shape[0] / SR - 3.0) < 0.05
    assert first_click(audio, SR) == pytest.approx(0.5, abs=0.01)
    later = decode_audio(path, sample_rate=SR, start=1.2, end=2.5)
    assert later.shape[0] == round(1.3 * SR)
    assert 1.2 + first_click(later, SR) == pytest.approx(1.7, abs=0.01)


def test_click_in_av_file_is_synchronised_with_video(mp4_25fps: Path) -> None:
    _, audio = read_clip(mp4_25fps, video_start=0.0, audio_start=0.5, preprocess=CFG)
    assert audio is not None
    assert 0.5 + first_click(audio, SR) == pytest.approx(1.0, abs=0.01)


def test_downmix_and_resample_keep_level_and_pitch(tmp_path: Path) -> None:
    tone = sine(1.0, 44100, 1000.0, amplitude=0.5)
    path = tmp_path / "surround.wav"
    write_media(path, audio=np.stack([tone] * 6), sample_rate=44100)  # 5.1, 44.1 kHz
    audio = decode_audio(path, sample_rate=SR)
    assert audio.shape[0] == SR
    assert audio[2000:-2000].abs().max().item() == pytest.approx(0.5, abs=0.02)
    spectrum = torch.fft.rfft(audio).abs()
    assert spectrum.argmax().item() == pytest.approx(1000, abs=1)  # 1 Hz per bin for 1 s
    left_only = tmp_path / "left.wav"
    write_media(left_only, audio=np.stack([tone, 0 * tone]), sample_rate=44100)
    mono = decode_audio(left_only, sample_rate=SR)
    assert mono[2000:-2000].abs().max().item() == pytest.approx(0.25, abs=0.01)  # (L + R) / 2


def test_audio_seek_is_sample_accurate(tmp_path: Path) -> None:
    t = np.arange(4 * 48000) / 48000
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)
    path = tmp_path / "chirp.mp4"
    write_media(path, audio=np.stack([chirp, chirp]), sample_rate=48000)
    full = decode_audio(path, sample_rate=SR)
    part = decode_audio(path, sample_rate=SR, start=1.3, end=2.0)
    start = round(1.3 * SR)
    torch.testing.assert_close(part, full[start : start + part.shape[0]], atol=1e-4, rtol=0)


def test_missing_audio(tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    write_media(silent, video=index_frames(40), fps=16)
    with pytest.raises(NoUsableStreamError) as err:
        decode_audio(silent)
    assert err.value.code == "no_stream"
    video, audio = read_clip(silent, video_start=0.5, audio_start=0.5, preprocess=CFG)
    assert audio is None
    assert video is not None
    assert frame_indices(video) == list(range(8, 16))
    windows = list(iter_windows(silent, preprocess=CFG))
    assert len(windows) == 2  # 3 s: 2 s windows at 0 and 1 (the last ends at the file's end)
    assert all(w.audio is None for w in windows)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_shorter_than_video(tmp_path: Path, suffix: str) -> None:
    short = tmp_path / f"short_audio{suffix}"  # 3 s of video, 1 s of audio
    audio = clicks(1.0, SR, [0.2])
    write_media(short, video=index_frames(48), fps=16, audio=audio, sample_rate=SR)
    assert decode_audio(short).shape[0] == pytest.approx(SR, abs=2048)
    windows = list(iter_windows(short, preprocess=CFG))
    assert [w.start for w in windows] == [0.0, 1.0]
    last = windows[-1].audio
    assert last is not None
    assert last.shape == (CFG.audio_samples,)
    assert last.abs().max().item() == 0.0  # past the audio's end: zero padding


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    write_media(path, audio=clicks(2.5, 44100, [1.0]), sample_rate=44100)
    with pytest.raises(NoUsableStreamError):
        decode_video(path)
    windows = list(iter_windows(path, preprocess=CFG))
    # 2.5 s: one hop, then a last window ending at the file's end (0.5-2.5 s), none padded
    assert [w.start for w in windows] == pytest.approx([0.0, 0.5], abs=0.03)
    assert all(w.video is None for w in windows)
    assert windows[1].audio is not None
    assert first_click(windows[1].audio, SR) == pytest.approx(0.5, abs=0.03)


def test_mpeg_ts_audio_stays_in_sync(tmp_path: Path) -> None:
    """MPEG-TS stores AAC priming as an earlier audio start; video time zero is the origin."""
    path = tmp_path / "a.ts"
    audio = clicks(3.0, SR, [1.0])
    write_media(path, video=index_frames(48), fps=16, audio=audio, sample_rate=SR)
    assert frame_indices(decode_video(path, end=1.0)) == list(range(16))
    assert first_click(decode_audio(path), SR) == pytest.approx(1.0, abs=0.01)
    window = next(iter(iter_windows(path, preprocess=CFG)))
    assert window.video is not None
    assert window.audio is not None
    assert frame_indices(window.video) == list(range(8))
    assert first_click(window.audio, SR) == pytest.approx(1.0, abs=0.01)


def test_raw_h264_without_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "raw.h264"  # an elementary stream: no duration, no timestamps, no seek
    write_media(path, video=index_frames(40), fps=16)
    assert probe(path).duration == pytest.approx(2.5)  # from a demux scan
    assert frame_indices(decode_video(path, start=1.2, end=1.5)) == [19, 20, 21, 22, 23]


# ----------------------------------------------------------------------------- windows, clips


def test_windows_cover_the_file(mp4_25fps: Path) -> None:
    stats = WindowStats()
    windows = list(iter_windows(mp4_25fps, preprocess=CFG, hop=1.0, stats=stats))
    assert [w.index for w in windows] == [0, 1]
    assert [w.start for w in windows] == [0.0, 1.0]
    assert [w.end for w in windows] == [2.0, 3.0]
    assert windows[1].end == pytest.approx(probe(mp4_25fps).duration, abs=0.05)  # the file's end
    for w in windows:
        assert w.video is not None
        assert w.audio is not None
        assert w.video.shape == (8, 128, 171, 3)  # short side resize_short = 128
        assert w.audio.shape == (CFG.audio_samples,)
        expected = [math.floor((w.start + k / 16) * 25 + 1e-9) for k in range(8)]
        assert frame_indices(w.video) == expected
    first, last = windows[0].audio, windows[1].audio
    assert first is not None
    assert last is not None
    assert first_click(first, SR) == pytest.approx(1.0, abs=0.01)
    assert first_click(last, SR) == pytest.approx(0.0, abs=0.01)
    assert stats.windows == 2


def test_overlapping_windows(mp4_25fps: Path) -> None:
    windows = list(iter_windows(mp4_25fps, preprocess=CFG, hop=0.25))
    assert [w.start for w in windows] == [0.0, 0.25, 0.5, 0.75, 1.0]  # 2 s windows in 3 s
    for w in windows:
        assert w.video is not None
        expected = [min(74, math.floor((w.start + k / 16) * 25 + 1e-9)) for k in range(8)]
        assert frame_indices(w.video) == expected


def test_window_starts_keep_every_window_inside_the_file() -> None:
    assert window_starts(3.0, 1.0, 2.0) == [0.0, 1.0]
    assert window_starts(2.5, 1.0, 2.0) == [0.0, 0.5]  # the last one ends at the file's end
    assert window_starts(3.001, 1.0, 2.0) == [0.0, 1.0]  # container rounding opens no window
    assert window_starts(1.5, 1.0, 2.0) == [0.0]  # shorter than a window: one, padded
    assert window_starts(2.0, 1.0, 2.0) == [0.0]
    assert window_starts(10.0, 3.0, 2.0) == [0.0, 3.0, 6.0, 8.0]
    for duration in (2.2, 2.7, 5.3, 61.0):
        starts = window_starts(duration, 0.75, 2.0)
        assert starts == sorted(set(starts))
        assert all(0 <= s <= duration - 2.0 + 1e-6 for s in starts)
        assert starts[-1] + 2.0 == pytest.approx(duration, abs=0.06)
    with pytest.raises(ValueError, match="hop"):
        window_starts(3.0, 0.0, 2.0)


def test_short_file_gives_one_window(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    write_media(path, video=index_frames(5), fps=16, audio=clicks(0.3, SR, [0.1]), sample_rate=SR)
    windows = list(iter_windows(path, preprocess=CFG))
    assert len(windows) == 1
    assert windows[0].video is not None
    assert frame_indices(windows[0].video) == [0, 1, 2, 3, 4, 4, 4, 4]


def test_read_clip_matches_serving_window(mp4_25fps: Path) -> None:
    window = list(iter_windows(mp4_25fps, preprocess=CFG))[1]
    video, audio = read_clip(mp4_25fps, video_start=1.0, audio_start=1.0, preprocess=CFG)
    assert video is not None
    assert audio is not None
    assert window.video is not None
    assert torch.equal(video, window.video)
    torch.testing.assert_close(audio, window.audio, atol=1e-4, rtol=0)


def test_read_clip_desynchronised_and_past_end(mp4_25fps: Path) -> None:
    video, audio = read_clip(mp4_25fps, video_start=2.2, audio_start=1.5, preprocess=CFG)
    assert video is not None
    assert audio is not None
    assert frame_indices(video) == [55, 56, 58, 59, 61, 62, 64, 65]
    assert first_click(audio, SR) == pytest.approx(0.8, abs=0.01)
    assert audio[round(1.6 * SR) :].abs().max().item() == 0.0  # zero-padded after 3 s
    # audio read after the video seek, from near the start: no stale demuxer position
    _, early = read_clip(mp4_25fps, video_start=2.2, audio_start=0.05, preprocess=CFG)
    assert early is not None
    assert 0.05 + first_click(early, SR) == pytest.approx(1.0, abs=0.01)


def test_decode_video_past_the_end_is_empty(mp4_25fps: Path) -> None:
    assert decode_video(mp4_25fps, start=5.0).shape == (0, 48, 64, 3)


def test_streaming_buffer_does_not_grow_with_length(tmp_path: Path) -> None:
    def high_water(seconds: float) -> WindowStats:
        path = tmp_path / f"long{seconds:.0f}.mp4"
        av_file(path, seconds=seconds, fps=25, size=(24, 32), click_times=())
        stats = WindowStats()
        for _ in iter_windows(path, preprocess=CFG, stats=stats):
            pass
        assert stats.windows == round(seconds) - 1  # 2 s windows every second, inside the file
        return stats

    short, long = high_water(4.0), high_water(40.0)
    assert long.max_buffered_frames == short.max_buffered_frames
    assert long.max_buffered_frames <= 0.5 * 25 + 3  # one clip of source frames
    assert long.max_buffered_samples <= CFG.audio_samples + 4096
    assert long.max_buffered_samples == pytest.approx(short.max_buffered_samples, abs=2048)


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def bad_files(media_dir: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (50, 64, 96, 3), dtype=np.uint8)  # mdat dominates the file
    good = media_dir / "good.mp4"
    write_media(good, video=noisy, fps=25, audio=clicks(2.0, SR, [1.0]), sample_rate=SR)
    data = good.read_bytes()
    half = media_dir / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    mkv = media_dir / "good.mkv"
    write_media(mkv, video=noisy, fps=25, audio=clicks(2.0, SR, [1.0]), sample_rate=SR)
    half_mkv = media_dir / "half.mkv"
    half_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = media_dir / "empty.mp4"
    empty.write_bytes(b"")
    return {"half_mp4": half, "half_mkv": half_mkv, "text": text, "empty": empty}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("half_mp4", CorruptMediaError),
        ("half_mkv", CorruptMediaError),
        ("text", UnreadableMediaError),
        ("empty", EmptyMediaError),
    ],
)
def test_bad_files_raise_media_errors(
    bad_files: dict[str, Path], name: str, error: type[MediaError]
) -> None:
    path = bad_files[name]
    calls = [
        lambda: decode_video(path),
        lambda: decode_audio(path),
        lambda: list(iter_windows(path, preprocess=CFG)),
        lambda: read_clip(path, video_start=0.8, audio_start=0.5, preprocess=CFG),
    ]
    for call in calls:
        with pytest.raises(error) as err:
            call()
        assert path.name in str(err.value)
    if name != "half_mkv":  # headers of a cut Matroska file still read fine
        with pytest.raises(error):
            probe(path)


def test_error_codes() -> None:
    codes = {
        UnreadableMediaError: "unreadable",
        CorruptMediaError: "corrupt",
        EmptyMediaError: "empty",
        NoUsableStreamError: "no_stream",
        MediaTooLongError: "too_long",
        MediaTooLargeError: "too_large",
    }
    for cls, code in codes.items():
        assert issubclass(cls, MediaError)
        err = cls("went wrong", path="/some/dir/clip.mp4")
        assert err.code == code
        assert str(err) == "clip.mp4: went wrong"


def test_limits(mp4_25fps: Path) -> None:
    with pytest.raises(MediaTooLongError, match=r"3\.0 s.*limit of 2 s") as too_long:
        probe(mp4_25fps, MediaLimits(max_duration_s=2.0))
    assert too_long.value.code == "too_long"
    assert "a25.mp4" in str(too_long.value)
    with pytest.raises(MediaTooLargeError, match=r"64x48 \(3072 pixels\).*1000 pixels"):
        list(iter_windows(mp4_25fps, preprocess=CFG, limits=MediaLimits(max_pixels=1000)))
    size = mp4_25fps.stat().st_size
    with pytest.raises(MediaTooLargeError, match=f"{size} bytes.*limit of 100 bytes"):
        read_clip(
            mp4_25fps,
            video_start=0,
            audio_start=0,
            preprocess=CFG,
            limits=MediaLimits(max_file_bytes=100),
        )
