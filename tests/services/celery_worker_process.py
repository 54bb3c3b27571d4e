"""Real ``avid worker``s in subprocesses, for the distributed-mode tests (Redis DBs 11-13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

REDIS_DBS = (11, 12, 13)  # never DB 0; only these are flushed. One per test that runs workers.


def redis_url(db: int) -> str:
    assert db in REDIS_DBS
    return f"redis://127.0.0.1:6379/{db}"


def redis_or_skip(db: int) -> redis.Redis:
    """A client of test DB ``db``, emptied; the test is skipped when Redis does not answer."""
    client = redis.Redis.from_url(redis_url(db), socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable ({exc})")
    client.flushdb()
    return client


@contextmanager
def empty_redis_db(db: int) -> Iterator[str]:
    """The URL of test DB ``db``, empty; flushed again afterwards (skips without Redis)."""
    client = redis_or_skip(db)
    try:
        yield redis_url(db)
    finally:
        client.flushdb()
        client.close()


class WorkerProcess:
    """One ``avid worker`` process; its output goes to ``log_path``."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until Celery logs that the worker consumes; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"avid worker exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"avid worker not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, with whatever task it holds unacknowledged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it does not stop within a few seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerLauncher:
    """Starts ``avid worker``s on a test Redis DB (CPU, torch on one thread) and stops
    every one of them in ``stop_all`` (call it in a ``finally``)."""

    def __init__(
        self, broker_url: str, checkpoint: Path, data_dir: Path, log_dir: Path, **env: str
    ) -> None:
        self.env = {
            **os.environ,
            "AVID_BROKER_URL": broker_url,
            "AVID_CHECKPOINT": str(checkpoint),
            "AVID_DATA_DIR": str(data_dir),
            "AVID_DEVICE": "cpu",
            "AVID_BATCH_MAX_WAIT_MS": "2",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",  # the log is complete even after a SIGKILL
            **env,
        }
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(self, concurrency: int = 2) -> WorkerProcess:
        command = [sys.executable, "-m", "avid_model.cli", "worker"]
        command += ["--concurrency", str(concurrency), "--loglevel", "info"]
        log_path = self.log_dir / f"worker-{len(self.workers)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        worker = WorkerProcess(process, log_path)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


@contextmanager
def worker_launcher(
    broker_url: str, checkpoint: Path, data_dir: Path, log_dir: Path, **env: str
) -> Iterator[WorkerLauncher]:
    launcher = WorkerLauncher(broker_url, checkpoint, data_dir, log_dir, **env)
    try:
        yield launcher
    finally:
        launcher.stop_all()
