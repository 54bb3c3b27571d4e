"""AV-Digits: a labelled audio-visual benchmark this project generates for itself.

Each clip is an MP4 (h264 + AAC, 24 kHz mono) in which a voice says one digit word and a
handwritten digit of the same class pulses in brightness and size with the word's loudness,
while a handwritten distractor of another class drifts but never pulses. Only the class and
the timing link sound and picture; everything else is drawn independently of the label.

Splits share no voice and no handwriting sample (avdigits_splits); clip i is drawn from its own
RNG seeded by (seed, i) (avdigits_clip), so the output does not depend on how the clips are
spread over worker processes. This module writes the files, dataset.json and manifest.jsonl,
and reads the manifest back.

    manifest = generate("data/avdigits", clips=2000, seed=0)
    records = load_manifest(manifest)
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avid_model.media_writer import write_media
from training import avdigits_audio as audio
from training.avdigits_clip import (
    ClipContent,
    ClipRecord,
    RenderSettings,
    synthesize_clip,
)
from training.avdigits_splits import (
    NUM_CLASSES,
    SPLIT_FRACTIONS,
    SPLITS,
    SplitPools,
    plan_clips,
    split_pools,
)

__all__ = [
    "ClipContent",
    "ClipRecord",
    "RenderSettings",
    "SplitPools",
    "generate",
    "load_manifest",
    "plan_clips",
    "split_pools",
    "synthesize_clip",
]

GENERATOR_VERSION = "2.0"
MANIFEST_NAME = "manifest.jsonl"
DATASET_INFO_NAME = "dataset.json"
AUDIO_BITRATE = 64_000  # mono speech at 24 kHz
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _write_clip(
    out_dir: Path, seed: int, settings: RenderSettings, job: tuple[int, str, int]
) -> ClipRecord:
    index, split, label = job
    clip = synthesize_clip(index, split, label, seed, settings)
    write_media(
        out_dir / clip.record.path,
        video=clip.frames,
        fps=settings.fps,
        audio=clip.waveform,
        sample_rate=audio.SAMPLE_RATE,
        audio_bitrate=AUDIO_BITRATE,
    )
    return clip.record


def _keep_freed_memory() -> None:
    """Worker initializer: stop glibc handing big numpy/FFmpeg buffers back to the OS after each
    clip (every clip then page-faults them in again, a third of the workers' system time)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks, unlike os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _write_json_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _dataset_info(
    records: list[ClipRecord], seed: int, settings: RenderSettings, pools: SplitPools
) -> dict[str, object]:
    counts: dict[str, dict[str, object]] = {}
    for split in SPLITS:
        labels = [r.label for r in records if r.split == split]
        per_class = np.bincount(np.array(labels, dtype=np.int64), minlength=NUM_CLASSES)
        counts[split] = {"total": len(labels), "per_class": [int(n) for n in per_class]}
    return {
        "name": "AV-Digits",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "clips": len(records),
        "counts": counts,
        "parameters": {
            **dataclasses.asdict(settings),
            "sample_rate": audio.SAMPLE_RATE,
            "video_codec": "libx264",
            "audio_codec": "aac",
            "audio_bitrate": AUDIO_BITRATE,
            "word_window": audio.WORD_WINDOW_S,
            "split_fractions": list(SPLIT_FRACTIONS),
            "pitch_range": list(audio.PITCH_RANGE),
            "speed_range": list(audio.SPEED_RANGE),
            "snr_db_range": list(audio.SNR_DB_RANGE),
            "level_dbfs_range": list(audio.LEVEL_DBFS_RANGE),
            "noise_kinds": list(audio.NOISE_KINDS),
        },
        "speakers": {split: list(pools.speakers[split]) for split in SPLITS},
        "handwriting_per_split": {
            split: sum(len(c) for c in pools.handwriting[split]) for split in SPLITS
        },
    }


def generate(
    out_dir: str | Path,
    clips: int,
    seed: int = 0,
    workers: int | None = None,
    settings: RenderSettings | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write `clips` clips, dataset.json and manifest.jsonl into out_dir; return the manifest path.

    workers: processes to use (None: all cores; 1: in this process). A previous data set in
    out_dir (a manifest or dataset.json) is an error unless `overwrite`. Raises ValueError for
    bad arguments, NotADirectoryError / FileExistsError for a bad out_dir and
    avdigits_audio.EspeakNotFoundError when espeak-ng is missing.
    """
    settings = settings or RenderSettings()
    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    workers = available_cores() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    manifest = out / MANIFEST_NAME
    if not overwrite and (manifest.exists() or (out / DATASET_INFO_NAME).exists()):
        raise FileExistsError(f"{out} already holds a data set")
    audio.require_espeak()

    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    pools = split_pools(seed)
    jobs = [(i, split, label) for i, (split, label) in enumerate(plan_clips(clips, seed))]
    write_one = partial(_write_clip, out, seed, settings)
    with ExitStack() as stack:
        results: Iterator[ClipRecord]
        if workers == 1:
            results = map(write_one, jobs)
        else:
            pool = stack.enter_context(
                # forkserver, not fork: the caller may hold threads (a service, a test
                # session with broker clients) whose locks a forked child would inherit held.
                ProcessPoolExecutor(
                    min(workers, clips),
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_keep_freed_memory,
                )
            )
            # Submitting everything starts the workers before tqdm starts its monitor thread.
            chunk = max(1, min(16, clips // (4 * workers)))
            results = pool.map(write_one, jobs, chunksize=chunk)
        bar = tqdm(results, total=clips, desc="AV-Digits", unit="clip", disable=not progress)
        records = list(bar)

    info = _dataset_info(records, seed, settings, pools)
    _write_json_atomically(out / DATASET_INFO_NAME, json.dumps(info, indent=2) + "\n")
    lines = [json.dumps(dataclasses.asdict(r), sort_keys=True) for r in records]
    _write_json_atomically(manifest, "\n".join(lines) + "\n")
    return manifest


def load_manifest(path: str | Path) -> list[ClipRecord]:
    """Read manifest.jsonl (or the folder holding it) into ClipRecords, in clip order."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    names = [f.name for f in dataclasses.fields(ClipRecord)]
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = set(names) - set(row)
                if missing:
                    raise ValueError(f"missing fields {sorted(missing)}")
                record = ClipRecord(**{name: row[name] for name in names})
                if record.split not in SPLITS or not 0 <= record.label < NUM_CLASSES:
                    raise ValueError(f"split {record.split!r}, label {record.label!r}")
                records.append(record)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: bad manifest row: {exc}") from exc
    return records
