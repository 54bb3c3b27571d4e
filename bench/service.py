"""Service throughput: embed requests/s and p50/p99 latency over real HTTP.

    .venv/bin/python -m bench.service                  # 1 4 16 clients, batching on/off, both modes
    .venv/bin/python -m bench.service --modes embedded --clients 4 --requests 64
    .venv/bin/python -m bench.service --quick          # smoke run: 1 client, 2 requests
    .venv/bin/python -m bench.service --storage embedded scale-out --modes embedded \
        --json bench/results/service_scale_out.json    # beside the scale-out settings

Each configuration (mode x batching x clients) starts the real service, ``avid serve`` in a
subprocess on a free 127.0.0.1 port, on a fresh data directory, with a tiny random checkpoint
(avid-tiny). In the celery mode the API hands inference to a real ``avid worker`` subprocess
(``--concurrency`` = clients unless ``--worker-concurrency``) through the Redis at
127.0.0.1:6379, DB 13 (flushed before and after; no other DB is touched). After one warm-up
request, N client threads POST ``/embed/video`` (multipart ``file``, ``store`` and
``windows`` true) with httpx until ``--requests`` are done or ``--seconds`` have passed. Every
request uploads a distinct file (tone pitch and picture differ), so nothing is deduplicated.

``--storage``: ``embedded`` is the default store (FAISS in process, SQLite in the data
directory); ``scale-out`` the settings replicas share, here for one replica:
``AVID_INDEX_BACKEND=milvus`` with ``AVID_MILVUS_URI`` a Milvus Lite file in the data
directory, and ``AVID_DATABASE_URL`` a PostgreSQL database of the run's own on ``--postgres``
(made before the configuration starts, dropped after it).

Columns: requests/s and clips/s (windows returned) over the timed phase, wall-clock p50/p99
latency per request, errors (non-200 or transport failures), and the mean clips per model
forward the server saw (``avid_batch_clips`` from ``/metrics``, warm-up excluded; the celery
mode's forwards run in the worker, which has no ``/metrics``: "-").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import redis
import torch

from avid_model.checkpoint import save_checkpoint
from avid_model.media_writer import write_media
from avid_model.registry import create_model
from bench.common import markdown_table, write_json
from services.database.scratch import throwaway_database

REDIS_DB = 13
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
STORAGES = ("embedded", "scale-out")
FPS, RATE, SIZE, CLIP_SECONDS = 16, 16_000, 128, 3.0
START_TIMEOUT_S = 180.0
COLUMNS = [
    "storage",
    "mode",
    "batching",
    "clients",
    "requests",
    "errors",
    "req/s",
    "clips/s",
    "p50 ms",
    "p99 ms",
    "mean batch",
]


def write_clip(path: Path, seed: int) -> Path:
    """A 3 s clip: a bright square moving over a background and a tone, both set by ``seed``."""
    rng = np.random.default_rng(seed)
    n = round(CLIP_SECONDS * FPS)
    frames = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    frames[:] = rng.integers(0, 200, size=3, dtype=np.uint8)
    for i in range(n):
        x = (i * (seed % 7 + 2)) % (SIZE - 32)
        frames[i, 40:72, x : x + 32] = 255
    t = np.arange(round(CLIP_SECONDS * RATE)) / RATE
    audio = (0.4 * np.sin(2 * np.pi * (220.0 + 7.0 * seed) * t)).astype(np.float32)
    write_media(path, video=frames, fps=FPS, audio=audio, sample_rate=RATE)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Config:
    mode: str  # "embedded" or "celery"
    batching: bool
    clients: int
    storage: str = "embedded"  # or "scale-out": Milvus Lite + PostgreSQL (see the module doc)


class Service:
    """``avid serve`` (and, in the celery mode, one ``avid worker``) on ``data_dir``."""

    def __init__(
        self,
        config: Config,
        checkpoint: Path,
        root: Path,
        args: argparse.Namespace,
        database_url: str | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = root
        self.env = {
            **os.environ,
            "AVID_CHECKPOINT": str(checkpoint),
            "AVID_DATA_DIR": str(root / "data"),
            "AVID_DEVICE": "cpu",
            "AVID_BATCHING": str(config.batching).lower(),
            "AVID_BROKER_URL": REDIS_URL if config.mode == "celery" else "",
            "PYTHONUNBUFFERED": "1",
        }
        if args.threads:
            self.env["OMP_NUM_THREADS"] = str(args.threads)
        if config.storage == "scale-out":
            assert database_url is not None
            self.env["AVID_INDEX_BACKEND"] = "milvus"
            self.env["AVID_MILVUS_URI"] = str(root / "data" / "milvus" / "milvus.db")
            self.env["AVID_DATABASE_URL"] = database_url
        self.worker_concurrency = args.worker_concurrency or config.clients
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def _spawn(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.root / f"{name}.log"
        with log_path.open("wb") as log:
            command = [sys.executable, "-m", "avid_model.cli", *args]
            proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((proc, log_path))
        return proc, log_path

    def _wait(self, what: str, proc: subprocess.Popen[bytes], log: Path, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start:\n{_log_tail(log)}")
            time.sleep(0.2)

    def start(self) -> None:
        if self.env["AVID_BROKER_URL"]:
            proc, log = self._spawn(
                "worker", "worker", "--concurrency", str(self.worker_concurrency)
            )
            self._wait("avid worker", proc, log, lambda: " ready." in _log_tail(log, 200))
        proc, log = self._spawn(
            "serve", "serve", "--port", str(self.port), "--log-level", "warning"
        )
        self._wait("avid serve", proc, log, self._is_ready)

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc, _ in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@contextmanager
def bench_database(server: str) -> Iterator[str]:
    """A new PostgreSQL database on ``server`` (its URL), dropped on exit."""
    try:
        with psycopg.connect(server, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        raise SystemExit(f"--storage scale-out needs PostgreSQL at {server} ({exc})") from exc
    with throwaway_database(server, "avid_bench") as url:
        yield url


@contextmanager
def running(
    config: Config, checkpoint: Path, root: Path, args: argparse.Namespace
) -> Iterator[str]:
    with ExitStack() as stack:
        database_url = None
        if config.storage == "scale-out":
            database_url = stack.enter_context(bench_database(args.postgres))
        service = Service(config, checkpoint, root, args, database_url)
        stack.callback(service.stop)
        service.start()
        yield service.url


def batch_totals(url: str) -> dict[str, float]:
    """``avid_batch_clips`` sum and count over both modalities, from the Prometheus text."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10.0).text.splitlines():
        for key in totals:
            if line.startswith(f"avid_batch_clips_{key}{{"):
                totals[key] += float(line.rsplit(" ", 1)[1])
    return totals


@dataclass
class Outcome:
    seconds: float
    ok: bool
    clips: int


def post_clip(client: httpx.Client, path: Path) -> Outcome:
    t0 = time.perf_counter()
    try:
        with path.open("rb") as handle:
            response = client.post(
                "/embed/video",
                files={"file": (path.name, handle, "video/mp4")},
                data={"store": "true", "windows": "true"},
            )
        ok = response.status_code == 200
        clips = len(response.json().get("windows") or []) if ok else 0
    except (httpx.HTTPError, ValueError):
        ok, clips = False, 0
    return Outcome(time.perf_counter() - t0, ok, clips)


def drive(url: str, files: list[Path], clients: int, seconds: float) -> tuple[list[Outcome], float]:
    """``clients`` threads post the files, each file once, until done or ``seconds`` passed."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    pending = iter(files)
    deadline = time.perf_counter() + seconds if seconds > 0 else float("inf")

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=300.0) as client:
            while time.perf_counter() < deadline:
                with lock:
                    path = next(pending, None)
                if path is None:
                    return
                outcome = post_clip(client, path)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - start


def measure(
    config: Config, checkpoint: Path, files: list[Path], warmup: Path, args: argparse.Namespace
) -> dict[str, Any]:
    load_before = os.getloadavg()
    if config.mode == "celery":
        redis.Redis.from_url(REDIS_URL).flushdb()
    with tempfile.TemporaryDirectory(prefix="avid-bench-service-") as tmp:
        try:
            with running(config, checkpoint, Path(tmp), args) as url:
                with httpx.Client(base_url=url, timeout=300.0) as client:
                    warm = post_clip(client, warmup)
                if not warm.ok:
                    raise SystemExit(f"warm-up request failed on {config}")
                before = batch_totals(url)
                outcomes, wall = drive(url, files, config.clients, args.seconds)
                after = batch_totals(url)
        finally:
            if config.mode == "celery":
                redis.Redis.from_url(REDIS_URL).flushdb()
    ok = [o for o in outcomes if o.ok]
    latencies_ms = np.array([o.seconds * 1000 for o in ok]) if ok else np.array([np.nan])
    forwards = after["count"] - before["count"]
    row: dict[str, Any] = {
        "storage": config.storage,
        "mode": config.mode,
        "batching": "on" if config.batching else "off",
        "clients": config.clients,
        "requests": len(outcomes),
        "errors": len(outcomes) - len(ok),
        "req/s": len(ok) / wall,
        "clips/s": sum(o.clips for o in ok) / wall,
        "p50 ms": float(np.percentile(latencies_ms, 50)),
        "p99 ms": float(np.percentile(latencies_ms, 99)),
        "mean batch": (after["sum"] - before["sum"]) / forwards if forwards else "-",
        "seconds": wall,
        "forwards": forwards,
        "loadavg before": load_before,
        "loadavg after": os.getloadavg(),
    }
    if config.mode == "celery":
        row["worker concurrency"] = args.worker_concurrency or config.clients
    return row


def check_celery_mode() -> None:
    if importlib.util.find_spec("services.worker.process") is None:
        raise SystemExit(
            "--modes celery: `avid worker` is not in this checkout (no services.worker.process)"
        )
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        raise SystemExit(f"--modes celery needs Redis at 127.0.0.1:6379 ({exc})") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--modes", nargs="+", choices=("embedded", "celery"), default=["embedded", "celery"]
    )
    parser.add_argument("--batching", nargs="+", choices=("on", "off"), default=["on", "off"])
    parser.add_argument(
        "--storage", nargs="+", choices=STORAGES, default=["embedded"], help="see the module doc"
    )
    parser.add_argument("--postgres", default=POSTGRES_SERVER, help="server for scale-out")
    parser.add_argument("--requests", type=int, default=120, help="requests per configuration")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="stop a configuration after this (0: never)"
    )
    parser.add_argument("--threads", type=int, default=0, help="OMP threads of the server/worker")
    parser.add_argument(
        "--worker-concurrency", type=int, default=0, help="celery mode (0: one per client)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 client, 2 requests")
    parser.add_argument("--json", type=Path, default=Path("bench/results/service.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.requests = [1], 2
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if "celery" in args.modes:
        check_celery_mode()
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="avid-bench-media-") as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        checkpoint = root / "avid-tiny-bench"
        save_checkpoint(create_model("avid-tiny").eval(), checkpoint)
        warmup = write_clip(root / "warmup.mp4", 10_000)
        files = [write_clip(root / f"clip_{i:04d}.mp4", i) for i in range(args.requests)]
        for storage in args.storage:
            for mode in args.modes:
                for batching in args.batching:
                    for clients in args.clients:
                        config = Config(mode, batching == "on", clients, storage)
                        rows.append(measure(config, checkpoint, files, warmup, args))
                        print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    load_end = os.getloadavg()
    header = (
        f"avid-tiny (random weights), {CLIP_SECONDS:g} s {SIZE}x{SIZE} {FPS} fps clips with a "
        f"tone, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}"
    )
    load = (
        f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load_start)} before, "
        f"{', '.join(f'{x:.2f}' for x in load_end)} after"
    )
    print(f"\n{header}\n\n{markdown_table(rows, COLUMNS)}\n\n{load}")
    payload = {
        "header": header,
        "command": " ".join(["python -m bench.service", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg before": load_start,
        "loadavg after": load_end,
        "requests per config": args.requests,
        "seconds limit": args.seconds,
        "rows": rows,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
