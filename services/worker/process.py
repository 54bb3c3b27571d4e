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

from celery.signals import worker_shutdown

from services.settings import Settings
from services.worker.celery_app import create_celery_app
from services.worker.model import WorkerModel
from services.worker.tasks import register_tasks

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

    def close_model(**_: Any) -> None:
        model.close()

    worker_shutdown.connect(close_model, weak=False)
    worker = app.Worker(
        hostname=f"avid-{os.getpid()}@{socket.gethostname()}",
        pool_cls=pool,
        concurrency=1 if pool == "solo" else (concurrency or settings.worker_concurrency),
        loglevel=loglevel.upper(),
        without_mingle=True,
        without_gossip=True,
    )
    try:
        worker.start()
    finally:
        worker_shutdown.disconnect(close_model)
    return int(worker.exitcode or 0)
