"""Training augmentation: one set of random parameters per clip, reproducible from a generator."""

from __future__ import annotations

import pytest
import torch

from avid_model.features import PreprocessConfig
from training.augment import AugmentConfig, VideoAugment, random_volume

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
