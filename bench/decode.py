"""Decoding throughput and memory: serving windows (`iter_windows`) vs training clips (`read_clip`).

Writes a synthetic H.264 + AAC file (moving content) with `write_media`, then runs each
measurement in a fresh process so its peak resident set size (ru_maxrss) is its own. Prints a
markdown table and writes JSON.

    .venv/bin/python -m bench.decode --seconds 60 --height 720
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avid_model.features import PreprocessConfig
from avid_model.media import WindowStats, iter_windows, probe, read_clip
from avid_model.media_writer import write_media


def make_video(
    path: Path, seconds: float, height: int, fps: float, sample_rate: int, gop: int | None
) -> None:
    """Write `seconds` of 16:9 video with a moving gradient, a moving square and noise.

    The frames live in a temporary memory-mapped file (a minute of 720p is ~5 GB of RGB).
    """
    with tempfile.TemporaryDirectory() as tmp:
        _make_video(path, Path(tmp) / "frames.u8", seconds, height, fps, sample_rate, gop)


def _make_video(
    path: Path,
    scratch: Path,
    seconds: float,
    height: int,
    fps: float,
    sample_rate: int,
    gop: int | None,
) -> None:
    width = round(height * 16 / 9 / 2) * 2
    n = round(seconds * fps)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(n, height, width, 3))
    for k in range(n):
        frames[k, ..., 0] = (xx + 4 * k) % 256
        frames[k, ..., 1] = (yy + 2 * k) % 256
        frames[k, ..., 2] = ((xx + yy) // 4 + k) % 256
        x0 = (17 * k) % (width - 160)
        y0 = (11 * k) % (height - 160)
        frames[k, y0 : y0 + 160, x0 : x0 + 160] = 255
        frames[k, ::8, ::8] = rng.integers(0, 256, frames[k, ::8, ::8].shape, dtype=np.uint8)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * np.sin(t)) * t)
    audio = np.stack([tone, 0.5 * tone + 0.05 * rng.standard_normal(t.shape)]).astype(np.float32)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    write_media(
        partial,
        video=frames,
        fps=fps,
        audio=audio,
        sample_rate=sample_rate,
        keyframe_interval=gop,
    )
    partial.replace(path)  # --reuse never picks up a half-written file


def _rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM; ru_maxrss where there is none).

    On Linux ru_maxrss survives exec, so a spawned child would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _serving(path: str, hop: float, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = PreprocessConfig()
    base = _rss_mib()
    stats = WindowStats()
    tracemalloc.start()
    t0 = time.perf_counter()
    for _ in iter_windows(path, preprocess=cfg, hop=hop, stats=stats):
        pass
    elapsed = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "clips": stats.windows,
        "seconds": elapsed,
        "clips_per_s": stats.windows / elapsed,
        "rss_before_mib": base,
        "rss_peak_mib": _rss_mib(),
        "py_peak_mib": py_peak / 2**20,
        "max_buffered_frames": stats.max_buffered_frames,
        "max_buffered_samples": stats.max_buffered_samples,
    }


def _training(path: str, clips: int, threads: int, seed: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = PreprocessConfig()
    duration = probe(path).duration
    rng = random.Random(seed)
    base = _rss_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    for _ in range(clips):
        audio_start = rng.uniform(0.0, duration - cfg.audio_seconds)
        lo = max(0.0, audio_start - cfg.clip_seconds)
        hi = min(duration - cfg.clip_seconds, audio_start + cfg.audio_seconds)
        read_clip(path, video_start=rng.uniform(lo, hi), audio_start=audio_start, preprocess=cfg)
    elapsed = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "clips": clips,
        "seconds": elapsed,
        "clips_per_s": clips / elapsed,
        "rss_before_mib": base,
        "rss_peak_mib": _rss_mib(),
        "py_peak_mib": py_peak / 2**20,
    }


def _in_fresh_process(fn: Any, *args: Any) -> Any:
    """Run fn(*args) in a new (spawned) process: its memory peak is its own."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test file")
    parser.add_argument("--height", type=int, default=720, help="frame height (16:9)")
    parser.add_argument("--fps", type=float, default=30.0, help="source frame rate")
    parser.add_argument("--sample-rate", type=int, default=48000, help="source audio rate")
    parser.add_argument("--hop", type=float, default=1.0, help="serving window hop (s)")
    parser.add_argument("--clips", type=int, default=100, help="random read_clip calls")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--keyframe-interval",
        type=int,
        default=None,
        help="frames between keyframes (default: x264's 250); read_clip decodes from one",
    )
    parser.add_argument(
        "--media",
        type=Path,
        default=Path(tempfile.gettempdir()) / "avid_bench_decode_input.mp4",
        help="where the synthetic input is written (kept out of the repository)",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse --media if it exists")
    parser.add_argument("--json", type=Path, default=Path("bench/results/decode.json"))
    args = parser.parse_args(argv)

    args.media.parent.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and args.media.exists()):
        t0 = time.perf_counter()
        _in_fresh_process(
            make_video,
            args.media,
            args.seconds,
            args.height,
            args.fps,
            args.sample_rate,
            args.keyframe_interval,
        )
        print(f"wrote {args.media} in {time.perf_counter() - t0:.1f} s")
    info = probe(args.media)
    media = str(args.media)
    serving = _in_fresh_process(_serving, media, args.hop, args.threads)
    training = _in_fresh_process(_training, media, args.clips, args.threads, 0)

    print(
        f"\ninput: {info.width}x{info.height} {info.video_codec} {info.fps:.0f} fps + "
        f"{info.audio_codec} {info.sample_rate} Hz x{info.channels}, {info.duration:.1f} s, "
        f"{info.file_bytes / 2**20:.1f} MiB; output clips 8x128xW uint8 + 48000 samples\n"
    )
    print(
        "| mode | clips | time (s) | clips/s | peak RSS (MiB) | RSS at start (MiB) "
        "| py peak (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("serving iter_windows", serving), ("training read_clip", training)):
        print(
            f"| {name} | {r['clips']} | {r['seconds']:.2f} | {r['clips_per_s']:.1f} | "
            f"{r['rss_peak_mib']:.0f} | {r['rss_before_mib']:.0f} | {r['py_peak_mib']:.1f} |"
        )
    print(
        f"\nserving buffer high-water mark: {serving['max_buffered_frames']} frames, "
        f"{serving['max_buffered_samples']} samples; load average {os.getloadavg()[0]:.1f} "
        f"on {multiprocessing.cpu_count()} CPUs"
    )
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "input": {
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "duration": info.duration,
            "file_bytes": info.file_bytes,
        },
        "serving": serving,
        "training": training,
        "machine": {
            "platform": platform.platform(),
            "cpus": multiprocessing.cpu_count(),
            "load_average_1_5_15": os.getloadavg(),
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
