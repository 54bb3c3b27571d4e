"""The ``avid worker`` process: a Celery worker that embeds files for the API.

``run_worker`` builds the Celery app from ``Settings``, registers ``embed_media`` on a
``WorkerModel`` (loaded once per process, on the first task: nothing touches CUDA before
then) and runs Celery's worker in this process. Pools: ``threads`` (the default: N task
threads decode files at once and share one model and one batcher, so their windows are
batched together) or ``solo`` (one task at a time). One worker process per GPU.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

import celery.app.trace
import redis
from celery.signals import worker_ready, worker_shutdown

from avid_model.checkpoint import read_metadata
from services.settings import Settings
from services.worker.celery_app import create_celery_app
from services.worker.heartbeat import Heartbeat, this_worker
from services.worker.model import WorkerModel
from services.worker.tasks import register_tasks

# Celery logs a task's return value on success; ours are vectors. The task logs its own line
# (id, file, windows, seconds) instead.
celery.app.trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"

WorkerPool = Literal["threads", "solo"]
WORKER_POOLS: tuple[WorkerPool, ...] = ("threads", "solo")


def run_worker(
    settings: Settings,
    *,
    pool: WorkerPool = "threads",
    concurrency: int | None = None,
    loglevel: str = "info",
) -> int:
    """Consume embedding tasks until stopped (SIGTERM: finish the running tasks, then stop).

    Returns the worker's exit status."""
    app = create_celery_app(settings)
    model = WorkerModel(settings)
    register_tasks(app, model)
    hostname = f"avid-{os.getpid()}@{socket.gethostname()}"
    threads = 1 if pool == "solo" else (concurrency or settings.worker_concurrency)
    model_version = str(read_metadata(settings.checkpoint_path())["model_version"])
    heartbeat = Heartbeat(
        redis.Redis.from_url(str(app.conf.broker_url), socket_timeout=5),
        this_worker(hostname, model_version, threads),
        settings.worker_heartbeat_ttl_s,
    )

    def announce(**_: Any) -> None:
        heartbeat.start()  # once Celery consumes: /readyz counts this worker from now on

    def close_model(**_: Any) -> None:
        heartbeat.stop()
        model.close()

    worker_ready.connect(announce, weak=False)
    worker_shutdown.connect(close_model, weak=False)
    worker = app.Worker(
        hostname=hostname,
        pool_cls=pool,
        concurrency=threads,
        loglevel=loglevel.upper(),
        without_mingle=True,
        without_gossip=True,
    )
    try:
        worker.start()
    finally:
        worker_ready.disconnect(announce)
        worker_shutdown.disconnect(close_model)
    return int(worker.exitcode or 0)
