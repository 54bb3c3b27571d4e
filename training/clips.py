"""Clip timing (AVID_SPEC §2) and clips cut from files decoded once into memory.

Video starts lie on the 1/fps frame grid, so a clip cut from a whole file decoded at `fps`
(`DecodedMedia`) shows the same frames as `avid_model.media.read_clip` at that start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from avid_model.features import PreprocessConfig
from avid_model.media import decode_audio, decode_video, probe

_EPS = 1e-6


@dataclass(frozen=True)
class ClipWindow:
    """Start times in seconds of the video clip and the audio window of one item."""

    video_start: float
    audio_start: float


def _on_grid(t: float, rate: float) -> float:
    return round(t * rate) / rate


def train_window(
    duration: float, cfg: PreprocessConfig, generator: torch.Generator, max_desync: float
) -> ClipWindow:
    """A random audio window, and a video start on the frame grid within
    [audio_start - max_desync, audio_start + audio_seconds - clip_seconds + max_desync]
    (= [a - 0.5, a + 2] with the defaults), both clipped to the file."""
    audio_room = max(0.0, duration - cfg.audio_seconds)
    audio_start = _on_grid(audio_room * float(torch.rand((), generator=generator)), cfg.sample_rate)
    video_room = max(0.0, duration - cfg.clip_seconds)
    lo = min(max(audio_start - max_desync, 0.0), video_room)
    hi = min(max(audio_start + cfg.audio_seconds - cfg.clip_seconds + max_desync, 0.0), video_room)
    first, last = math.ceil(lo * cfg.fps - _EPS), math.floor(hi * cfg.fps + _EPS)
    if first <= last:
        frame = int(torch.randint(first, last + 1, (), generator=generator))
    else:  # the window is shorter than one frame step
        frame = round(lo * cfg.fps)
    return ClipWindow(video_start=frame / cfg.fps, audio_start=audio_start)


def test_window(duration: float, cfg: PreprocessConfig, clip: int, clips: int) -> ClipWindow:
    """Clip `clip` of `clips` at test time: windows start together at the centre of the
    clip-th of `clips` equal parts of the room for an audio window (one clip: centred)."""
    room = max(0.0, duration - cfg.audio_seconds)
    start = _on_grid(room * (clip + 0.5) / clips, cfg.fps)
    return ClipWindow(video_start=start, audio_start=start)


@dataclass(frozen=True)
class DecodedMedia:
    """A whole file in memory: frames (T, H, W, 3) uint8 at cfg.fps (short side resize_short)
    and mono audio (N,) float32 at cfg.sample_rate; None for a stream the file lacks."""

    duration: float
    frames: torch.Tensor | None
    audio: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.frames, self.audio) if t is not None)


def decode_media(path: Path, cfg: PreprocessConfig) -> DecodedMedia:
    """Decode a file once, as `read_clip` would decode every clip of it."""
    info = probe(path)
    frames = (
        decode_video(path, fps=cfg.fps, short_side=cfg.resize_short) if info.has_video else None
    )
    audio = decode_audio(path, sample_rate=cfg.sample_rate) if info.has_audio else None
    return DecodedMedia(duration=info.duration, frames=frames, audio=audio)


class MediaCache:
    """Whole files decoded once and kept for the life of a process, for every dataset given it.

    `training.results_table` trains and evaluates a dozen runs on the same files; with one
    cache each file is decoded once, not once per training run and once per evaluation. An
    entry is keyed by the file (resolved path, size, modification time) and by the decode
    settings (fps, short side, sample rate), so a changed file or other settings decode anew.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[object, ...], DecodedMedia] = {}

    @staticmethod
    def _key(path: Path, cfg: PreprocessConfig) -> tuple[object, ...]:
        stat = Path(path).stat()
        return (
            str(Path(path).resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            cfg.fps,
            cfg.resize_short,
            cfg.sample_rate,
        )

    def get(self, path: Path, cfg: PreprocessConfig) -> DecodedMedia | None:
        return self._items.get(self._key(path, cfg))

    def put(self, path: Path, cfg: PreprocessConfig, media: DecodedMedia) -> None:
        self._items[self._key(path, cfg)] = media

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._items.values())


def cut_clip(
    media: DecodedMedia, window: ClipWindow, cfg: PreprocessConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(clip_frames, H, W, 3) uint8 (last frame held past the end) and (audio_samples,)
    float32 (zero-padded), like `read_clip`; None for a missing stream."""
    video = None
    if media.frames is not None and media.frames.shape[0] > 0:
        first = round(window.video_start * cfg.fps)
        index = (torch.arange(cfg.clip_frames) + first).clamp(0, media.frames.shape[0] - 1)
        video = media.frames[index]
    audio = None
    if media.audio is not None:
        a = round(window.audio_start * cfg.sample_rate)
        audio = torch.zeros(cfg.audio_samples, dtype=torch.float32)
        part = media.audio[a : a + cfg.audio_samples]
        audio[: part.shape[0]] = part
    return video, audio
