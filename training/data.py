"""The audio-visual clip data set for AVID training and evaluation, and spectrogram statistics.

Decoding runs in DataLoader workers through the shared media pipeline (`read_clip`), or, with
`cache=True`, from whole files decoded once and kept in memory (`fill_cache`, in the main
process before the loader starts; forked workers share it). Item i of epoch e draws all its
randomness from a generator seeded by (seed, e, i), so workers and resumed runs reproduce it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from avid_model.features import (
    PreprocessConfig,
    SpectrogramStats,
    compute_spectrogram_stats,
    log_spectrogram,
    video_clip_to_tensor,
)
from avid_model.media import decode_audio, probe, read_clip
from training.augment import AugmentConfig, VideoAugment, random_channel, random_volume
from training.clips import (
    ClipWindow,
    DecodedMedia,
    MediaCache,
    cut_clip,
    decode_media,
    test_window,
    train_window,
)
from training.sources import VideoRecord

Progress = Callable[[int, int], None]  # (files done, files in all)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch, index) (all >= 0), independent of each other."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


class _SharedTally:
    """Counters in shared memory, summed over the main process and its DataLoader workers.

    Lock-free (a lock made in a fork context cannot travel to spawned workers): each process
    adds to its own slot, found from its worker id.
    """

    _SLOTS = 257  # the main process and 256 workers (higher worker ids share slots)

    def __init__(self, names: Sequence[str]) -> None:
        self._names = list(names)
        self._counts = multiprocessing.RawArray("q", self._SLOTS * len(self._names))

    def add(self, name: str) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (self._SLOTS - 1)
        self._counts[slot * len(self._names) + self._names.index(name)] += 1

    def total(self, name: str) -> int:
        k, n = self._names.index(name), len(self._names)
        return sum(self._counts[slot * n + k] for slot in range(self._SLOTS))


class _DecodeFiles(Dataset[DecodedMedia]):
    """Whole-file decoding, to fill a cache with DataLoader workers."""

    def __init__(self, records: Sequence[VideoRecord], cfg: PreprocessConfig) -> None:
        self.records, self.cfg = records, cfg

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> DecodedMedia:
        return decode_media(self.records[i].path, self.cfg)


class AVClipDataset(Dataset[dict[str, Any]]):
    """Clips of `records`: item i is clip i // len(records) of video i % len(records).

    Each item is a dict: ``video`` (3, T, crop, crop) float32, ``audio`` (1, 200, 257) float32
    normalised with `stats`, ``index`` (the video index: one memory slot per video), ``label``,
    ``video_start`` / ``audio_start`` (s), ``has_audio`` (False: silence stood in for a missing
    audio track; `missing_audio` counts such items over all workers).

    Training: a random 2 s audio window, a video start within the desync bound, "msc+color"
    and volume augmentation. Test: windows starting together, evenly spread over the file by
    clip index, no augmentation.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        preprocess: PreprocessConfig,
        stats: SpectrogramStats,
        *,
        train: bool,
        clips_per_video: int = 1,
        max_desync: float = 0.5,
        cache: bool = False,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        media_cache: MediaCache | None = None,
    ) -> None:
        if not records:
            raise ValueError("AVClipDataset needs at least one record")
        if clips_per_video < 1 or max_desync < 0 or seed < 0:
            raise ValueError(
                f"need clips_per_video >= 1, max_desync >= 0, seed >= 0; got "
                f"{clips_per_video}, {max_desync}, {seed}"
            )
        self.records = list(records)
        self.preprocess = preprocess
        self.stats = stats
        self.train = train
        self.clips_per_video = clips_per_video
        self.max_desync = max_desync
        self.cache = cache
        self.seed = seed
        self.augment_config = augment or AugmentConfig()
        self.video_augment = VideoAugment(preprocess, self.augment_config)
        self._cache: dict[int, DecodedMedia] = {}
        # Files decoded by other datasets of this process (fill_cache takes them from there
        # and puts what it decodes there).
        self.media_cache = media_cache
        self._durations: dict[int, float] = {}
        # In shared memory, so set_epoch reaches persistent workers and counts add up.
        self._epoch = multiprocessing.RawValue("q", 0)
        self._missing = _SharedTally(("audio", "video"))

    # ------------------------------------------------------------------ bookkeeping

    def __len__(self) -> int:
        return len(self.records) * self.clips_per_video

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Call before iterating the loader for `epoch` (changes every training item)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.value = epoch

    @property
    def missing_audio(self) -> int:
        """Items served with silence because their file has no audio track (all workers)."""
        return self._missing.total("audio")

    @property
    def missing_video(self) -> int:
        """Items served with a blank clip because their file has no video track."""
        return self._missing.total("video")

    @property
    def cached_files(self) -> int:
        return len(self._cache)

    @property
    def cache_bytes(self) -> int:
        return sum(m.nbytes for m in self._cache.values())

    # ------------------------------------------------------------------ cache

    def fill_cache(self, *, workers: int = 0, progress: Progress | None = None) -> None:
        """Decode every file once into memory (in this process; `workers` decode in parallel).

        Call before creating the DataLoader: forked workers then share the decoded frames.
        Files already in `media_cache` are taken from it, and the ones decoded here put there.
        Without it, `cache=True` fills a separate cache in each worker as files are first used.
        """
        todo = [i for i in range(len(self.records)) if i not in self._cache]
        if self.media_cache is not None:
            for i in todo:
                shared = self.media_cache.get(self.records[i].path, self.preprocess)
                if shared is not None:
                    self._cache[i] = shared
            todo = [i for i in todo if i not in self._cache]
        if not todo:  # all there: no loader (and no worker processes) to start
            return
        files = _DecodeFiles([self.records[i] for i in todo], self.preprocess)
        loader = DataLoader(files, batch_size=None, num_workers=workers)
        for n, (i, media) in enumerate(zip(todo, loader, strict=True), start=1):
            # Copy out of the worker's shared memory: one file descriptor less per tensor.
            self._cache[i] = DecodedMedia(
                duration=media.duration,
                frames=media.frames.clone() if media.frames is not None else None,
                audio=media.audio.clone() if media.audio is not None else None,
            )
            if self.media_cache is not None:
                self.media_cache.put(self.records[i].path, self.preprocess, self._cache[i])
            if progress is not None:
                progress(n, len(todo))

    # ------------------------------------------------------------------ items

    def _duration(self, video: int) -> float:
        if video in self._cache:
            return self._cache[video].duration
        record = self.records[video]
        if record.duration is not None:
            return record.duration
        if video not in self._durations:
            self._durations[video] = probe(record.path).duration
        return self._durations[video]

    def window(self, i: int, generator: torch.Generator | None = None) -> ClipWindow:
        """Start times of item i (training: drawn from `generator`, by default item i's)."""
        video, clip = i % len(self.records), i // len(self.records)
        duration = self._duration(video)
        if not self.train:
            return test_window(duration, self.preprocess, clip, self.clips_per_video)
        gen = generator or item_generator(self.seed, self.epoch, i)
        return train_window(duration, self.preprocess, gen, self.max_desync)

    def _read(
        self, video: int, window: ClipWindow
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.cache and video not in self._cache:  # not filled up front: this process's
            self._cache[video] = decode_media(self.records[video].path, self.preprocess)
        if video in self._cache:
            return cut_clip(self._cache[video], window, self.preprocess)
        return read_clip(
            self.records[video].path,
            video_start=window.video_start,
            audio_start=window.audio_start,
            preprocess=self.preprocess,
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        cfg = self.preprocess
        video_index = i % len(self.records)
        gen = item_generator(self.seed, self.epoch, i)
        window = self.window(i, gen)
        frames, waveform = self._read(video_index, window)

        if frames is None:
            self._missing.add("video")
            video = torch.zeros(3, cfg.clip_frames, cfg.crop_size, cfg.crop_size)
        elif self.train:
            video = self.video_augment(frames, gen)
        else:
            video = video_clip_to_tensor(frames, cfg)

        has_audio = waveform is not None
        if waveform is None:
            self._missing.add("audio")
            waveform = torch.zeros(cfg.audio_samples)
        elif self.train:
            waveform = random_volume(waveform, gen, self.augment_config.volume)
            waveform = random_channel(waveform, cfg.sample_rate, gen, self.augment_config.channel_p)
        audio = self.stats.normalize(log_spectrogram(waveform, cfg)[0])

        record = self.records[video_index]
        return {
            "video": video,
            "audio": audio,
            "index": video_index,
            "label": record.label,
            "video_start": window.video_start,
            "audio_start": window.audio_start,
            "has_audio": has_audio,
        }


def _stat_windows(
    records: Sequence[VideoRecord], cfg: PreprocessConfig, clips: int, seed: int
) -> Iterator[torch.Tensor]:
    """(audio_samples,) waveforms of `clips` random windows, records visited in a shuffled
    round-robin order (several windows per record when clips > len(records))."""
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(records))
    for k in range(clips):
        record = records[int(order[k % len(records)])]
        info = probe(record.path)
        if not info.has_audio:
            continue
        start = float(rng.uniform(0.0, max(0.0, info.duration - cfg.audio_seconds)))
        start = round(start * cfg.sample_rate) / cfg.sample_rate
        yield decode_audio(
            record.path,
            sample_rate=cfg.sample_rate,
            start=start,
            end=start + cfg.audio_seconds,
        )


def dataset_spectrogram_stats(
    records: Sequence[VideoRecord],
    preprocess: PreprocessConfig,
    *,
    clips: int,
    seed: int,
    batch: int = 32,
) -> SpectrogramStats:
    """Per-bin mean/std of log spectrograms of `clips` random 2 s windows (deterministic for a
    seed; files without audio are skipped). ValueError when no record has audio."""
    if not records or clips < 1:
        raise ValueError("dataset_spectrogram_stats needs records and clips >= 1")

    def batches() -> Iterator[torch.Tensor]:
        pending: list[torch.Tensor] = []
        for waveform in _stat_windows(records, preprocess, clips, seed):
            pending.append(waveform)
            if len(pending) == batch:
                yield log_spectrogram(_stack(pending, preprocess), preprocess)
                pending = []
        if pending:
            yield log_spectrogram(_stack(pending, preprocess), preprocess)

    try:
        return compute_spectrogram_stats(batches())
    except ValueError as exc:
        raise ValueError("no audio in the records to compute spectrogram stats from") from exc


def _stack(waveforms: list[torch.Tensor], cfg: PreprocessConfig) -> torch.Tensor:
    out = torch.zeros(len(waveforms), cfg.audio_samples)
    for row, w in zip(out, waveforms, strict=True):
        row[: min(w.shape[0], cfg.audio_samples)] = w[: cfg.audio_samples]
    return out
