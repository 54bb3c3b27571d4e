"""Background jobs for long files: ``JobRunner`` (the interface the API uses) and
``ThreadJobRunner`` (embedded mode: a small thread pool, state kept in memory).

A job is a JSON-able payload handed to a handler ``(payload, progress) -> result``; its
status has a state (queued, running, done, failed), a progress in [0, 1], and the result or
an error ``{"code", "message"}``. A broker-backed runner (Celery) can implement the same
protocol: ``submit`` sends the payload as a task, ``status`` reads the task's state.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")
Progress = Callable[[float], None]
JobHandler = Callable[[Mapping[str, Any], Progress], dict[str, Any]]
ErrorDescriber = Callable[[Exception], dict[str, str]]


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: JobState
    progress: float
    created_at: float
    updated_at: float
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None


class JobRunner(Protocol):
    def submit(self, payload: Mapping[str, Any]) -> JobStatus: ...

    def status(self, job_id: str) -> JobStatus: ...

    def counts(self) -> dict[JobState, int]: ...

    def close(self) -> None: ...


def _generic_error(exc: Exception) -> dict[str, str]:
    return {"code": "internal", "message": "the job failed unexpectedly"}


class ThreadJobRunner:
    """Jobs on a thread pool; the newest ``keep_finished`` finished jobs stay queryable."""

    def __init__(
        self,
        handler: JobHandler,
        *,
        workers: int = 2,
        keep_finished: int = 1000,
        describe_error: ErrorDescriber = _generic_error,
    ) -> None:
        self._handler = handler
        self._describe_error = describe_error
        self._keep_finished = keep_finished
        self._jobs: OrderedDict[str, JobStatus] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avid-job")
        self._closed = False

    def submit(self, payload: Mapping[str, Any]) -> JobStatus:
        now = time.time()
        job = JobStatus(uuid.uuid4().hex, "queued", 0.0, now, now)
        with self._lock:
            if self._closed:
                raise RuntimeError("the job runner is shut down")
            self._jobs[job.id] = job
            self._pool.submit(self._run, job.id, dict(payload))
        return job

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def counts(self) -> dict[JobState, int]:
        out: dict[JobState, int] = dict.fromkeys(JOB_STATES, 0)
        with self._lock:
            for job in self._jobs.values():
                out[job.state] += 1
        return out

    def close(self) -> None:
        """Let running jobs finish; jobs still queued fail with code ``shutdown``."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for job_id, job in list(self._jobs.items()):
                if job.state == "queued":
                    error = {"code": "shutdown", "message": "the service stopped first"}
                    self._jobs[job_id] = replace(job, state="failed", error=error)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(job, updated_at=time.time(), **changes)

    def _run(self, job_id: str, payload: dict[str, Any]) -> None:
        self._update(job_id, state="running")

        def progress(fraction: float) -> None:
            self._update(job_id, progress=min(max(float(fraction), 0.0), 1.0))

        try:
            result = self._handler(payload, progress)
        except Exception as exc:
            log.warning("job %s failed: %s", job_id, exc, exc_info=True)
            self._update(job_id, state="failed", error=self._describe_error(exc))
        else:
            self._update(job_id, state="done", progress=1.0, result=result)
        self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            finished = [j for j, s in self._jobs.items() if s.state in ("done", "failed")]
            for job_id in finished[: max(len(finished) - self._keep_finished, 0)]:
                del self._jobs[job_id]
