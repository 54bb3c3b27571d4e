"""AVClipDataset, clip timing, the in-memory cache and spectrogram stats, on real media files.

Fixture clips: frame k is a flat grey of brightness STEP * k (a decoded frame tells its source
index) and the audio is a 440 Hz tone whose amplitude rises linearly with time (the level ratio
between the start and the end of a window tells where the window starts).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avid_model.features import PreprocessConfig, SpectrogramStats, log_spectrogram
from avid_model.media import decode_audio
from avid_model.media_writer import write_media
from training.augment import AugmentConfig
from training.clips import MediaCache
from training.data import AVClipDataset, dataset_spectrogram_stats, item_generator
from training.sources import VideoRecord

FPS, SR = 16, 24000
STEP = 5
CFG = PreprocessConfig(crop_size=64)  # frames decoded at short side 73: quick tests
NO_JITTER = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0, volume=(1.0, 1.0))
RAMP = (0.05, 0.1)  # amplitude a + b * t


def _write_clip(path: Path, seconds: float, *, audio: bool = True) -> Path:
    n = round(seconds * FPS)
    frames = np.broadcast_to((np.arange(n) * STEP)[:, None, None, None], (n, 128, 128, 3))
    t = np.arange(round(seconds * SR)) / SR
    wave = ((RAMP[0] + RAMP[1] * t) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_media(
        path,
        video=frames.astype(np.uint8),
        fps=FPS,
        audio=wave if audio else None,
        sample_rate=SR,
        crf=0,
    )
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[VideoRecord]:
    root = tmp_path_factory.mktemp("clips")
    return [
        VideoRecord(path=_write_clip(root / "a.mp4", 3.0), label=0),
        VideoRecord(path=_write_clip(root / "b.mp4", 2.5), label=1),
        VideoRecord(path=_write_clip(root / "c.mp4", 2.0), label=2),
    ]


@pytest.fixture(scope="module")
def silent_record(tmp_path_factory: pytest.TempPathFactory) -> VideoRecord:
    root = tmp_path_factory.mktemp("silent")
    return VideoRecord(path=_write_clip(root / "mute.mp4", 2.5, audio=False), label=3)


def _dataset(records: list[VideoRecord], **kwargs: object) -> AVClipDataset:
    options: dict[str, object] = {"train": False, "stats": SpectrogramStats.identity()}
    options.update(kwargs)
    return AVClipDataset(records, CFG, **options)  # type: ignore[arg-type]


def _frame_indices(video: torch.Tensor) -> list[int]:
    """Source frame index of each frame of a normalised (3, T, S, S) clip of flat greys."""
    mean = torch.tensor(CFG.video_mean).view(3, 1, 1, 1)
    std = torch.tensor(CFG.video_std).view(3, 1, 1, 1)
    grey = ((video * std + mean) * 255).mean(dim=(0, 2, 3))
    return [round(v) for v in (grey / STEP).tolist()]


def _audio_start_from_level(spec: torch.Tensor) -> float:
    """Window start (s) from the tone's level ratio at spectrogram frames 5 and 195."""
    level = spec[0].max(dim=1).values  # (200,) dB of the tone per frame
    ratio = 10 ** ((level[5] - level[195]).item() / 20)
    t5, t195 = 5 * CFG.hop_length / SR, 195 * CFG.hop_length / SR
    a, b = RAMP
    # ratio = (a + b (s + t5)) / (a + b (s + t195)), solved for s
    return (a + b * t5 - ratio * (a + b * t195)) / (b * (ratio - 1))


def test_item_shapes_and_fields(records: list[VideoRecord]) -> None:
    item = _dataset(records, train=True)[1]
    assert item["video"].shape == (3, CFG.clip_frames, 64, 64)
    assert item["video"].dtype == torch.float32
    assert item["audio"].shape == (1, 200, 257)
    assert item["index"] == 1
    assert item["label"] == 1
    assert item["has_audio"] is True


def test_test_windows_start_together_and_show_their_content(records: list[VideoRecord]) -> None:
    ds = _dataset(records, clips_per_video=3)
    starts = []
    for i in range(len(ds)):
        item = ds[i]
        assert item["video_start"] == item["audio_start"]
        first = round(item["video_start"] * FPS)
        assert _frame_indices(item["video"]) == list(range(first, first + CFG.clip_frames))
        assert _audio_start_from_level(item["audio"]) == pytest.approx(
            item["audio_start"], abs=0.03
        )
        starts.append(item["video_start"])
    assert starts[0] < starts[3] < starts[6]  # clips of video 0 spread over the file
    assert starts[2] == starts[5] == starts[8] == 0.0  # the 2 s file has room for one window


def test_train_windows_respect_desync_bound(records: list[VideoRecord]) -> None:
    ds = _dataset(records, train=True, clips_per_video=4, augment=NO_JITTER)
    gaps = []
    for epoch in range(10):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            w = ds.window(i)
            duration = [3.0, 2.5, 2.0][i % 3]
            assert 0 <= w.audio_start <= duration - CFG.audio_seconds + 1e-9
            assert 0 <= w.video_start <= duration - CFG.clip_seconds + 1e-9
            assert w.audio_start - 0.5 - 1e-9 <= w.video_start <= w.audio_start + 2.0 + 1e-9
            assert w.video_start * FPS == pytest.approx(round(w.video_start * FPS))
            gaps.append(w.video_start - w.audio_start)
    assert min(gaps) < -0.2
    assert max(gaps) > 1.0
    for i in (0, 4):  # decoded content matches the reported starts
        item = ds[i]
        first = round(item["video_start"] * FPS)
        assert _frame_indices(item["video"]) == list(range(first, first + CFG.clip_frames))
        assert _audio_start_from_level(item["audio"]) == pytest.approx(
            item["audio_start"], abs=0.03
        )


def test_zero_desync_keeps_video_inside_audio_window(records: list[VideoRecord]) -> None:
    ds = _dataset(records, train=True, max_desync=0.0)
    for i in range(len(ds)):
        w = ds.window(i)
        assert w.audio_start - 1e-9 <= w.video_start
        assert w.video_start + CFG.clip_seconds <= w.audio_start + CFG.audio_seconds + 1 / FPS


def test_one_memory_slot_per_video(records: list[VideoRecord]) -> None:
    ds = _dataset(records, train=True, clips_per_video=3, cache=True)
    assert len(ds) == 9
    assert [ds[i]["index"] for i in range(len(ds))] == [0, 1, 2] * 3
    assert [ds[i]["label"] for i in range(3)] == [0, 1, 2]


def test_items_reproducible_for_seed_epoch_index(records: list[VideoRecord]) -> None:
    a = _dataset(records, train=True, seed=3)
    b = _dataset(records, train=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    first, again = a[1], b[1]
    assert torch.equal(first["video"], again["video"])
    assert torch.equal(first["audio"], again["audio"])
    assert first["video_start"] == again["video_start"]
    b.set_epoch(3)
    assert not torch.equal(first["video"], b[1]["video"])
    other_seed = _dataset(records, train=True, seed=4)
    other_seed.set_epoch(2)
    assert not torch.equal(first["video"], other_seed[1]["video"])
    g1, g2 = item_generator(0, 1, 2), item_generator(0, 2, 1)
    assert torch.rand(1, generator=g1) != torch.rand(1, generator=g2)


def _record_call(calls: list[tuple[int, int]], done: int, total: int) -> None:
    calls.append((done, total))


def test_cache_gives_the_same_items(records: list[VideoRecord]) -> None:
    for train, clips in ((False, 2), (True, 1)):
        plain = _dataset(records, train=train, clips_per_video=clips)
        cached = _dataset(records, train=train, clips_per_video=clips, cache=True)
        calls: list[tuple[int, int]] = []
        cached.fill_cache(progress=functools.partial(_record_call, calls))
        assert calls[-1] == (3, 3)
        assert cached.cached_files == 3
        assert cached.cache_bytes > 0
        for i in range(len(plain)):
            x, y = plain[i], cached[i]
            assert x["video_start"] == y["video_start"]
            assert x["audio_start"] == y["audio_start"]
            assert torch.equal(x["video"], y["video"])
            torch.testing.assert_close(x["audio"], y["audio"], atol=1e-3, rtol=1e-4)


def test_shared_media_cache_decodes_each_file_once(
    records: list[VideoRecord], tmp_path: Path
) -> None:
    shared = MediaCache()
    first = _dataset(records, train=True, cache=True, media_cache=shared)
    first.fill_cache(workers=2)
    assert len(shared) == 3
    assert shared.nbytes == first.cache_bytes
    second = _dataset(records, train=False, clips_per_video=2, cache=True, media_cache=shared)
    calls: list[tuple[int, int]] = []
    second.fill_cache(progress=functools.partial(_record_call, calls))
    assert calls == []  # nothing left to decode: every file came from the shared cache
    assert second.cached_files == 3
    plain = _dataset(records, train=False, clips_per_video=2)
    for i in range(len(plain)):
        assert torch.equal(plain[i]["video"], second[i]["video"])
    # Other decode settings, or a file rewritten since, decode anew.
    other = AVClipDataset(
        records,
        PreprocessConfig(crop_size=32),
        SpectrogramStats.identity(),
        train=False,
        cache=True,
        media_cache=shared,
    )
    other.fill_cache(progress=functools.partial(_record_call, calls))
    assert calls[-1] == (3, 3)
    assert len(shared) == 6
    copy = VideoRecord(path=_write_clip(tmp_path / "copy.mp4", 3.0))
    before = _dataset([copy], cache=True, media_cache=shared)
    before.fill_cache()
    assert before[0]["video_start"] == 0.5  # the centred window of a 3 s file
    _write_clip(copy.path, 2.0)
    rewritten = _dataset([copy], cache=True, media_cache=shared)
    calls.clear()
    rewritten.fill_cache(progress=functools.partial(_record_call, calls))
    assert calls == [(1, 1)]
    assert rewritten[0]["video_start"] == 0.0  # of the 2 s file now there


def test_normalisation_uses_given_stats(records: list[VideoRecord]) -> None:
    gen = torch.Generator().manual_seed(0)
    stats = SpectrogramStats(mean=torch.randn(257, generator=gen), std=torch.rand(257) + 0.5)
    raw = _dataset(records)[0]
    item = _dataset(records, stats=stats)[0]
    torch.testing.assert_close(item["audio"], (raw["audio"] - stats.mean) / stats.std)
    audio = decode_audio(records[0].path, sample_rate=SR, start=item["audio_start"], end=2.5)
    torch.testing.assert_close(raw["audio"], log_spectrogram(audio, CFG)[0], atol=1e-3, rtol=0)


def test_missing_audio_gives_silence_and_is_counted(
    records: list[VideoRecord], silent_record: VideoRecord
) -> None:
    ds = _dataset([records[0], silent_record], train=True)
    item = ds[1]
    assert item["has_audio"] is False
    assert torch.equal(item["audio"], log_spectrogram(torch.zeros(CFG.audio_samples), CFG)[0])
    assert ds[0]["has_audio"] is True
    assert ds.missing_audio == 1
    assert ds.missing_video == 0


def test_missing_video_gives_a_blank_clip(records: list[VideoRecord], tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_media(wav, audio=np.full(SR * 2, 0.1, dtype=np.float32), sample_rate=SR)
    ds = _dataset([records[0], VideoRecord(path=wav)], train=True)
    item = ds[1]
    assert torch.equal(item["video"], torch.zeros(3, CFG.clip_frames, 64, 64))
    assert item["has_audio"] is True
    assert ds.missing_video == 1


def test_dataloader_with_workers(records: list[VideoRecord], silent_record: VideoRecord) -> None:
    ds = _dataset([*records, silent_record], train=True, clips_per_video=2, cache=True)
    ds.fill_cache(workers=2)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        batches = list(loader)
        assert batches[0]["video"].shape == (4, 3, CFG.clip_frames, 64, 64)
        assert batches[0]["audio"].shape == (4, 1, 200, 257)
        assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2, 3] * 2
        seen.append(torch.cat([b["video_start"] for b in batches]))
    assert ds.missing_audio == 4  # 2 clips x 2 epochs, counted in the workers
    ds.set_epoch(1)  # persistent workers saw the epoch change: same as serial items
    assert seen[1].tolist() == [ds[i]["video_start"] for i in range(len(ds))]
    assert not torch.equal(seen[0], seen[1])


def test_spectrogram_stats_deterministic(records: list[VideoRecord]) -> None:
    a = dataset_spectrogram_stats(records, CFG, clips=5, seed=1, batch=2)
    b = dataset_spectrogram_stats(records, CFG, clips=5, seed=1, batch=4)
    c = dataset_spectrogram_stats(records, CFG, clips=5, seed=2)
    assert a.mean.shape == a.std.shape == (257,)
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.std, b.std)
    assert not torch.equal(a.mean, c.mean)
    assert math.isfinite(float(a.mean.sum()))
    assert bool((a.std > 0).all())


def test_spectrogram_stats_need_audio(silent_record: VideoRecord) -> None:
    with pytest.raises(ValueError, match="no audio"):
        dataset_spectrogram_stats([silent_record], CFG, clips=2, seed=0)


def test_bad_arguments(records: list[VideoRecord]) -> None:
    with pytest.raises(ValueError, match="at least one record"):
        _dataset([])
    with pytest.raises(ValueError, match="clips_per_video"):
        _dataset(records, clips_per_video=0)
    with pytest.raises(IndexError):
        _dataset(records)[3]
