"""Training augmentation: one set of random parameters per clip, reproducible from a generator."""

from __future__ import annotations

import pytest
import torch

from avid_model.features import PreprocessConfig
from training.augment import (
    AugmentConfig,
    VideoAugment,
    random_channel,
    random_volume,
    reverberate,
    telephone,
)

CFG = PreprocessConfig(crop_size=32)


def _clip(frames: int = 8, size: int = 40, seed: int = 0) -> torch.Tensor:
    """(T, H, W, 3) uint8: the same textured image in every frame."""
    image = torch.randint(0, 256, (1, size, size, 3), generator=torch.Generator().manual_seed(seed))
    return image.to(torch.uint8).expand(frames, -1, -1, -1).contiguous()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_dtype_and_normalisation() -> None:
    out = VideoAugment(CFG)(_clip(), _gen(0))
    assert out.shape == (3, 8, 32, 32)
    assert out.dtype == torch.float32
    plain = VideoAugment(CFG, AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0))
    white = plain(torch.full((2, 40, 40, 3), 255, dtype=torch.uint8), _gen(0))
    expected = (1 - torch.tensor(CFG.video_mean)) / torch.tensor(CFG.video_std)
    torch.testing.assert_close(white[:, :, 0, 0], expected[:, None].expand(3, 2))


def test_v2_draws_parameters_once_per_clip() -> None:
    """Identical input frames stay identical: crop, flip and jitter are shared by all frames."""
    augment = VideoAugment(CFG)
    outputs = [augment(_clip(), _gen(seed)) for seed in range(6)]
    for out in outputs:
        assert torch.equal(out, out[:, :1].expand_as(out))
    assert len({out.sum().item() for out in outputs}) == 6  # but they differ between clips


def test_crop_and_flip_follow_the_content() -> None:
    """Frames with a moving bar keep their relative geometry (one crop/flip for the clip)."""
    frames = torch.zeros(4, 40, 40, 3, dtype=torch.uint8)
    for t in range(4):
        frames[t, :, 10 + 5 * t : 12 + 5 * t] = 255
    no_jitter = AugmentConfig(crop_scale=(0.9, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    augment = VideoAugment(CFG, no_jitter)
    flips = set()
    for seed in range(12):
        out = augment(frames, _gen(seed))[0]  # (T, 32, 32)
        columns = out.mean(dim=1).argmax(dim=1)  # bar position per frame
        steps = columns.diff()
        assert bool((steps > 0).all()) or bool((steps < 0).all())  # one direction for all frames
        flips.add(bool(steps[0] < 0))
    assert flips == {True, False}


def test_reproducible_and_global_rng_untouched() -> None:
    augment = VideoAugment(CFG)
    state = torch.get_rng_state()
    a = augment(_clip(), _gen(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, augment(_clip(), _gen(7)))
    assert not torch.equal(a, augment(_clip(), _gen(8)))


def test_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        VideoAugment(CFG)(torch.zeros(8, 40, 40, 3), _gen(0))


def test_random_volume_range_and_determinism() -> None:
    wave = torch.ones(100)
    gains = [float(random_volume(wave, _gen(s))[0]) for s in range(200)]
    assert 0.9 <= min(gains) < 0.92
    assert 1.08 < max(gains) <= 1.1
    assert torch.equal(random_volume(wave, _gen(3)), random_volume(wave, _gen(3)))
    assert float(random_volume(wave, _gen(0), (2.0, 2.0))[0]) == 2.0


RATE = 24_000


def _tone(hz: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(round(RATE * seconds), dtype=torch.float32) / RATE
    return 0.5 * torch.sin(2 * torch.pi * hz * t)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


@pytest.mark.parametrize("mu_law", [False, True])
def test_telephone_passes_the_voice_band_and_stops_what_lies_outside(mu_law: bool) -> None:
    voice, high, low = _tone(1_000.0), _tone(6_000.0), _tone(60.0)
    for tone in (voice, high, low):
        assert telephone(tone, RATE, mu_law).shape == tone.shape
    mid = slice(RATE // 4, 3 * RATE // 4)  # away from the filters' edges
    assert _rms(telephone(voice, RATE, mu_law)[mid]) > 0.6 * _rms(voice)
    assert _rms(telephone(high, RATE, mu_law)[mid]) < 0.05 * _rms(high)
    assert _rms(telephone(low, RATE, mu_law)[mid]) < 0.25 * _rms(low)


def test_reverberate_spreads_an_impulse_over_the_room_time_and_keeps_the_level() -> None:
    click = torch.zeros(RATE)
    click[1000] = 1.0
    out = reverberate(click, RATE, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == click.shape
    assert abs(_rms(out) - _rms(click)) < 1e-4
    assert float(out[:1000].abs().max()) < 1e-6  # nothing before the sound (FFT round-off)
    tail = out[1000 + RATE // 10 : 1000 + RATE // 5]  # 0.1-0.2 s later: the room still rings
    assert _rms(tail) > 1e-4


def test_random_channel_is_off_at_p0_and_reproducible_per_generator() -> None:
    wave = torch.randn(RATE, generator=torch.Generator().manual_seed(1)) * 0.1
    assert random_channel(wave, RATE, torch.Generator().manual_seed(0), 0.0) is wave
    outs = [random_channel(wave, RATE, torch.Generator().manual_seed(s), 1.0) for s in range(8)]
    again = [random_channel(wave, RATE, torch.Generator().manual_seed(s), 1.0) for s in range(8)]
    for out, twin in zip(outs, again, strict=True):
        assert out.shape == wave.shape
        assert torch.equal(out, twin)
        assert not torch.allclose(out, wave, atol=1e-3)
    assert len({round(_rms(o), 5) for o in outs}) > 1  # the channel is drawn, not fixed
