"""Soak: N clients for M minutes of mixed embed and search over real HTTP against ``avid
serve`` (started here, on a fresh data directory, unless ``--url``). Every minute it prints
the requests, errors, latency p50/p99 and the server's resident memory; it exits non-zero
when any request failed (a 5xx, a dropped connection, an unexpected status) or when the
server's RSS grew more than ``--max-rss-growth-mib`` after the first minute (warm-up).

    .venv/bin/python -m bench.soak --clients 16 --minutes 10
    .venv/bin/python -m bench.soak --minutes 1            # a smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from avid_model.checkpoint import DEFAULT_CHECKPOINT
from avid_model.media_writer import write_media
from bench.common import markdown_table, write_json

FPS, RATE, SIZE = 16, 16_000, 96
EXPECTED = {200, 202, 404, 409}  # 404: an item deleted by another client; 409: conflicts


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """Small distinct videos with sound (a moving square, a tone), written with PyAV."""
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        n = round(seconds * FPS)
        frames = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
        frames[:] = rng.integers(0, 200, size=3, dtype=np.uint8)
        for k in range(n):
            x = (k * (i + 2)) % (SIZE - 16)
            frames[k, 30:46, x : x + 16] = 255
        t = np.arange(round(seconds * RATE)) / RATE
        tone = (0.4 * np.sin(2 * np.pi * (220 + 40 * i) * t)).astype(np.float32)
        path = folder / f"clip_{i:02d}.mp4"
        write_media(path, video=frames, fps=FPS, audio=tone, sample_rate=RATE)
        paths.append(path)
    return paths


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def add(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(seconds)
            if error is not None:
                self.errors += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(error)

    def take(self) -> tuple[int, int, list[float]]:
        with self.lock:
            out = (self.requests, self.errors, self.latencies)
            self.requests, self.errors, self.latencies = 0, 0, []
        return out


def one_request(client: httpx.Client, clips: list[Path], rng: random.Random) -> httpx.Response:
    clip = rng.choice(clips)
    roll = rng.random()
    if roll < 0.35:
        with clip.open("rb") as f:
            return client.post("/embed/video", files={"file": (clip.name, f)})
    if roll < 0.5:
        with clip.open("rb") as f:
            files = {"file": (clip.name, f)}
            return client.post("/embed/audio", files=files, data={"store": "false"})
    if roll < 0.75:
        with clip.open("rb") as f:
            files = {"file": (clip.name, f)}
            return client.post("/search", files=files, data={"target": "video", "k": "5"})
    page = client.get("/items", params={"limit": 20}).json()["items"]
    if not page:
        return client.get("/items", params={"limit": 1})
    return client.get("/search", params={"video": rng.choice(page)["id"], "k": "5"})


def client_loop(
    url: str, clips: list[Path], tally: Tally, stop: threading.Event, seed: int
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120.0) as client:
        while not stop.is_set():
            start = time.perf_counter()
            error = None
            try:
                response = one_request(client, clips, rng)
                if response.status_code not in EXPECTED:
                    error = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            tally.add(time.perf_counter() - start, error)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(checkpoint: Path, data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AVID_CHECKPOINT": str(checkpoint),
        "AVID_DATA_DIR": str(data_dir),
        "AVID_DEVICE": "cpu",
        "AVID_SYNC_MAX_SECONDS": "600",
    }
    command = [sys.executable, "-m", "avid_model.cli", "serve", "--port", str(port)]
    command += ["--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"avid serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("avid serve did not become ready in 300 s")
        time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds per row")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--url", help="an already running service (its RSS is not read)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for its RSS")
    parser.add_argument("--clips", type=int, default=12, help="distinct media files")
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    parser.add_argument("--max-rss-growth-mib", type=float, default=200.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="avid-soak-") as tmp:
        root = Path(tmp)
        clips = write_clips(root, args.clips, args.clip_seconds)
        server = None
        pid = args.pid
        url = args.url
        if url is None:
            port = 18_000 + os.getpid() % 1000
            server = start_server(args.checkpoint, root / "data", port, root / "serve.log")
            pid, url = server.pid, f"http://127.0.0.1:{port}"
        try:
            return soak(args, url, pid, clips)
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()


def soak(args: argparse.Namespace, url: str, pid: int | None, clips: list[Path]) -> int:
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(url, clips, tally, stop, i), daemon=True)
        for i in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    rows: list[dict[str, Any]] = []
    samples: list[str] = []
    end = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    print(f"soak: {args.clients} clients for {args.minutes:g} min against {url}", flush=True)
    while (now := time.monotonic()) < end:
        time.sleep(min(args.report_every, end - now))
        requests, errors, latencies = tally.take()
        row = {
            "minute": round((time.monotonic() - started) / 60, 2),
            "requests": requests,
            "errors": errors,
            "p50 s": percentile(latencies, 50),
            "p99 s": percentile(latencies, 99),
            "rss MiB": round(rss_mib(pid)) if pid else float("nan"),
        }
        rows.append(row)
        print(markdown_table([row], list(row)).splitlines()[-1], flush=True)
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    requests, errors, latencies = tally.take()  # the requests in flight at the end
    with tally.lock:
        samples = list(tally.error_samples)
    total_errors = sum(r["errors"] for r in rows) + errors
    rss = [r["rss MiB"] for r in rows if r["rss MiB"] == r["rss MiB"]]
    growth = (rss[-1] - rss[0]) if len(rss) >= 2 else 0.0
    print("\n" + markdown_table(rows, list(rows[0])) if rows else "no rows")
    print(
        f"\ntotal requests {sum(r['requests'] for r in rows) + requests}, errors {total_errors}, "
        f"RSS growth after the first report {growth:.0f} MiB (bound {args.max_rss_growth_mib:g})"
    )
    for sample in samples:
        print(f"  error: {sample}")
    write_json(
        args.json,
        {
            "clients": args.clients,
            "minutes": args.minutes,
            "rows": rows,
            "errors": total_errors,
            "rss_growth_mib": growth,
            "error_samples": samples,
        },
    )
    return 1 if total_errors or growth > args.max_rss_growth_mib else 0


if __name__ == "__main__":
    sys.exit(main())
