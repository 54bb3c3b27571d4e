"""A distributed embed never waits forever on workers that are gone (real Redis, no worker
process: the workers here are heartbeats in Redis, and the task states a worker would write).

- the only worker dies before taking the file: 503 ``no_worker`` within about the heartbeat TTL;
- live workers that never take the file: 503 ``worker_timeout`` at ``AVID_TASK_TIMEOUT_S``;
- each worker that takes the file goes silent: sent again, and after ``MAX_SENDS`` tries 503
  ``worker_lost``, not a job that shows "running" forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import states

from services.embedding import BackendUnavailable
from services.worker.backend import MAX_SENDS, CeleryEmbeddingBackend
from services.worker.heartbeat import Heartbeat, this_worker
from tests.services.celery_worker_process import empty_redis_db
from tests.services.conftest import Media, service_settings

DB = 13
TTL_S = 0.6


def _backend(
    checkpoint: Path, data_dir: Path, broker: str, **overrides: Any
) -> CeleryEmbeddingBackend:
    settings = service_settings(
        checkpoint, data_dir, broker_url=broker, worker_heartbeat_ttl_s=TTL_S, **overrides
    )
    return CeleryEmbeddingBackend.from_settings(settings)


@contextmanager
def _distributed(
    checkpoint: Path, data_dir: Path, **overrides: Any
) -> Iterator[tuple[CeleryEmbeddingBackend, redis.Redis]]:
    """A backend on an empty Redis DB with no worker process, and a client of that DB."""
    with empty_redis_db(DB) as broker:
        backend = _backend(checkpoint, data_dir, broker, **overrides)
        client = redis.Redis.from_url(broker)
        try:
            yield backend, client
        finally:
            client.close()
            backend.close()


def _kept_file(media: Media, data_dir: Path) -> Path:
    """A file inside the shared data dir, as the API keeps an upload for the workers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "upload.wav"
    path.write_bytes(media.wav.read_bytes())
    return path


def _embed_fails(backend: CeleryEmbeddingBackend, path: Path) -> tuple[BackendUnavailable, float]:
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        backend.embed_file(path)
    return caught.value, time.monotonic() - start


@pytest.mark.redis
def test_the_only_worker_dying_before_taking_the_file_is_no_worker(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with _distributed(checkpoint_dir, data, task_timeout_s=60) as (backend, client):
        # One beat and no thread: the worker was killed right after announcing itself.
        Heartbeat(client, this_worker("dies@test", backend.model_version, 1), ttl_s=TTL_S).beat()
        error, seconds = _embed_fails(backend, _kept_file(media, data))
    assert error.code == "no_worker"
    assert "stopped before taking the file" in str(error)
    assert seconds < 10  # about two TTLs, far from the 60 s task timeout


@pytest.mark.redis
def test_live_workers_that_never_take_the_file_time_out(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with _distributed(checkpoint_dir, data, task_timeout_s=2.0) as (backend, client):
        beating = Heartbeat(client, this_worker("busy@test", backend.model_version, 1), ttl_s=TTL_S)
        beating.start()  # alive, but nothing consumes the queue
        try:
            error, seconds = _embed_fails(backend, _kept_file(media, data))
        finally:
            beating.stop()
    assert error.code == "worker_timeout"
    assert "within 2 s" in str(error)
    assert 2.0 <= seconds < 8


@pytest.mark.redis
def test_workers_going_silent_holding_the_file_end_in_worker_lost(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    sent: list[str] = []
    with _distributed(checkpoint_dir, data, task_timeout_s=60) as (backend, client):
        send_task = backend.app.send_task

        def taken_by_a_worker_that_dies(*args: Any, **kwargs: Any) -> Any:
            # What a worker writes when it starts the task, then it is killed (no heartbeat).
            result = send_task(*args, **kwargs)
            sent.append(result.id)
            ghost = f"ghost{len(sent)}@test"
            backend.app.backend.store_result(result.id, {"hostname": ghost}, states.STARTED)
            return result

        backend.app.send_task = taken_by_a_worker_that_dies
        live = Heartbeat(client, this_worker("live@test", backend.model_version, 1), ttl_s=TTL_S)
        live.start()
        try:
            error, seconds = _embed_fails(backend, _kept_file(media, data))
        finally:
            live.stop()
    assert error.code == "worker_lost"
    assert len(sent) == MAX_SENDS
    assert len(set(sent)) == MAX_SENDS  # each try is a new task; the lost ones are revoked
    assert seconds < 20
