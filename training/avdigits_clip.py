"""One AV-Digits clip: a spoken digit and two handwritten digits, one pulsing with the word.

Clip i is drawn from its own RNG seeded by (seed, i), so its content never depends on which
worker makes it or in what order. Only the class and the timing link sound and picture: voice,
pitch, speed, noise, level, background, colours, positions, drift and the distractor are drawn
independently of the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import avdigits_audio as audio
from training import avdigits_video as video
from training.avdigits_splits import NUM_CLASSES, SplitPools, split_pools


@dataclass(frozen=True)
class ClipRecord:
    """One row of manifest.jsonl. `path` is relative to the manifest's folder."""

    index: int
    path: str
    label: int
    split: str
    speaker: str
    handwriting: int
    onset: float
    offset: float
    distractor_label: int
    distractor_handwriting: int
    noise: str
    snr_db: float


@dataclass(frozen=True)
class RenderSettings:
    """How clips look and sound (recorded in dataset.json)."""

    size: int = 128
    fps: float = 16.0
    duration: float = 2.5

    def __post_init__(self) -> None:
        if not (32 <= self.size <= 1024 and self.size % 2 == 0):
            raise ValueError(f"size must be an even number of pixels in 32..1024, got {self.size}")
        if not 8.0 <= self.fps <= 60.0:
            raise ValueError(f"fps must be within 8..60, got {self.fps}")
        if not 1.5 <= self.duration <= 10.0:
            raise ValueError(f"duration must be within 1.5..10 seconds, got {self.duration}")

    @property
    def n_frames(self) -> int:
        return round(self.duration * self.fps)

    @property
    def n_samples(self) -> int:
        return round(self.duration * audio.SAMPLE_RATE)


@dataclass(frozen=True)
class ClipContent:
    """A synthesised clip before encoding, with the per-frame parameters that drove it."""

    record: ClipRecord
    frames: np.ndarray  # (T, H, W, 3) uint8
    waveform: np.ndarray  # (N,) float32 at audio.SAMPLE_RATE
    speech_envelope: np.ndarray  # (T,) loudness of the spoken word per frame, in [0, 1]
    target: video.DigitTrack
    distractor: video.DigitTrack


def _random_word(
    pools: SplitPools, split: str, word: int, rng: np.random.Generator
) -> tuple[str, np.ndarray]:
    speaker = str(rng.choice(pools.speakers[split]))
    pitch = int(rng.integers(audio.PITCH_RANGE[0], audio.PITCH_RANGE[1] + 1))
    speed = int(rng.integers(audio.SPEED_RANGE[0], audio.SPEED_RANGE[1] + 1))
    return speaker, audio.synthesize_word(audio.DIGIT_WORDS[word], speaker, pitch, speed)


def synthesize_clip(
    index: int, split: str, label: int, seed: int, settings: RenderSettings
) -> ClipContent:
    """Clip `index` of the data set for `seed`: frames, waveform and the parameters behind them."""
    rng = np.random.default_rng([seed, 0, index])
    pools = split_pools(seed)
    images, _ = video.handwriting_images()

    speaker, speech = _random_word(pools, split, label, rng)
    sound = audio.mix_soundtrack(speech, settings.n_samples, rng)
    envelope = audio.frame_envelope(sound.speech, settings.n_frames, settings.fps)

    handwriting = int(rng.choice(pools.handwriting[split][label]))
    distractor_label = int((label + rng.integers(1, NUM_CLASSES)) % NUM_CLASSES)
    distractor_handwriting = int(rng.choice(pools.handwriting[split][distractor_label]))
    # The distractor drifts like the target but never pulses: it does not follow the sound.
    distractor_drive = np.zeros(settings.n_frames, dtype=np.float32)

    background = video.make_background(settings.size, rng)
    background_luma = video.luminance(background.reshape(-1, 3).mean(axis=0))
    first_place, second_place, base_height = video.layout_pair(
        settings.size, settings.n_frames, rng
    )
    if rng.integers(2):  # which of the two places holds the target
        first_place, second_place = second_place, first_place
    tracks = [
        video.digit_track(
            images[sample],
            video.contrasting_colour(background_luma, rng),
            place,
            base_height,
            drive,
            rng,
        )
        for sample, place, drive in [
            (handwriting, first_place, video.pulse_drive(envelope, settings.fps)),
            (distractor_handwriting, second_place, distractor_drive),
        ]
    ]
    record = ClipRecord(
        index=index,
        path=f"{split}/{index:06d}.mp4",
        label=label,
        split=split,
        speaker=speaker,
        handwriting=handwriting,
        onset=sound.onset,
        offset=sound.offset,
        distractor_label=distractor_label,
        distractor_handwriting=distractor_handwriting,
        noise=sound.noise,
        snr_db=sound.snr_db,
    )
    return ClipContent(
        record=record,
        frames=video.render_frames(background, tracks),
        waveform=sound.waveform,
        speech_envelope=envelope,
        target=tracks[0],
        distractor=tracks[1],
    )
