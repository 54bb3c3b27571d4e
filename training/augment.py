"""Training augmentation "msc+color" (AVID_SPEC §2) for video clips, the audio volume jitter, and
an optional random recording channel for the audio (not in the spec; off by default).

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
import torchaudio.functional as AF
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
    # Probability that a clip's sound passes through a random recording channel (random_channel).
    channel_p: float = 0.0


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


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_volume(
    waveform: torch.Tensor,
    generator: torch.Generator,
    volume: tuple[float, float] = AugmentConfig.volume,
) -> torch.Tensor:
    """Scale a waveform (any shape) by one gain drawn from U(volume[0], volume[1])."""
    return waveform * _uniform(generator, *volume)


TELEPHONE_RATE = 8_000
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: the narrow-band telephone channel (ITU-T G.712)
RT60_RANGE = (0.2, 0.9)  # s: reverberation times drawn for the synthetic rooms


def telephone(waveform: torch.Tensor, rate: int, mu_law: bool) -> torch.Tensor:
    """A (N,) waveform as a narrow-band telephone line passes it: band-limited to 300-3400 Hz,
    sampled at 8 kHz (and, with ``mu_law``, G.711 8-bit mu-law coded), back at ``rate``."""
    low, high = TELEPHONE_BAND
    out = AF.highpass_biquad(waveform, rate, low)
    out = AF.lowpass_biquad(out, rate, high)
    out = AF.resample(out, rate, TELEPHONE_RATE)
    if mu_law:
        peak = float(out.abs().max().clamp_min(1e-8))
        coded = AF.mu_law_encoding((out / peak).clamp(-1.0, 1.0), 256)
        out = AF.mu_law_decoding(coded, 256) * peak
    return AF.resample(out, TELEPHONE_RATE, rate)[: waveform.shape[-1]]


def reverberate(
    waveform: torch.Tensor, rate: int, rt60: float, generator: torch.Generator
) -> torch.Tensor:
    """A (N,) waveform in a synthetic room: convolved with exponentially decaying noise whose
    level falls 60 dB in ``rt60`` seconds (the direct sound first), same length and RMS."""
    n = max(2, round(rate * rt60))
    t = torch.arange(n, dtype=waveform.dtype) / rate
    rir = torch.randn(n, generator=generator, dtype=waveform.dtype) * torch.exp(-6.9078 * t / rt60)
    rir[0] = 1.0
    rir = rir / rir.norm()
    out = AF.fftconvolve(waveform, rir)[: waveform.shape[-1]]
    scale = waveform.norm() / out.norm().clamp_min(1e-8)
    return out * scale


def random_channel(
    waveform: torch.Tensor, rate: int, generator: torch.Generator, p: float
) -> torch.Tensor:
    """With probability ``p``, pass a (N,) waveform through one random recording channel: a
    telephone line (with or without mu-law), a reverberant room, or the room then the line.
    Real voices reach a microphone or a phone through such channels; AV-Digits' words are clean
    espeak-ng output, so a model trained on them alone finds the word much less often once the
    band is narrowed (bench/real_speech.py)."""
    if p <= 0.0 or float(torch.rand((), generator=generator)) >= p:
        return waveform
    # 0: the line, 1: the line with mu-law, 2: the room, 3: the room, then the line with mu-law.
    kind = int(torch.randint(0, 4, (), generator=generator))
    out = waveform
    if kind >= 2:
        out = reverberate(out, rate, _uniform(generator, *RT60_RANGE), generator)
    if kind != 2:
        out = telephone(out, rate, mu_law=kind != 0)
    return out
