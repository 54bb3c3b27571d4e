"""Background jobs for long files: ``JobRunner`` (the interface the API uses) and
``ThreadJobRunner`` (a small thread pool, every job recorded in SQLite: ``job_records``).

A job is a JSON-able payload handed to a handler ``(payload, progress) -> result``; its
status has a state (queued, running, done, failed), a progress in [0, 1], and the result or
an error ``{"code", "message"}``.

What survives what (with records on disk, as the service keeps them beside the items):

- ``kill -9`` (or a crash): every accepted job keeps its record. The next start runs
  ``resume``: a queued or running job whose input is still there is queued again (embedding is
  idempotent: the store keys items on content hash and model version); one whose input is gone,
  or that was interrupted ``MAX_ATTEMPTS`` times, fails with code ``interrupted`` and the reason.
- ``close`` (SIGTERM: uvicorn's graceful shutdown): no new job is taken (``RunnerClosed``, a
  503), running jobs finish, queued ones stay queued on disk for the next start.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from services.errors import Unavailable
from services.job_records import JOB_STATES, JobRecords, JobRecordStore, JobState

__all__ = [
    "JOB_STATES",
    "JobNotFound",
    "JobRunner",
    "JobState",
    "JobStatus",
    "ThreadJobRunner",
]

log = logging.getLogger(__name__)

Progress = Callable[[float], None]
JobHandler = Callable[[Mapping[str, Any], Progress], dict[str, Any]]
ErrorDescriber = Callable[[Exception], dict[str, str]]
# Why a recorded job cannot run again after a restart (None: it can).
ResumeCheck = Callable[[Mapping[str, Any]], str | None]
MAX_ATTEMPTS = 3


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class RunnerClosed(Unavailable):
    """The runner is shutting down and takes no new job (HTTP 503)."""


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: JobState
    progress: float
    created_at: float
    updated_at: float
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobStatus:
        return cls(
            id=row["id"],
            state=row["state"],
            progress=row["progress"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            result=row["result"],
            error=row["error"],
        )


class JobRunner(Protocol):
    def submit(self, payload: Mapping[str, Any]) -> JobStatus: ...

    def status(self, job_id: str) -> JobStatus: ...

    def page(
        self, state: JobState | None, offset: int, limit: int
    ) -> tuple[list[JobStatus], int]: ...

    def counts(self) -> dict[JobState, int]: ...

    def close(self) -> None: ...


def _generic_error(exc: Exception) -> dict[str, str]:
    return {"code": "internal", "message": "the job failed unexpectedly"}


class ThreadJobRunner:
    """Jobs on a thread pool, recorded in ``records`` (default: in memory only); the newest
    ``keep_finished`` finished jobs stay queryable."""

    def __init__(
        self,
        handler: JobHandler,
        *,
        records: JobRecordStore | None = None,
        workers: int = 2,
        keep_finished: int = 1000,
        describe_error: ErrorDescriber = _generic_error,
    ) -> None:
        self._handler = handler
        self._describe_error = describe_error
        self._keep_finished = keep_finished
        self._records: JobRecordStore = records if records is not None else JobRecords(":memory:")
        self._owns_records = records is None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avid-job")
        self._closed = False

    def submit(self, payload: Mapping[str, Any]) -> JobStatus:
        with self._lock:
            if self._closed:
                raise RunnerClosed("the service is shutting down; send the file again later")
            row = self._records.insert(uuid.uuid4().hex, payload)
            self._pool.submit(self._run, row["id"], dict(payload))
        return JobStatus.of(row)

    def resume(self, check: ResumeCheck) -> tuple[int, int]:
        """Take up the jobs a previous process left queued or running (see the module doc);
        returns (queued again, failed)."""
        resumed = failed = 0
        for row in self._records.unfinished():
            reason = check(row["payload"])
            if reason is None and row["attempts"] >= MAX_ATTEMPTS:
                reason = f"the service stopped {row['attempts']} times while running this job"
            if reason is not None:
                error = {"code": "interrupted", "message": f"not finished: {reason}"}
                self._records.update(row["id"], state="failed", error=error)
                failed += 1
                continue
            self._records.update(row["id"], state="queued", progress=0.0)
            with self._lock:
                self._pool.submit(self._run, row["id"], dict(row["payload"]))
            resumed += 1
        if resumed or failed:
            log.info("jobs of the previous run: %d queued again, %d failed", resumed, failed)
        return resumed, failed

    def unfinished_payloads(self) -> list[dict[str, Any]]:
        """The payloads of the queued and running jobs (their files must stay)."""
        return [dict(row["payload"]) for row in self._records.unfinished()]

    def status(self, job_id: str) -> JobStatus:
        row = self._records.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return JobStatus.of(row)

    def page(self, state: JobState | None, offset: int, limit: int) -> tuple[list[JobStatus], int]:
        rows, total = self._records.page(state, offset, limit)
        return [JobStatus.of(r) for r in rows], total

    def counts(self) -> dict[JobState, int]:
        return self._records.counts()

    def close(self) -> None:
        """Take no new job, let running jobs finish. Queued jobs stay queued in persistent
        records (the next start resumes them); in memory-only records they fail with code
        ``shutdown``."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        if not self._records.persistent:
            error = {"code": "shutdown", "message": "the service stopped first"}
            for row in self._records.unfinished():
                self._records.update(row["id"], state="failed", error=error)
        if self._owns_records:
            return  # memory-only records stay readable after close
        self._records.close()

    def _run(self, job_id: str, payload: dict[str, Any]) -> None:
        self._records.update(job_id, state="running", bump_attempts=True)

        def progress(fraction: float) -> None:
            self._records.update(job_id, progress=min(max(float(fraction), 0.0), 1.0))

        try:
            result = self._handler(payload, progress)
        except Exception as exc:
            log.warning("job %s failed: %s", job_id, exc, exc_info=True)
            self._records.update(job_id, state="failed", error=self._describe_error(exc))
        else:
            self._records.update(job_id, state="done", progress=1.0, result=result)
        self._records.forget_finished(self._keep_finished)
