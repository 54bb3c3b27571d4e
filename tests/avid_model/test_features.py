"""Model inputs: preprocessing settings, log spectrograms, spectrogram statistics, video clips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from avid_model.features import (
    PreprocessConfig,
    SpectrogramStats,
    audio_batch,
    compute_spectrogram_stats,
    log_spectrogram,
    video_batch,
    video_clip_to_tensor,
)

CFG = PreprocessConfig()


def test_config_defaults_and_round_trip() -> None:
    assert CFG.resize_short == 128
    assert PreprocessConfig(crop_size=224).resize_short == 256
    assert CFG.audio_samples == 48000
    assert CFG.clip_seconds == 0.5
    restored = PreprocessConfig.from_dict(json.loads(json.dumps(CFG.to_dict())))
    assert restored == CFG
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({"fps": 16.0, "colour": 1})


def _hand_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """AVID_SPEC section 2 written out with torch.stft: (N,) -> (200, 257)."""
    spec = torch.stft(
        wave,
        n_fft=1024,
        hop_length=240,
        window=torch.hann_window(1024),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spec.abs() ** 2  # (513, 201)
    assert power.shape == (513, 201)
    pooled = torch.cat([power[:1], (power[1:513:2] + power[2:513:2]) / 2])  # (257, 201)
    db = 10 * torch.log10(pooled[:, :200].clamp_min(1e-10))
    db = torch.maximum(db, db.max() - 100.0)
    return db.T


def test_log_spectrogram_matches_hand_computation() -> None:
    wave = 0.1 * torch.randn(48000)
    spec = log_spectrogram(wave, CFG)
    assert spec.shape == (1, 1, 200, 257)
    torch.testing.assert_close(spec[0, 0], _hand_spectrogram(wave), atol=1e-3, rtol=1e-5)


def test_sine_lands_in_its_bin() -> None:
    t = torch.arange(48000) / 24000
    # 3 kHz = STFT bin 3000 * 1024 / 24000 = 128, pooled with bin 127 into output bin 64
    spec = log_spectrogram(torch.sin(2 * math.pi * 3000 * t), CFG)
    assert spec[0, 0].mean(dim=0).argmax().item() == 64
    low = log_spectrogram(torch.sin(2 * math.pi * 750 * t), CFG)  # STFT bin 32 -> 16
    assert low[0, 0].mean(dim=0).argmax().item() == 16


def test_top_db_is_per_example_and_batching_changes_nothing() -> None:
    t = torch.arange(48000) / 24000
    loud = torch.sin(2 * math.pi * 440 * t)  # peaks near +48 dB
    quiet = 1e-4 * torch.sin(2 * math.pi * 2000 * t)  # peaks near -33 dB
    loud[24000:] = 0.0
    quiet[24000:] = 0.0
    batch = log_spectrogram(torch.stack([loud, quiet]), CFG)
    for i, wave in enumerate([loud, quiet]):
        torch.testing.assert_close(batch[i], log_spectrogram(wave, CFG)[0])
    loud_db, quiet_db = batch[0], batch[1]
    # each example is clamped at its own max - top_db ...
    assert loud_db.min().item() == pytest.approx(loud_db.max().item() - 100.0, abs=1e-3)
    # ... so the quiet one keeps its silence at the amin floor (-100 dB), far below the loud
    # example's floor, where a joint clamp over the batch would have lifted it
    assert quiet_db.min().item() == pytest.approx(-100.0, abs=1e-3)
    assert quiet_db.min() < loud_db.min() - 40


def test_waveform_is_padded_or_trimmed() -> None:
    wave = torch.randn(30000)
    padded = torch.cat([wave, torch.zeros(18000)])
    torch.testing.assert_close(log_spectrogram(wave, CFG), log_spectrogram(padded, CFG))
    longer = torch.cat([padded, torch.randn(5000)])
    torch.testing.assert_close(log_spectrogram(longer, CFG), log_spectrogram(padded, CFG))


def test_spectrogram_stats_normalise_a_data_set() -> None:
    gen = torch.Generator().manual_seed(0)
    offsets = torch.linspace(-80.0, -10.0, 257)
    scales = torch.linspace(1.0, 20.0, 257)
    batches = [offsets + scales * torch.randn(4, 1, 200, 257, generator=gen) for _ in range(5)]
    stats = compute_spectrogram_stats(iter(batches))  # a one-pass stream
    assert stats.mean.shape == stats.std.shape == (257,)
    everything = torch.cat(batches).reshape(-1, 257).double()
    torch.testing.assert_close(stats.mean.double(), everything.mean(0), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        stats.std.double(), everything.std(0, unbiased=False), atol=1e-3, rtol=1e-4
    )
    normalised = torch.cat([stats.normalize(b) for b in batches]).reshape(-1, 257)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(257), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        normalised.std(0, unbiased=False), torch.ones(257), atol=1e-4, rtol=0
    )


def test_spectrogram_stats_helpers() -> None:
    const = torch.full((2, 1, 200, 257), -100.0)
    stats = compute_spectrogram_stats([const])
    assert torch.all(stats.std > 0)  # floored, no division by zero
    assert torch.isfinite(stats.normalize(const)).all()
    restored = SpectrogramStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    torch.testing.assert_close(restored.mean, stats.mean)
    torch.testing.assert_close(restored.std, stats.std)
    spec = torch.randn(3, 1, 200, 257)
    torch.testing.assert_close(SpectrogramStats.identity().normalize(spec), spec)
    with pytest.raises(ValueError, match="at least one"):
        compute_spectrogram_stats([])


def test_audio_batch_missing_audio_is_silence() -> None:
    stats = SpectrogramStats(mean=torch.full((257,), -50.0), std=torch.full((257,), 10.0))
    batch = audio_batch([None, 0.1 * torch.randn(40000)], CFG, stats)
    assert batch.shape == (2, 1, 200, 257)
    torch.testing.assert_close(batch[0], torch.full((1, 200, 257), -5.0))  # (-100 + 50) / 10


def test_video_clip_to_tensor_normalises_and_centre_crops() -> None:
    frames = np.zeros((8, 128, 171, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 128, 0
    frames[:, 64, 85] = 7  # the centre pixel survives the crop unchanged
    frames[:, :, :29] = 200  # in the left margin (171 - 112 = 59 columns), cropped away
    clip = video_clip_to_tensor(torch.from_numpy(frames), CFG)
    assert clip.shape == (3, 8, 112, 112)
    mean = torch.tensor(CFG.video_mean)
    std = torch.tensor(CFG.video_std)
    expected = (torch.tensor([255.0, 128.0, 0.0]) / 255 - mean) / std
    torch.testing.assert_close(clip[:, 0, 0, 0], expected)
    torch.testing.assert_close(clip[:, :, 0, 0], expected[:, None].expand(3, 8))
    centre = (torch.full((3,), 7.0) / 255 - mean) / std
    torch.testing.assert_close(clip[:, 3, 64 - 8, 85 - 30], centre)  # offsets round(8), round(29.5)


def test_video_clip_is_resized_when_needed() -> None:
    frames = torch.full((8, 240, 320, 3), 100, dtype=torch.uint8)
    clip = video_clip_to_tensor(frames, CFG)
    assert clip.shape == (3, 8, 112, 112)
    expected = (torch.full((3,), 100.0) / 255 - torch.tensor(CFG.video_mean)) / torch.tensor(
        CFG.video_std
    )
    torch.testing.assert_close(clip.mean(dim=(1, 2, 3)), expected, atol=1e-5, rtol=0)
    assert video_batch([frames, frames], CFG).shape == (2, 3, 8, 112, 112)
    with pytest.raises(NotImplementedError):
        video_clip_to_tensor(frames, CFG, train=True)
