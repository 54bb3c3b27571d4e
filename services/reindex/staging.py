"""Vectors that ``avid reindex`` has made with the new model but not yet swapped into the index.

One SQLite file beside the index. A row is keyed by (model version, content hash, item kind),
so a re-run skips media it has already embedded (resumable, idempotent) and a run with another
checkpoint never picks up this one's vectors. Each row is committed (fsynced) as soon as its
file is embedded, so an interrupted run loses at most the files in flight.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from services.index import ItemKind, Modality, WindowVectors

STAGING_FILE = "reindex-staging.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS staged (
    model_version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    n_windows INTEGER NOT NULL,
    starts BLOB NOT NULL,
    ends BLOB NOT NULL,
    video BLOB,
    audio BLOB,
    PRIMARY KEY (model_version, content_hash, kind)
);
"""


class StagedVectors:
    """Re-embedded windows waiting for the swap (see the module doc)."""

    def __init__(self, path: Path, model_version: str) -> None:
        self.path = path
        self.model_version = model_version
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def drop_other_versions(self) -> int:
        """Forget vectors an earlier, unfinished run made with another checkpoint."""
        cursor = self._conn.execute(
            "DELETE FROM staged WHERE model_version != ?", (self.model_version,)
        )
        return cursor.rowcount

    def staged_keys(self) -> set[tuple[str, ItemKind]]:
        """(content hash, kind) of every file already embedded by this model version."""
        rows = self._conn.execute(
            "SELECT content_hash, kind FROM staged WHERE model_version = ?", (self.model_version,)
        )
        return {(content_hash, kind) for content_hash, kind in rows.fetchall()}

    def put(
        self, content_hash: str, kind: ItemKind, windows: dict[Modality, WindowVectors]
    ) -> None:
        """Keep one file's windows (every modality shares the same window times)."""
        first = next(iter(windows.values()))
        blobs = {
            m: np.ascontiguousarray(w.vectors, dtype="<f4").tobytes() for m, w in windows.items()
        }
        self._conn.execute(
            "INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.model_version,
                content_hash,
                kind,
                len(first),
                np.ascontiguousarray(first.starts, dtype="<f8").tobytes(),
                np.ascontiguousarray(first.ends, dtype="<f8").tobytes(),
                blobs.get("video"),
                blobs.get("audio"),
            ),
        )

    def get(self, content_hash: str, kind: ItemKind) -> dict[Modality, WindowVectors] | None:
        row = self._conn.execute(
            "SELECT n_windows, starts, ends, video, audio FROM staged"
            " WHERE model_version = ? AND content_hash = ? AND kind = ?",
            (self.model_version, content_hash, kind),
        ).fetchone()
        if row is None:
            return None
        n, starts_blob, ends_blob, video, audio = row
        starts = np.frombuffer(starts_blob, dtype="<f8").astype(np.float64)
        ends = np.frombuffer(ends_blob, dtype="<f8").astype(np.float64)
        out: dict[Modality, WindowVectors] = {}
        blobs: tuple[tuple[Modality, bytes | None], ...] = (("video", video), ("audio", audio))
        for modality, blob in blobs:
            if blob is not None:
                vectors = np.frombuffer(blob, dtype="<f4").reshape(n, -1)
                out[modality] = WindowVectors(vectors.astype(np.float32), starts, ends)
        return out

    def discard(self, content_hash: str, kind: ItemKind) -> None:
        self._conn.execute(
            "DELETE FROM staged WHERE model_version = ? AND content_hash = ? AND kind = ?",
            (self.model_version, content_hash, kind),
        )

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM staged").fetchone()[0])
