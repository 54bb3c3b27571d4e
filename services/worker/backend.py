"""``CeleryEmbeddingBackend``: the API's ``EmbeddingBackend`` in the distributed mode.

The API keeps everything but the model: it saves uploads to the shared data directory,
probes them, owns the index (the one writer) and the background jobs. To embed, it sends an
``embed_media`` task with the file's path (never its bytes), waits for the result (at most
``task_timeout_s``), and rebuilds the ``FileEmbedding``. It never loads the weights: the
model version comes from the checkpoint's ``avid.json``, and a result made by a worker of
another model is refused (``BackendUnavailable``, code ``worker_model_mismatch``), so one
index never mixes embedding spaces. A worker's ``MediaError`` is raised here again with the
same class and message, so the API answers exactly as in the embedded mode.

``BrokerProbe`` answers ``/readyz`` ("broker": a Redis ping with a short timeout; "workers":
the live workers of this model, from their heartbeats) and ``/metrics`` (queue depth: the length
of the task list in Redis; live workers by model version).

Truth about workers (``services.worker.heartbeat``): with no live worker an embed is refused at
once (503 ``no_worker``; ``worker_model_mismatch`` when the live ones run another model). While
waiting, the API checks every second that the worker holding the task still beats; one silent
for ``worker_heartbeat_ttl_s`` (killed, say) has its task revoked and sent again, so the work
comes back within that time, not after the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.exceptions import OperationalError

from avid_model.checkpoint import CheckpointError, read_metadata
from avid_model.inference import FileEmbedding
from avid_model.media import MediaInfo, MediaLimits
from services.embedding import ALL_MODALITIES, BackendUnavailable, media_limits
from services.index import Modality
from services.jobs import Progress
from services.settings import Settings, StartupError
from services.worker.celery_app import create_celery_app
from services.worker.heartbeat import WorkerInfo, live_workers
from services.worker.messages import (
    EMBED_QUEUE,
    EMBED_TASK,
    PROGRESS_STATE,
    RemoteMediaError,
    decode_embedding,
    embed_task_kwargs,
    shared_relative_path,
)

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0
# Redis not answering, as Celery reports it: kombu's and redis-py's errors, and the
# RuntimeError of Celery's result consumer when it gives up reconnecting (the consumer
# reconnects on the next call).
REDIS_DOWN: tuple[type[Exception], ...] = (OperationalError, redis.RedisError, RuntimeError)
MAX_SENDS = 3  # a task whose worker vanished is sent again at most this many times in all
_LOST = object()


class BrokerProbe:
    """Cheap questions to the broker's Redis (and the result store's, when it is another)."""

    def __init__(self, urls: list[str], queue: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.queue = queue
        self._clients = [
            redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            for url in dict.fromkeys(urls)
        ]

    def is_reachable(self) -> bool:
        try:
            return all(client.ping() for client in self._clients)
        except (redis.RedisError, OSError):
            return False

    def queue_depth(self) -> float:
        """Tasks waiting for a worker (taken ones not counted); NaN when Redis does not answer."""
        try:
            return float(self._clients[0].llen(self.queue))
        except (redis.RedisError, OSError):
            return math.nan

    def live_workers(self) -> list[WorkerInfo] | None:
        """The workers whose heartbeat is current; None when Redis does not answer."""
        try:
            return live_workers(self._clients[0])
        except (redis.RedisError, OSError):
            return None

    def close(self) -> None:
        for client in self._clients:
            client.close()


class CeleryEmbeddingBackend:
    """Embeds through ``avid worker`` processes (see the module doc)."""

    def __init__(
        self,
        app: Celery,
        *,
        model_version: str,
        shared_dir: Path,
        hop: float,
        limits: MediaLimits,
        timeout_s: float,
        probe: BrokerProbe,
        heartbeat_ttl_s: float = 15.0,
    ) -> None:
        self.app = app
        self.model_version = model_version
        self.shared_dir = shared_dir
        self.hop = hop
        self.limits = limits
        self.timeout_s = timeout_s
        self.probe = probe
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.poll_s = min(1.0, heartbeat_ttl_s / 3)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryEmbeddingBackend:
        """Read the model version from the checkpoint's metadata (no weights) and connect."""
        checkpoint = settings.checkpoint_path()
        try:
            model_version = str(read_metadata(checkpoint)["model_version"])
        except CheckpointError as exc:
            raise StartupError(str(exc)) from exc
        app = create_celery_app(settings)
        broker = str(app.conf.broker_url)
        probe = BrokerProbe([broker, str(app.conf.result_backend)], EMBED_QUEUE)
        return cls(
            app,
            model_version=model_version,
            shared_dir=settings.shared_root,
            hop=settings.window_hop,
            limits=media_limits(settings),
            timeout_s=settings.task_timeout_s,
            probe=probe,
            heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
        )

    def embed_file(
        self,
        path: Path,
        modalities: frozenset[Modality] = ALL_MODALITIES,
        progress: Progress | None = None,
        info: MediaInfo | None = None,
    ) -> FileEmbedding:
        """See ``EmbeddingBackend``; ``info`` stays here (the worker probes its own copy)."""
        kwargs = embed_task_kwargs(
            shared_relative_path(path, self.shared_dir),
            modalities,
            hop=self.hop,
            limits=self.limits,
            report_progress=progress is not None,
        )

        def on_message(meta: Mapping[str, Any]) -> None:
            info = meta.get("result")
            if progress is not None and meta.get("status") == PROGRESS_STATE and info:
                progress(float(info.get("progress", 0.0)))

        self.require_workers()
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_SENDS):
            try:
                result = self.app.send_task(EMBED_TASK, kwargs=kwargs, queue=EMBED_QUEUE)
            except REDIS_DOWN as exc:
                raise BackendUnavailable("the task broker (Redis) cannot be reached") from exc
            try:
                outcome = self._await(result, deadline, on_message)
            finally:
                self._forget(result)
            if outcome is _LOST:
                continue
            message, failed = outcome
            if failed:
                raise self._worker_error(message)
            return self._checked(message)
        raise BackendUnavailable(
            f"the workers embedding this file went silent {MAX_SENDS} times",
            code="worker_lost",
        )

    def require_workers(self) -> None:
        """``BackendUnavailable`` unless a live worker runs this model (see the module doc)."""
        workers = self.probe.live_workers()
        if workers is None:
            raise BackendUnavailable("the task broker (Redis) cannot be reached")
        if any(w.model_version == self.model_version for w in workers):
            return
        if workers:
            versions = ", ".join(sorted({w.model_version for w in workers}))
            raise BackendUnavailable(
                f"the live workers embed with model {versions} but this service stores "
                f"{self.model_version}; start the workers with the API's checkpoint",
                code="worker_model_mismatch",
            )
        raise BackendUnavailable(
            f"no `avid worker` is running: none has sent a heartbeat in the last "
            f"{self.heartbeat_ttl_s:g} s; start one on this broker",
            code="no_worker",
        )

    def _await(self, result: Any, deadline: float, on_message: Any) -> Any:
        """(message, failed) once the task ends; ``_LOST`` when the worker holding it went
        silent (the task is revoked: send it again). Raises ``BackendUnavailable`` when the
        time is up or no worker is left to take it."""
        unattended_since: float | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._give_up(result)
                raise BackendUnavailable(
                    f"no worker embedded the file within {self.timeout_s:g} s; "
                    "are `avid worker`s running on this broker?",
                    code="worker_timeout",
                )
            try:
                outcome = result.get(
                    timeout=min(self.poll_s, remaining), on_message=on_message, propagate=False
                )
                return outcome, result.state in states.PROPAGATE_STATES
            except CeleryTimeoutError:
                pass
            except REDIS_DOWN as exc:
                raise BackendUnavailable("the task result store (Redis) cannot be reached") from exc
            workers = self.probe.live_workers()
            if workers is None:
                continue  # Redis hiccup: the next poll says more
            live = {w.hostname for w in workers if w.model_version == self.model_version}
            try:
                state, info = result.state, result.info
            except REDIS_DOWN:
                continue
            holder = info.get("hostname") if isinstance(info, dict) else None
            if state in (states.STARTED, PROGRESS_STATE) and holder and holder not in live:
                log.warning("worker %s went silent holding task %s: sent again", holder, result.id)
                self._give_up(result)
                return _LOST
            if state == states.PENDING and not live:
                now = time.monotonic()
                unattended_since = unattended_since or now
                if now - unattended_since >= self.heartbeat_ttl_s:
                    self._give_up(result)
                    raise BackendUnavailable(
                        "every `avid worker` stopped before taking the file", code="no_worker"
                    )
            else:
                unattended_since = None

    @staticmethod
    def _worker_error(error: Any) -> Exception:
        """What a failed task raised: a ``MediaError`` as itself, anything else as a bug."""
        if isinstance(error, RemoteMediaError):
            return error.to_media_error()
        return RuntimeError(f"the worker failed to embed the file: {error!r}")

    def _checked(self, message: dict[str, Any]) -> FileEmbedding:
        """The result's embedding, refused when a worker of another model made it."""
        embedding, worker_version = decode_embedding(message)
        if worker_version != self.model_version:
            log.error(
                "a worker embeds with %s, this API serves %s", worker_version, self.model_version
            )
            raise BackendUnavailable(
                f"a worker embeds with model {worker_version} but this service stores "
                f"{self.model_version}; start the workers with the API's checkpoint",
                code="worker_model_mismatch",
            )
        return embedding

    @staticmethod
    def _give_up(result: Any) -> None:
        """A task nobody finished in time is revoked, so that a worker does not start it."""
        try:
            result.revoke()
        except REDIS_DOWN:
            log.warning("could not revoke task %s", result.id, exc_info=True)

    @staticmethod
    def _forget(result: Any) -> None:
        """Drop the result from Redis now that it is read (or no longer awaited)."""
        try:
            result.forget()
        except REDIS_DOWN:
            log.debug("could not forget task %s", result.id, exc_info=True)

    def is_ready(self) -> bool:
        return not self._closed

    def broker_is_reachable(self) -> bool:
        return self.probe.is_reachable()

    def queue_depth(self) -> float:
        return self.probe.queue_depth()

    def live_worker_count(self) -> int:
        """Live workers of this model (a readiness check: 0 is not ready)."""
        workers = self.probe.live_workers() or []
        return sum(w.model_version == self.model_version for w in workers)

    def worker_list(self) -> list[dict[str, Any]]:
        """The live workers as /readyz shows them (empty when Redis does not answer)."""
        return [
            {"hostname": w.hostname, "model_version": w.model_version, "concurrency": w.concurrency}
            for w in self.probe.live_workers() or []
        ]

    def workers_by_model(self) -> dict[str, int]:
        """Live workers by the model version they embed with (for /metrics)."""
        return dict(Counter(w.model_version for w in self.probe.live_workers() or []))

    def close(self) -> None:
        self._closed = True
        self.probe.close()
        self.app.close()
