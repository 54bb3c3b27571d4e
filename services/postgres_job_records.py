"""Background jobs' records in PostgreSQL (``AVID_DATABASE_URL``): the ``jobs`` table of the
database that also holds the items, with the contract of ``job_records.JobRecords``.

Every API process sharing the database lists every job (``GET /jobs`` on any replica). A
job is run by the process that accepted it, and each record names that process's data
directory (``owner``): after a restart ``unfinished`` (what ``resume`` takes up and what
keeps input files) is that owner's jobs only, never a job another replica is running.
Each call is one short transaction on a pooled connection; a committed change is durable as
PostgreSQL's WAL makes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from services.database import tables as t
from services.database.engine import open_engine
from services.job_records import JOB_STATES, UNFINISHED, JobState, job_row

_COLUMNS = (
    t.jobs.c.job_id,
    t.jobs.c.state,
    t.jobs.c.progress,
    t.jobs.c.payload,
    t.jobs.c.result,
    t.jobs.c.error,
    t.jobs.c.attempts,
    t.jobs.c.created_at,
    t.jobs.c.updated_at,
)


def _rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [job_row(tuple(r)) for r in rows]


class PostgresJobRecords:
    """The ``jobs`` table in PostgreSQL (see the module doc)."""

    persistent = True

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        self.owner = owner
        self._engine = open_engine(url)

    def insert(self, job_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self._engine.begin() as c:
            row = c.execute(
                insert(t.jobs)
                .values(
                    job_id=job_id,
                    state="queued",
                    progress=0.0,
                    payload=json.dumps(dict(payload)),
                    created_at=now,
                    updated_at=now,
                    owner=self.owner,
                )
                .returning(*_COLUMNS)
            ).one()
        return job_row(tuple(row))

    def update(self, job_id: str, **changes: Any) -> None:
        """Set columns (``result`` / ``error`` given as JSON-able values); ``attempts=+1``
        is written as ``bump_attempts=True``."""
        values: dict[str, Any] = {"updated_at": time.time()}
        if changes.pop("bump_attempts", False):
            values["attempts"] = t.jobs.c.attempts + 1
        for name, value in changes.items():
            if name not in ("state", "progress", "result", "error"):
                raise ValueError(f"unknown job column {name!r}")
            values[name] = json.dumps(value) if name in ("result", "error") else value
        with self._engine.begin() as c:
            c.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**values))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as c:
            row = c.execute(select(*_COLUMNS).where(t.jobs.c.job_id == job_id)).first()
        return None if row is None else job_row(tuple(row))

    def page(
        self, state: JobState | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Jobs (of ``state``, or all), oldest first, and how many there are in all."""
        count = select(func.count()).select_from(t.jobs)
        query = select(*_COLUMNS).order_by(t.jobs.c.created_at, t.jobs.c.job_id)
        if state:
            count, query = (
                count.where(t.jobs.c.state == state),
                query.where(t.jobs.c.state == state),
            )
        with (
            self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as c,
            c.begin(),
        ):
            total = int(c.execute(count).scalar_one())
            rows = c.execute(query.limit(limit).offset(offset)).all()
        return _rows(rows), total

    def unfinished(self) -> list[dict[str, Any]]:
        """This owner's queued and running jobs, oldest first (what a restarted service takes
        up again)."""
        with self._engine.connect() as c:
            rows = c.execute(
                select(*_COLUMNS)
                .where(t.jobs.c.state.in_(UNFINISHED), t.jobs.c.owner == self.owner)
                .order_by(t.jobs.c.created_at, t.jobs.c.job_id)
            ).all()
        return _rows(rows)

    def counts(self) -> dict[JobState, int]:
        out: dict[JobState, int] = dict.fromkeys(JOB_STATES, 0)
        with self._engine.connect() as c:
            for state, n in c.execute(
                select(t.jobs.c.state, func.count()).group_by(t.jobs.c.state)
            ):
                out[state] = int(n)
        return out

    def forget_finished(self, keep: int) -> None:
        """Delete the oldest finished jobs beyond the newest ``keep``."""
        finished = t.jobs.c.state.in_(("done", "failed"))
        newest = (
            select(t.jobs.c.job_id).where(finished).order_by(t.jobs.c.updated_at.desc()).limit(keep)
        )
        with self._engine.begin() as c:
            c.execute(delete(t.jobs).where(finished, t.jobs.c.job_id.not_in(newest)))

    def close(self) -> None:
        self._engine.dispose()
