"""What a running app holds: settings, embedding backend, index store, job runner, metrics.

``start_services`` builds it in the lifespan (the model is loaded there, never at import; with
``AVID_BROKER_URL`` set, Celery workers hold the model and /readyz also checks the broker);
``ServiceState.close`` stops it in the right order (jobs, then the model, then the index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from avid_model.media import MediaLimits
from services.api.errors import job_error
from services.api.metrics import ServiceMetrics
from services.embedding import EmbeddingBackend, LocalEmbeddingBackend, media_limits
from services.index import IndexStore, SnapshotPolicy
from services.index.data_dir_lock import data_dir_id
from services.ingest import job_input_missing, run_embed_job
from services.job_records import JobRecords, JobRecordStore
from services.jobs import JobRunner, ThreadJobRunner
from services.media_files import remove_orphans
from services.settings import Settings
from services.worker.backend import CeleryEmbeddingBackend

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool | int]  # falsy: not ready (0 workers, say)


@dataclass
class ServiceState:
    settings: Settings
    backend: EmbeddingBackend
    store: IndexStore
    jobs: JobRunner
    metrics: ServiceMetrics
    limits: MediaLimits
    # name -> check; /readyz is 200 only when all pass. A broker-backed setup adds "broker".
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    # Distributed mode: the live workers (hostname, model version, concurrency) for /readyz.
    live_workers: Callable[[], list[dict[str, Any]]] | None = None

    def readiness_report(self) -> dict[str, bool | int]:
        report: dict[str, bool | int] = {}
        for name, check in self.readiness.items():
            try:
                value = check()
                report[name] = value if isinstance(value, int) else bool(value)
            except Exception:
                log.exception("readiness check %s failed", name)
                report[name] = False
        return report

    def close(self, grace_s: float | None = None) -> None:
        """Stop the jobs (running ones get up to ``grace_s``; see ``ThreadJobRunner.close``),
        then the model, then the index."""
        for stop in (partial(self.jobs.close, grace_s), self.backend.close, self.store.close):
            try:
                stop()
            except Exception:
                log.exception("error while shutting down")


def _store_is_open(store: IndexStore) -> bool:
    store.count("video")  # raises once the store is closed
    return True


def _start_backend(
    settings: Settings, metrics: ServiceMetrics
) -> tuple[EmbeddingBackend, dict[str, ReadinessCheck]]:
    """The model in this process (embedded mode), or the Celery workers' (``broker_url``),
    and the readiness checks that come with it besides the backend's own ``is_ready``."""
    if settings.broker_url is None:
        local = LocalEmbeddingBackend.from_settings(settings, on_batch=metrics.observe_batch)
        metrics.track_queue(lambda: local.batcher.queue_depth)
        return local, {}
    remote = CeleryEmbeddingBackend.from_settings(settings)
    metrics.track_broker_queue(remote.queue_depth)
    metrics.track_workers(remote.workers_by_model)
    log.info("embedding through Celery workers, model %s", remote.model_version)
    return remote, {"broker": remote.broker_is_reachable, "workers": remote.live_worker_count}


def _job_records(settings: Settings, store: IndexStore) -> JobRecordStore:
    """Beside the items: in the store's SQLite file, or in ``AVID_DATABASE_URL``'s database
    (marked as this data directory's, so that only this replica resumes them)."""
    if settings.database_url is None:
        return JobRecords(store.database_path)
    from services.postgres_job_records import PostgresJobRecords

    return PostgresJobRecords(settings.database_url, owner=data_dir_id(store.data_dir))


def start_services(settings: Settings, metrics: ServiceMetrics) -> ServiceState:
    """Load the model (or reach the workers), open the index, start the job threads."""
    backend, backend_checks = _start_backend(settings, metrics)
    try:
        snapshots = SnapshotPolicy(every_changes=settings.snapshot_every)
        store = IndexStore(
            settings.index_dir,
            model_version=backend.model_version,
            index_type=settings.index_type,
            snapshots=snapshots,
            backend=settings.index_backend_of(),
            database_url=settings.database_url,
        )
    except BaseException:
        backend.close()
        raise
    for directory in (settings.media_dir, settings.scratch_dir):
        directory.mkdir(parents=True, exist_ok=True)
    jobs = ThreadJobRunner(
        partial(run_embed_job, backend=backend, store=store),
        records=_job_records(settings, store),
        workers=settings.job_workers,
        describe_error=job_error,
    )
    jobs.resume(job_input_missing)
    remove_orphans(
        settings.media_dir,
        settings.scratch_dir,
        is_stored=store.holds_content,
        in_use=[Path(payload["path"]) for payload in jobs.unfinished_payloads()],
    )
    readiness: dict[str, ReadinessCheck] = {
        "model": backend.is_ready,
        "index": partial(_store_is_open, store),
        **backend_checks,
    }
    workers = backend.worker_list if isinstance(backend, CeleryEmbeddingBackend) else None
    return ServiceState(
        settings, backend, store, jobs, metrics, media_limits(settings), readiness, workers
    )
