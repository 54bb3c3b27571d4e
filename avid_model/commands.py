"""The model library's own ``avid`` subcommands: models, info, embed, import-reference, sample."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avid_model.checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    configured_checkpoint,
    load_checkpoint,
    read_metadata,
)
from avid_model.command_args import CommandError
from avid_model.errors import MediaError
from avid_model.features import SpectrogramStats
from avid_model.inference import Embedder, FileEmbedding, InferenceSettings
from avid_model.media_writer import write_media
from avid_model.model import AVIDModel
from avid_model.reference import import_reference
from avid_model.registry import UnknownModelError, create_model, list_models, model_entry


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("models", help="list the registered model configurations")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("info", help="show a checkpoint's metadata")
    p.add_argument("checkpoint", type=Path)
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("embed", help="embed a media file and print its vectors' summary")
    p.add_argument("file", type=Path, help="a video or audio file FFmpeg can read")
    _add_model_options(p)
    p.add_argument("--hop", type=float, default=1.0, help="seconds between window starts")
    p.add_argument("--json", type=Path, help="also write the per-window vectors here")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser(
        "import-reference", help="convert a reference AVID-CMA *.pth.tar into a checkpoint"
    )
    p.add_argument("src", type=Path, help="the reference checkpoint (*.pth.tar)")
    p.add_argument("dest", type=Path, help="the checkpoint directory to write")
    p.add_argument(
        "--stats",
        type=Path,
        help="JSON with per-bin spectrogram 'mean' and 'std' (257 each); default: identity",
    )
    p.set_defaults(func=cmd_import_reference)

    p = subparsers.add_parser(
        "sample", help="write a sample audio-visual file and embed it window by window"
    )
    _add_model_options(p)
    p.add_argument("--out", type=Path, default=Path("out/sample"), help="where the sample goes")
    p.set_defaults(func=cmd_sample)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--checkpoint",
        type=Path,
        help=f"a checkpoint directory (default: $AVID_CHECKPOINT, else {DEFAULT_CHECKPOINT}; "
        "as `avid serve`)",
    )
    group.add_argument(
        "--model", help="a registered name, randomly initialised (random weights, no checkpoint)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")


def _load_model(args: argparse.Namespace) -> AVIDModel:
    try:
        if args.model is not None:
            torch.manual_seed(0)
            return create_model(args.model).eval()
        if args.checkpoint is not None:
            return load_checkpoint(args.checkpoint)
        path, source = configured_checkpoint()
        if source == "the default":
            path = DEFAULT_CHECKPOINT  # read at call time (tests point it elsewhere)
        if not path.exists():
            raise CommandError(
                f"no checkpoint given and {source} {path} does not exist: "
                "pass --checkpoint DIR, or --model NAME for random weights"
            )
        return load_checkpoint(path)
    except (CheckpointError, UnknownModelError) as exc:
        raise CommandError(str(exc)) from exc


def _embedder(args: argparse.Namespace) -> Embedder:
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    settings = InferenceSettings(
        device=args.device, precision=args.precision, batch_size=args.batch_size
    )
    return Embedder(_load_model(args), settings)


def _embed(embedder: Embedder, path: Path, hop: float) -> tuple[FileEmbedding, float]:
    if not hop > 0 or not math.isfinite(hop):
        raise CommandError("--hop must be a positive number of seconds")
    start = time.perf_counter()
    try:
        result = embedder.embed_file(path, hop=hop)
    except MediaError as exc:
        raise CommandError(str(exc)) from exc
    return result, time.perf_counter() - start


def cmd_models(args: argparse.Namespace) -> int:
    for name in list_models():
        entry = model_entry(name)
        n = sum(p.numel() for p in create_model(name).parameters())
        print(f"{name:14s} {n:>12,d} parameters  {entry.config.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    try:
        meta = read_metadata(args.checkpoint)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc
    shown = {k: v for k, v in meta.items() if k != "spectrogram_stats"}
    print(json.dumps(shown, indent=2))
    return 0


def _summary(result: FileEmbedding, seconds: float, version: str) -> list[str]:
    lines = [
        f"model: {version}",
        f"duration {result.duration:.2f} s, video: {result.has_video}, audio: {result.has_audio}",
        f"windows: {len(result.starts)} in {seconds:.2f} s "
        f"({len(result.starts) / max(seconds, 1e-9):.1f} windows/s)",
    ]
    for name, vectors in (("video", result.video), ("audio", result.audio)):
        if vectors is not None:
            lines.append(
                f"{name} vectors {tuple(vectors.shape)}, norms "
                f"{vectors.norm(dim=1).min():.4f}..{vectors.norm(dim=1).max():.4f}"
            )
    return lines


def cmd_embed(args: argparse.Namespace) -> int:
    embedder = _embedder(args)
    result, seconds = _embed(embedder, args.file, args.hop)
    print("\n".join(_summary(result, seconds, embedder.model_version)))
    if args.json is not None:
        payload: dict[str, Any] = {
            "file": args.file.name,
            "model_version": embedder.model_version,
            "duration": result.duration,
            "has_video": result.has_video,
            "has_audio": result.has_audio,
            "windows": [
                {"start": s, "end": e} for s, e in zip(result.starts, result.ends, strict=True)
            ],
            "video": None if result.video is None else result.video.tolist(),
            "audio": None if result.audio is None else result.audio.tolist(),
        }
        args.json.write_text(json.dumps(payload))
        print(f"wrote {args.json}")
    return 0


def cmd_import_reference(args: argparse.Namespace) -> int:
    stats = None
    if args.stats is not None:
        try:
            stats = SpectrogramStats.from_dict(json.loads(args.stats.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"--stats {args.stats}: {exc}") from exc
    try:
        meta = import_reference(args.src, args.dest, stats)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"wrote {args.dest}: {meta['model_version']} (memory: {meta['extra']['memory'] or 'none'})"
    )
    if stats is None:
        print("note: no --stats given; spectrograms are used unnormalised (identity statistics)")
    return 0


def write_sample(path: Path, seconds: float = 4.0) -> None:
    """A moving square whose brightness follows a beeping tone (25 fps, 44.1 kHz stereo)."""
    fps, rate, size = 25, 44_100, (120, 160)
    t_video = np.arange(int(seconds * fps)) / fps
    beep = (np.floor(t_video * 2) % 2 == 0).astype(np.float32)  # on for 0.5 s, off for 0.5 s
    frames = np.zeros((len(t_video), *size, 3), dtype=np.uint8)
    frames[..., 2] = 40
    for i, t in enumerate(t_video):
        x = int(20 + 100 * (0.5 + 0.5 * math.sin(2 * math.pi * t / seconds)))
        frames[i, 40:80, x : x + 40, :] = int(80 + 175 * beep[i])
    t_audio = np.arange(int(seconds * rate)) / rate
    gate = (np.floor(t_audio * 2) % 2 == 0).astype(np.float32)
    tone = 0.4 * gate * np.sin(2 * math.pi * 660 * t_audio).astype(np.float32)
    write_media(path, video=frames, fps=fps, audio=np.stack([tone, 0.8 * tone]), sample_rate=rate)


def cmd_sample(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    sample = args.out / "sample.mp4"
    write_sample(sample)
    print(f"wrote sample {sample} (4 s, 160x120 at 25 fps, h264 + AAC 44.1 kHz stereo)")
    embedder = _embedder(args)
    print(f"device {embedder.device}, precision {str(embedder.dtype).removeprefix('torch.')}")
    result, seconds = _embed(embedder, sample, hop=0.5)
    print("\n".join(_summary(result, seconds, embedder.model_version)))
    if result.video is not None and result.audio is not None:
        sims = result.audio @ result.video.T
        print("audio->video cosine similarity per window (rows: audio windows):")
        header = "        " + " ".join(f"{s:5.1f}s" for s in result.starts)
        print(header)
        for start, row in zip(result.starts, sims.tolist(), strict=True):
            print(f"{start:5.1f}s  " + " ".join(f"{v:6.3f}" for v in row))
        if "untrained" in embedder.model_version:
            print("(an untrained model: these numbers show the pipeline runs, not what it learnt)")
    return 0
