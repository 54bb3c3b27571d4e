"""Training augmentation "msc+color" (AVID_SPEC §2) for video clips, and the audio volume jitter.

Video: one RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) shared by all frames of a clip,
horizontal flip p=0.5, colour jitter (0.4, 0.4, 0.4, 0.2) drawn once per clip, then /255 and the
ImageNet mean/std. The frames go through torchvision.transforms.v2 as one `tv_tensors.Video`
(T, C, H, W), so every random parameter is drawn once per call and applied to all frames.

Randomness comes from a caller's `torch.Generator` (one per item, seeded from (seed, epoch,
index) by the data set), never from the global RNG state, so items are reproducible in any
DataLoader worker. The test-time path is `avid_model.features.video_clip_to_tensor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2 as T
from torchvision import tv_tensors

from avid_model.features import PreprocessConfig


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the training augmentation (defaults: AVID_SPEC §2)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.2
    volume: tuple[float, float] = (0.9, 1.1)


class VideoAugment:
    """uint8 frames (T, H, W, 3) -> augmented, normalised (3, T, crop, crop) float32."""

    def __init__(self, preprocess: PreprocessConfig, config: AugmentConfig | None = None) -> None:
        cfg = config or AugmentConfig()
        self.preprocess = preprocess
        self.config = cfg
        # Crop first so the colour jitter works on the small crop.
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(
                    preprocess.crop_size,
                    scale=cfg.crop_scale,
                    ratio=cfg.crop_ratio,
                    antialias=True,
                ),
                T.RandomHorizontalFlip(p=cfg.flip_p),
                T.ColorJitter(
                    brightness=cfg.brightness,
                    contrast=cfg.contrast,
                    saturation=cfg.saturation,
                    hue=cfg.hue,
                ),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(mean=list(preprocess.video_mean), std=list(preprocess.video_std)),
            ]
        )

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment one clip.

        Args:
            frames: (T, H, W, 3) uint8 RGB.
            generator: the only source of randomness (one seed is drawn from it).
        Returns:
            (3, T, crop_size, crop_size) float32.
        """
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}"
            )
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # (T, 3, H, W)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        # v2 draws its parameters from the global CPU RNG; confine that to this call (seeding
        # only the CPU generator: torch.manual_seed would also queue lazy accelerator seeding).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            out = self.transform(video)
        return out.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


def random_volume(
    waveform: torch.Tensor,
    generator: torch.Generator,
    volume: tuple[float, float] = AugmentConfig.volume,
) -> torch.Tensor:
    """Scale a waveform (any shape) by one gain drawn from U(volume[0], volume[1])."""
    low, high = volume
    gain = low + (high - low) * float(torch.rand((), generator=generator))
    return waveform * gain
