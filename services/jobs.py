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
- ``close(grace_s)`` (SIGTERM: ``AVID_SHUTDOWN_GRACE_S``): no new job is taken
  (``RunnerClosed``, a 503), running jobs get up to ``grace_s`` to finish, queued ones stay
  queued on disk for the next start. A job still running after the grace is abandoned: its
  record is set back to queued (the next start runs it again, counted as an attempt) and
  whatever its thread does afterwards is not recorded. Job threads are daemons, so an
  abandoned one never holds the process past its exit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
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

    def close(self, grace_s: float | None = None) -> None: ...


def _generic_error(exc: Exception) -> dict[str, str]:
    return {"code": "internal", "message": "the job failed unexpectedly"}


class ThreadJobRunner:
    """Jobs on ``workers`` daemon threads, recorded in ``records`` (default: in memory only);
    the newest ``keep_finished`` finished jobs stay queryable."""

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
        self._closed = False
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._running: set[str] = set()  # job ids a thread is running now
        self._abandoned: set[str] = set()  # running past the grace: their outcome is dropped
        self._threads = [
            threading.Thread(target=self._work, name=f"avid-job-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, payload: Mapping[str, Any]) -> JobStatus:
        with self._lock:
            if self._closed:
                raise RunnerClosed("the service is shutting down; send the file again later")
            row = self._records.insert(uuid.uuid4().hex, payload)
            self._queue.put((row["id"], dict(payload)))
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
                self._queue.put((row["id"], dict(row["payload"])))
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

    def close(self, grace_s: float | None = None) -> None:
        """Take no new job; give running jobs up to ``grace_s`` seconds (None: as long as they
        take), then abandon the ones still running. Queued and abandoned jobs stay queued in
        persistent records (the next start resumes them); in memory-only records they fail
        with code ``shutdown``."""
        with self._lock:
            self._closed = True
            while True:  # what no thread has taken yet stays as recorded: queued
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            for _ in self._threads:
                self._queue.put(None)
        deadline = None if grace_s is None else time.monotonic() + max(grace_s, 0.0)
        for thread in self._threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._abandoned = set(self._running)
            abandoned = sorted(self._abandoned)
        if abandoned:
            log.warning(
                "%d job(s) still running after the %.1f s grace, left queued for the next "
                "start: %s",
                len(abandoned),
                grace_s,
                ", ".join(abandoned),
            )
        if self._records.persistent:
            for job_id in abandoned:
                self._records.update(job_id, state="queued", progress=0.0)
        else:
            error = {"code": "shutdown", "message": "the service stopped first"}
            for row in self._records.unfinished():
                self._records.update(row["id"], state="failed", error=error)
        if self._owns_records:
            return  # memory-only records stay readable after close
        with self._lock:  # an abandoned thread that ends now records nothing (see _record)
            self._records.close()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._run(*item)
            except Exception:  # a records error: the job stays unfinished, resumed next start
                log.exception("job %s could not be run", item[0])

    def _record(self, job_id: str, *, finished: bool = False, **changes: Any) -> None:
        """Write a change of a job, unless close abandoned it (then nothing is written: its
        record stays queued). ``finished``: its last change; it is no longer running."""
        with self._lock:
            if finished:
                self._running.discard(job_id)
            if job_id in self._abandoned:
                return
            self._records.update(job_id, **changes)
            if finished:
                self._records.forget_finished(self._keep_finished)

    def _run(self, job_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._running.add(job_id)
            self._records.update(job_id, state="running", bump_attempts=True)

        def progress(fraction: float) -> None:
            self._record(job_id, progress=min(max(float(fraction), 0.0), 1.0))

        try:
            result = self._handler(payload, progress)
        except Exception as exc:
            if job_id not in self._abandoned:
                log.warning("job %s failed: %s", job_id, exc, exc_info=True)
            self._record(job_id, finished=True, state="failed", error=self._describe_error(exc))
        else:
            self._record(job_id, finished=True, state="done", progress=1.0, result=result)
