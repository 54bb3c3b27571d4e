"""Background jobs' records in SQLite: the ``jobs`` table of the metadata database, beside
the items (``IndexStore.database_path``), so a job outlives the process that accepted it.

A record holds the job's payload (what to embed: a path on disk, never bytes), its state,
progress, attempts, and its result or error. WAL with ``synchronous=NORMAL`` on this
connection: a committed change survives ``kill -9`` (the WAL is in the OS's hands at once; only
a power cut may lose the last progress updates). One connection, behind a lock: jobs are few
and their updates small. ``":memory:"`` keeps them in memory only (tests, tools).

``JobRecordStore`` is the contract; ``PostgresJobRecords`` (``postgres_job_records``) keeps
the records in the PostgreSQL database of ``AVID_DATABASE_URL`` instead, where several API
processes see each other's jobs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

JobState = Literal["queued", "running", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")
UNFINISHED: tuple[JobState, ...] = ("queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress REAL NOT NULL,
    payload TEXT NOT NULL,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""
_COLUMNS = "job_id, state, progress, payload, result, error, attempts, created_at, updated_at"


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class JobRecordStore(Protocol):
    """What the job runner needs of its records (rows: plain dicts of the columns)."""

    persistent: bool

    def insert(self, job_id: str, payload: Mapping[str, Any]) -> dict[str, Any]: ...

    def update(self, job_id: str, **changes: Any) -> None: ...

    def get(self, job_id: str) -> dict[str, Any] | None: ...

    def page(
        self, state: JobState | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]: ...

    def unfinished(self) -> list[dict[str, Any]]: ...

    def counts(self) -> dict[JobState, int]: ...

    def forget_finished(self, keep: int) -> None: ...

    def close(self) -> None: ...


def job_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A record as a dict, from a row of the ``_COLUMNS`` (JSON columns decoded)."""
    job_id, state, progress, payload, result, error, attempts, created, updated = row
    return {
        "id": job_id,
        "state": state,
        "progress": float(progress),
        "payload": _load(payload),
        "result": _load(result),
        "error": _load(error),
        "attempts": int(attempts),
        "created_at": float(created),
        "updated_at": float(updated),
    }


class JobRecords:
    """The ``jobs`` table (see the module doc). Rows are plain dicts of the columns."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.persistent = str(path) != ":memory:"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if self.persistent:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    def _row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return job_row(row)

    def insert(self, job_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs (job_id, state, progress, payload, created_at, updated_at) "
                "VALUES (?, 'queued', 0.0, ?, ?, ?)",
                (job_id, json.dumps(dict(payload)), now, now),
            )
        found = self.get(job_id)
        assert found is not None
        return found

    def update(self, job_id: str, **changes: Any) -> None:
        """Set columns (``result`` / ``error`` given as JSON-able values); ``attempts=+1``
        is written as ``bump_attempts=True``."""
        sets: list[str] = ["updated_at = ?"]
        values: list[Any] = [time.time()]
        if changes.pop("bump_attempts", False):
            sets.append("attempts = attempts + 1")
        for name, value in changes.items():
            if name not in ("state", "progress", "result", "error"):
                raise ValueError(f"unknown job column {name!r}")
            sets.append(f"{name} = ?")
            values.append(json.dumps(value) if name in ("result", "error") else value)
        with self._lock:
            self._conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE job_id = ?", (*values, job_id)
            )

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else self._row(row)

    def page(
        self, state: JobState | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Jobs (of ``state``, or all), oldest first, and how many there are in all."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created_at, job_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [self._row(r) for r in rows], int(total)

    def unfinished(self) -> list[dict[str, Any]]:
        """Queued and running jobs, oldest first (what a restarted service takes up again)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') "
                "ORDER BY created_at, job_id"
            ).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[JobState, int]:
        out: dict[JobState, int] = dict.fromkeys(JOB_STATES, 0)
        with self._lock:
            for state, n in self._conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                out[state] = int(n)
        return out

    def forget_finished(self, keep: int) -> None:
        """Delete the oldest finished jobs beyond the newest ``keep``."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM jobs WHERE state IN ('done', 'failed') AND job_id NOT IN ("
                "SELECT job_id FROM jobs WHERE state IN ('done', 'failed') "
                "ORDER BY updated_at DESC LIMIT ?)",
                (keep,),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
