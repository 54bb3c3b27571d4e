"""``avid demo``'s work (its parser is in ``services.cli``): the README's main job,
against the real HTTP service (see ``services.cli.DEMO_DESCRIPTION``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from avid_model.command_args import CommandError
from services.api.app import create_app
from services.settings import Settings

STARTUP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Clip:
    item_id: str
    path: Path
    label: int
    metadata: dict[str, Any]


def read_clips(manifest: Path, split: str | None, limit: int) -> list[Clip]:
    """The clips of ``split`` (all when None) in an AV-Digits ``manifest.jsonl``."""
    try:
        lines = manifest.read_text().splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read {manifest}: {exc.strerror or exc}") from exc
    clips = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            path, label = manifest.parent / row["path"], int(row["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"{manifest}:{number}: not an AV-Digits row ({exc})") from exc
        if split is not None and row.get("split") != split:
            continue
        keep = ("label", "split", "speaker", "handwriting", "onset", "offset", "path")
        metadata = {k: row[k] for k in keep if k in row}
        item_id = f"avdigits-{Path(row['path']).stem}"
        clips.append(Clip(item_id, path, label, metadata))
    if not clips:
        raise CommandError(f"{manifest} has no clips of split {split!r}")
    return clips[:limit] if limit else clips


class BackgroundServer:
    """uvicorn serving the app in a thread; ``start`` returns once it accepts requests."""

    def __init__(self, settings: Settings, log_level: str) -> None:
        config = uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level=log_level
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = f"http://{settings.host}:{settings.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise CommandError(f"the service did not start at {self.url} (see the log above)")
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code != 200:
        raise CommandError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def ingest(client: httpx.Client, clips: list[Clip]) -> tuple[int, float]:
    """Store every clip (skipping those already stored); returns (embedded now, seconds)."""
    started, embedded = time.perf_counter(), 0
    for clip in clips:
        if client.get(f"/items/{clip.item_id}").status_code == 200:
            continue
        with clip.path.open("rb") as handle:
            response = client.post(
                "/embed/video",
                files={"file": (clip.path.name, handle, "video/mp4")},
                data={"id": clip.item_id, "metadata": json.dumps(clip.metadata)},
            )
        _check(response, f"embedding {clip.path}")
        embedded += 1
    return embedded, time.perf_counter() - started


@dataclass
class HitRates:
    queries: int = 0
    p1: float = 0.0
    p10: float = 0.0

    def add(self, query_label: int, result_labels: list[int]) -> None:
        hits = [label == query_label for label in result_labels]
        self.queries += 1
        self.p1 += float(bool(hits) and hits[0])
        self.p10 += sum(hits) / max(len(hits), 1)

    def row(self, name: str) -> str:
        n = max(self.queries, 1)
        return f"{name:<22} {self.queries:>7} {self.p1 / n:>6.3f} {self.p10 / n:>6.3f}    0.100"


def _labels(results: list[dict[str, Any]]) -> list[int]:
    return [int(r["metadata"].get("label", -1)) for r in results]


def class_hit_rates(client: httpx.Client, clips: list[Clip]) -> dict[str, HitRates]:
    rates = {"audio -> video": HitRates(), "video -> audio": HitRates()}
    for clip in clips:
        for name, param in (("audio -> video", "audio"), ("video -> audio", "video")):
            body = _check(client.get("/search", params={param: clip.item_id, "k": 10}), "search")
            rates[name].add(clip.label, _labels(body["results"]))
    return rates


def instance_recall(client: httpx.Client, clips: list[Clip], queries: int) -> tuple[float, float]:
    """R@1 and R@10 of finding a clip's own video from its uploaded sound (POST /search)."""
    r1 = r10 = 0.0
    for clip in clips[:queries]:
        with clip.path.open("rb") as handle:
            response = client.post(
                "/search",
                files={"file": (clip.path.name, handle, "video/mp4")},
                data={"target": "video", "k": "10"},
            )
        ids = [r["id"] for r in _check(response, "search by upload")["results"]]
        r1 += float(ids[:1] == [clip.item_id])
        r10 += float(clip.item_id in ids)
    n = max(min(queries, len(clips)), 1)
    return r1 / n, r10 / n


def show_examples(client: httpx.Client, clips: list[Clip], count: int) -> None:
    for clip in clips[:count]:
        meta = clip.metadata
        print(
            f"\nsound of {clip.item_id} (digit {clip.label}, voice {meta.get('speaker')}): "
            "the videos that match it best"
        )
        body = _check(client.get("/search", params={"audio": clip.item_id, "k": 3}), "search")
        for rank, hit in enumerate(body["results"], 1):
            mark = "hit " if hit["metadata"].get("label") == clip.label else "miss"
            print(
                f"  {rank}. {hit['id']}  digit {hit['metadata'].get('label')}  [{mark}]  "
                f"score {hit['score']:.3f}  window {hit['start']:.1f}-{hit['end']:.1f} s"
            )


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    clips = read_clips(args.clips, args.split or None, args.limit)
    server = BackgroundServer(settings, args.log_level)
    print(f"starting the service at {server.url} (data in {settings.data_dir}) ...", flush=True)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=300.0) as client:
            model = _check(client.get("/readyz"), "readiness")
            print(f"ready: {model}")
            embedded, seconds = ingest(client, clips)
            print(
                f"ingested {len(clips)} clips of {args.clips} ({embedded} embedded now, "
                f"{seconds:.1f} s)"
            )
            show_examples(client, clips, args.examples)
            rates = class_hit_rates(client, clips)
            r1, r10 = instance_recall(client, clips, args.instance_queries)
        n_inst = min(args.instance_queries, len(clips))
        print("\ncross-modal search over the stored clips (class level: the query's digit)")
        print(f"{'direction':<22} {'queries':>7} {'P@1':>6} {'P@10':>6}  chance")
        for name, rate in rates.items():
            print(rate.row(name))
        print(
            f"instance level, a clip's uploaded sound finds its own video: R@1 {r1:.3f}, "
            f"R@10 {r10:.3f} over {n_inst} queries (chance {1 / len(clips):.3f} / "
            f"{min(10 / len(clips), 1.0):.3f})"
        )
        if args.exit:
            return 0
        print(f"\nserving at {server.url} (API docs at {server.url}/docs); Ctrl-C stops")
        while server.thread.is_alive():
            server.thread.join(timeout=1.0)
        return 0
    finally:
        server.stop()
