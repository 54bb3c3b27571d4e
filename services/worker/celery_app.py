"""The Celery app of the distributed mode, built from ``Settings`` the same way in the API and
in every ``avid worker`` (the API only sends tasks by name; ``services.worker.tasks`` registers them
in workers).

Delivery: ``task_acks_late`` (a task is acknowledged when it has finished, not when it is
taken), ``task_reject_on_worker_lost`` and ``worker_prefetch_multiplier=1`` (a worker holds
no more tasks than it runs). With the Redis transport a task taken by a worker that dies is
put back in the queue once it has been unacknowledged for ``broker_visibility_timeout_s``
(the next worker that starts or sweeps restores it), so the timeout must exceed the longest
embedding. JSON only: no pickle is accepted, and media never travel through Redis (see
``services.worker.messages``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from celery import Celery

from services.settings import Settings, StartupError
from services.worker.messages import EMBED_QUEUE

RESULT_EXPIRES_S = 3600  # the API takes each result at once; leftovers go after an hour
REDIS_SCHEMES = frozenset({"redis", "rediss"})
REDIS_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0.2,
    "interval_step": 0.3,
    "interval_max": 1.0,
}


def redis_url(url: str | None, setting: str) -> str:
    """``url`` when it names a Redis server; a StartupError naming ``setting`` otherwise."""
    if url is None:
        raise StartupError(f"{setting} is not set: give the Redis URL, e.g. redis://redis:6379/0")
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        raise StartupError(f"{setting} must be a redis:// or rediss:// URL, got {url!r}")
    return url


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app on ``settings.broker_url`` (results in ``result_backend``, else the same)."""
    broker = redis_url(settings.broker_url, "AVID_BROKER_URL")
    backend = (
        broker
        if settings.result_backend is None
        else redis_url(settings.result_backend, "AVID_RESULT_BACKEND")
    )
    app = Celery("avid", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A worker that loses the broker stops its unacknowledged tasks (they are redelivered).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_track_started=True,
        task_default_queue=EMBED_QUEUE,
        result_expires=RESULT_EXPIRES_S,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # A request fails in a second or two when Redis is down, instead of hanging.
        task_publish_retry_policy=REDIS_RETRY_POLICY,
        result_backend_transport_options={"retry_policy": REDIS_RETRY_POLICY},
    )
    return app
