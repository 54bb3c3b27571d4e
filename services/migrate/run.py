"""``avid migrate-index --to milvus``: an embedded data directory (FAISS + SQLite) copied into
the scale-out backends its settings name.

What moves where:

- the items, with their window vectors, metadata and creation times: into the PostgreSQL
  database of ``AVID_DATABASE_URL`` when it is set (``copy_items``); without it they stay in
  the data directory's SQLite file, which stays the source of truth;
- the window vectors of every model version: into Milvus at ``AVID_MILVUS_URI`` (default
  ``<data_dir>/index/milvus.db``, Milvus Lite), in the collections a service started with
  ``AVID_INDEX_BACKEND=milvus`` and the same settings opens, keyed by the row ids of the item
  database it will use, with the ``AVID_INDEX_TYPE`` index.

Resumable: items already in the target database are skipped (by id), and the Milvus
collections are reconciled with the item database (the vectors missing from Milvus are
written, those it should not hold are removed), so a re-run after an interruption does only
what is left, and a re-run after success changes nothing. Verified at the end by counts and a
sample of equal searches (``verify``). The data directory keeps its items, vectors and FAISS
snapshots as they were (it gains the Milvus Lite file when ``AVID_MILVUS_URI`` is unset, and,
when the items stay in SQLite, the note of how Milvus was built): it still serves the
embedded default, and is the way back. Job records are not copied.

The data directory's lock is held throughout: the command refuses to run while a service
has the directory open, and a service cannot start on it meanwhile. Framework-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pymilvus import MilvusException
from sqlalchemy.exc import SQLAlchemyError

from services.database.engine import DatabaseError
from services.database.url import redacted
from services.index.backend_choice import make_backend
from services.index.data_dir_lock import DataDirLock
from services.index.errors import IndexStoreError, StoreLocked
from services.index.index_persistence import SnapshotIdentity
from services.index.index_settings import HNSWParams, IndexSpec, IVFParams
from services.index.item_database import SQLITE_FILE, ItemDatabase
from services.index.metadata import MetadataDB, stored_dim
from services.index.milvus_index import MilvusBackend, MilvusIndex
from services.index.records import MODALITIES
from services.job_records import UNFINISHED, JobRecords
from services.migrate.copy_items import CopiedItems, copy_items
from services.migrate.verify import CountCheck, SearchCheck, Space, count_checks, sample_searches
from services.settings import Settings

TARGETS = ("milvus",)


class MigrateError(RuntimeError):
    """The migration cannot run (no data dir, an unreachable target, ...); nothing was lost."""


@dataclass
class MigrationSummary:
    data_dir: Path
    milvus_uri: str
    database: str  # where the items are now, in words
    items: int = 0
    copied: CopiedItems | None = None  # None: the items stay in SQLite
    vectors: dict[Space, tuple[int, int]] = field(default_factory=dict)  # (upserted, deleted)
    counts: list[CountCheck] = field(default_factory=list)
    searches: SearchCheck | None = None
    unfinished_jobs: int = 0
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        conflicts = self.copied is not None and bool(self.copied.conflicts)
        searches_ok = self.searches is None or self.searches.ok
        return not conflicts and all(c.ok for c in self.counts) and searches_ok

    def lines(self) -> list[str]:
        out = [f"{self.data_dir} -> Milvus at {self.milvus_uri}; items in {self.database}"]
        if self.copied is None:
            out.append(f"items: {self.items} (they stay in the data dir's SQLite file)")
        else:
            c = self.copied
            out.append(
                f"items: {self.items} in the data dir; {c.copied} copied, "
                f"{c.already_there} already there, {len(c.conflicts)} conflicting"
            )
            out += [f"  conflict: {line}" for line in c.conflicts[:20]]
        for (version, modality), (upserted, deleted) in sorted(self.vectors.items()):
            out.append(
                f"Milvus {modality} vectors of {version}: {upserted} written, {deleted} removed"
            )
        out += [f"{'ok' if c.ok else 'MISMATCH'} {c.line()}" for c in self.counts]
        if self.searches is not None:
            s = self.searches
            out.append(f"{'ok' if s.ok else 'MISMATCH'} {s.line()}")
            out += [f"  differs: {line}" for line in s.differences[:10]]
        if self.unfinished_jobs:
            out.append(
                f"note: {self.unfinished_jobs} queued or running jobs stay in the data dir "
                "(job records are not copied): finish them with the embedded service first"
            )
        verdict = "verified" if self.verified else "NOT verified (see above; re-run to resume)"
        out.append(f"{verdict} in {self.seconds:.1f} s")
        return out


def migrate_index(
    settings: Settings,
    *,
    to: str = "milvus",
    page_size: int = 500,
    sample: int = 20,
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> MigrationSummary:
    """Copy ``settings.data_dir``'s items and vectors (see the module doc). Raises
    ``MigrateError`` before anything is written when the source or a target is unusable,
    and when a target fails during the copy (what was committed stays: re-run to resume)."""
    began = time.monotonic()
    if to not in TARGETS:
        raise MigrateError(f"--to must be one of {TARGETS}, got {to!r}")
    items_file = settings.index_dir / SQLITE_FILE
    if not items_file.is_file():
        raise MigrateError(
            f"no embedded index in {settings.data_dir} (no {items_file}); "
            "check --data-dir / AVID_DATA_DIR"
        )
    dim = stored_dim(items_file)
    if dim is None:
        raise MigrateError(f"{items_file} is not an AVID item database")
    uri = settings.milvus_uri or str(settings.index_dir / "milvus.db")
    url = settings.database_url
    summary = MigrationSummary(
        settings.data_dir,
        uri,
        f"the data dir's SQLite file ({items_file})" if url is None else redacted(url),
    )
    with ExitStack() as stack:
        try:
            lock = DataDirLock(settings.index_dir / "LOCK")
        except StoreLocked as exc:
            raise MigrateError(
                f"{settings.data_dir} is in use (a running `avid serve`?); stop it and re-run"
            ) from exc
        stack.callback(lock.release)
        source = MetadataDB(items_file, dim)
        stack.callback(source.close)
        summary.items = source.count_items()
        summary.unfinished_jobs = _unfinished_jobs(items_file)
        target = source if url is None else _open_database(url, dim)
        if target is not source:
            stack.callback(target.close)
        backend = _open_milvus(uri)
        stack.callback(backend.close)
        if target is not source:
            say = progress or (lambda _: None)
            try:
                summary.copied = copy_items(
                    source,
                    target,
                    page_size=page_size,
                    progress=lambda done: say(
                        f"items: {done.copied + done.already_there}/{summary.items}"
                    ),
                )
            except SQLAlchemyError as exc:
                cause = getattr(exc, "orig", None) or exc
                raise MigrateError(
                    f"copying items into {redacted(url or '')} failed: {cause} (re-run to resume)"
                ) from exc
        spec = IndexSpec(settings.index_type, dim, HNSWParams(), IVFParams())
        try:
            milvus = _fill_milvus(backend, source, target, spec, summary, progress)
            summary.counts = count_checks(source, target, milvus)
            summary.searches = sample_searches(source, target, milvus, spec, sample=sample, k=k)
        except (MilvusException, IndexStoreError) as exc:
            raise MigrateError(f"Milvus at {uri!r} failed: {exc} (re-run to resume)") from exc
    summary.seconds = time.monotonic() - began
    return summary


def _open_database(url: str, dim: int) -> ItemDatabase:
    from services.index.postgres_metadata import PostgresMetadataDB

    try:
        return PostgresMetadataDB(url, dim)
    except DatabaseError as exc:
        raise MigrateError(f"{exc} (check AVID_DATABASE_URL)") from exc
    except IndexStoreError as exc:  # holds vectors of another width
        raise MigrateError(f"cannot copy into it: {exc}") from exc


def _open_milvus(uri: str) -> MilvusBackend:
    """The Milvus backend at ``uri``, connected now (a clear error, not one mid-copy)."""
    try:
        backend = make_backend("milvus", uri)
        assert isinstance(backend, MilvusBackend)
        backend.client.list_collections()
    except (ValueError, IndexStoreError, MilvusException, OSError) as exc:
        raise MigrateError(f"cannot use Milvus at {uri!r}: {exc} (check AVID_MILVUS_URI)") from exc
    return backend


def _fill_milvus(
    backend: MilvusBackend,
    source: MetadataDB,
    target: ItemDatabase,
    spec: IndexSpec,
    summary: MigrationSummary,
    progress: Callable[[str], None] | None,
) -> dict[Space, MilvusIndex]:
    """Reconcile each (model version, modality)'s collection with ``target``."""
    indexes: dict[Space, MilvusIndex] = {}
    for version in source.model_versions():
        for modality in MODALITIES:
            if progress is not None:
                progress(f"Milvus: {modality} vectors of {version}")
            identity = SnapshotIdentity(target.store_id, version, modality, spec)
            index, upserted, deleted = backend.reconciled(target, identity)
            indexes[(version, modality)] = index
            summary.vectors[(version, modality)] = (upserted, deleted)
    return indexes


def _unfinished_jobs(items_file: Path) -> int:
    records = JobRecords(items_file)
    try:
        counts = records.counts()
    finally:
        records.close()
    return sum(counts.get(state, 0) for state in UNFINISHED)
