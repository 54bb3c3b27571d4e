"""Workers announce themselves in Redis: a key per worker, with a TTL, refreshed while it runs.

``avid:worker:<hostname>`` holds ``{"hostname", "model_version", "pid", "concurrency",
"started_at"}`` and expires ``ttl_s`` after the last beat (beats come every third of it). A
worker that stops deletes its key; one killed with -9 drops out within ``ttl_s``. The API reads
the keys (``live_workers``) for ``/readyz`` (``workers``: how many live ones run its model),
``/metrics`` (``avid_workers`` by model version), to refuse an embed when none runs (503
``no_worker``), and to send a task again when the worker that took it has gone silent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass

import redis

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "avid:worker:"


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    model_version: str
    pid: int
    concurrency: int
    started_at: float


def heartbeat_key(hostname: str) -> str:
    return f"{HEARTBEAT_PREFIX}{hostname}"


class Heartbeat:
    """Keeps ``info``'s key alive in Redis from a daemon thread until ``stop``."""

    def __init__(self, client: redis.Redis, info: WorkerInfo, ttl_s: float) -> None:
        self.client = client
        self.info = info
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="avid-heartbeat", daemon=True)

    def beat(self) -> None:
        value = json.dumps(asdict(self.info))
        self.client.set(heartbeat_key(self.info.hostname), value, px=max(int(self.ttl_s * 1000), 1))

    def start(self) -> None:
        self.beat()
        self._thread.start()
        log.info(
            "worker %s announced (model %s, heartbeat TTL %g s)",
            self.info.hostname,
            self.info.model_version,
            self.ttl_s,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.beat()
            except (redis.RedisError, OSError) as exc:
                log.warning("heartbeat not sent (%s); retrying", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.client.delete(heartbeat_key(self.info.hostname))
        except (redis.RedisError, OSError):
            log.warning("could not remove the heartbeat key of %s", self.info.hostname)


def live_workers(client: redis.Redis) -> list[WorkerInfo]:
    """The workers whose heartbeat has not expired (raises ``redis.RedisError``)."""
    keys = sorted(client.scan_iter(match=f"{HEARTBEAT_PREFIX}*", count=100))
    if not keys:
        return []
    workers = []
    for raw in client.mget(keys):
        if raw is None:
            continue  # expired between the scan and the read
        try:
            workers.append(WorkerInfo(**json.loads(raw)))
        except (ValueError, TypeError):
            log.warning("unreadable heartbeat %r", raw[:200])
    return workers


def this_worker(hostname: str, model_version: str, concurrency: int) -> WorkerInfo:
    return WorkerInfo(hostname, model_version, os.getpid(), concurrency, time.time())
