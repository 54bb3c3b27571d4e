"""Audio-only embedding of a video file: what ``POST /embed/audio`` (or an audio search by an
uploaded video) costs on a 60 s 720p mp4. Decoding only what is asked means the video stream
is never decoded and the file is probed once; this prints the wall time and how many times
the file was opened (probe + one per decoded stream), and writes JSON (a row per ``--label``:
run it on the old code with ``--label before``, on the new with ``--label after``).

    .venv/bin/python -m bench.decode_audio_only --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import av
import torch

from avid_model.checkpoint import DEFAULT_CHECKPOINT
from avid_model.media import probe
from bench.common import markdown_table, write_json
from bench.decode import make_video
from services.embedding import LocalEmbeddingBackend
from services.index import Modality
from services.settings import Settings


class OpenCounter:
    """Counts ``av.open`` calls (every probe and every decoded stream opens the file)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = av.open

    def __enter__(self) -> OpenCounter:
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return self._real(*args, **kwargs)

        av.open = counting
        return self

    def __exit__(self, *exc: object) -> None:
        av.open = self._real


def measure(
    backend: LocalEmbeddingBackend, path: Path, wanted: frozenset[Modality]
) -> dict[str, Any]:
    with OpenCounter() as opens:
        start = time.perf_counter()
        result = backend.embed_file(path, wanted)
        seconds = time.perf_counter() - start
    return {
        "modalities": "+".join(sorted(wanted)),
        "seconds": seconds,
        "file opens": opens.calls,
        "windows": len(result.starts),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="name of this run's rows (before/after)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--media", type=Path, default=Path("/tmp/avid-bench-60s-720p.mp4"))
    parser.add_argument("--both", action="store_true", help="also time video+audio")
    parser.add_argument("--json", type=Path, default=Path("bench/results/decode_audio_only.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if not args.media.exists():
        print(f"writing {args.media} ({args.seconds:g} s, {args.height}p, {args.fps:g} fps) ...")
        make_video(args.media, args.seconds, args.height, args.fps, 48000, None)
    info = probe(args.media)
    settings = Settings(checkpoint=args.checkpoint, device="cpu", batch_max_wait_ms=0.0)
    backend = LocalEmbeddingBackend.from_settings(settings)
    try:
        rows = [measure(backend, args.media, frozenset({"audio"}))]
        if args.both:
            rows.append(measure(backend, args.media, frozenset({"video", "audio"})))
    finally:
        backend.close()
    for row in rows:
        row["run"] = args.label
    print(
        f"\ninput: {info.width}x{info.height} {info.video_codec} {info.fps:.0f} fps + "
        f"{info.audio_codec} {info.sample_rate} Hz, {info.duration:.1f} s; "
        f"model {backend.model_version}; 1 torch thread; {os.cpu_count()} CPUs\n"
    )
    previous = json.loads(args.json.read_text()) if args.json.exists() else {"rows": []}
    kept = [r for r in previous.get("rows", []) if r.get("run") != args.label]
    all_rows = kept + rows
    print(markdown_table(all_rows, ["run", "modalities", "seconds", "file opens", "windows"]))
    write_json(
        args.json,
        {
            "input": {"seconds": info.duration, "width": info.width, "height": info.height},
            "machine": platform.platform(),
            "rows": all_rows,
        },
    )


if __name__ == "__main__":
    main()
