"""``avid reindex``: re-embed every stored item's kept media with a new checkpoint.

A service only searches vectors of its own model version; items stored by another model stay
listed but "stale" until they are re-embedded. Reindexing keeps each item's id, kind and
metadata and re-embeds the file kept for it (``<media_dir>/<sha256><ext>``) the same way the
service does (same windows, limits and batcher), so a service started with the new
checkpoint afterwards serves every item.

What happens to the old vectors: they stay untouched, and searchable by a service with the
old checkpoint, until every item that can be re-embedded has been. The new vectors are staged
beside the index first (``services.reindex.staging``); only then is each item swapped, in one
transaction per item, to the new vectors, and its old ones are dropped (an item holds one
model's vectors). A run that stops or fails while embedding — the long part — leaves the
index as it was, and a re-run resumes from the staged files; a run that stops during the
swap (seconds) is finished by a re-run. Items whose file is missing or no longer decodes keep
their old vectors and stay stale (not lost, not searchable by the new model); they are
reported and the run exits non-zero; a re-run picks them up once the file is back, or they
can be deleted (``DELETE /items/{id}``). To be able to go back, copy the data directory first.

The store's writer lock is held throughout: reindexing refuses to start while a service has
the data directory open, and a service cannot start while it runs. Framework-free.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from avid_model.checkpoint import read_metadata
from avid_model.errors import MediaError
from avid_model.model import ModelConfig
from services import media_files
from services.embedding import LocalEmbeddingBackend
from services.index import (
    BadItem,
    BadVector,
    IndexStore,
    ItemExists,
    ItemKind,
    ItemRecord,
    Modality,
    SnapshotPolicy,
    StoreLocked,
    WindowVectors,
)
from services.reindex.staging import STAGING_FILE, StagedVectors
from services.settings import Settings

ITEMS_DB_FILE = "items.sqlite3"  # the IndexStore's SQLite file inside settings.index_dir

StagingKey = tuple[str, ItemKind]  # (content hash, item kind)


class ReindexError(Exception):
    """A reason the run cannot start (no index, directory in use, ...): shown to the user."""


@dataclass(frozen=True)
class SkippedItem:
    """An item left with its old vectors, and why."""

    item_id: str
    reason: str


@dataclass
class ReindexSummary:
    model_version: str
    data_dir: Path
    dry_run: bool = False
    items: int = 0
    already_current: int = 0
    stale_by_version: Counter[str] = field(default_factory=Counter)
    embedded: int = 0  # files embedded by this run
    resumed: int = 0  # files an earlier, interrupted run had embedded
    swapped: int = 0
    missing_media: list[SkippedItem] = field(default_factory=list)
    failed: list[SkippedItem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every item now has vectors of the new model."""
        return not self.missing_media and not self.failed

    def lines(self) -> list[str]:
        """The human-readable report the command prints."""
        stale = sum(self.stale_by_version.values())
        old = ", ".join(f"{n} of {v}" for v, n in sorted(self.stale_by_version.items()))
        out = [
            f"reindex of {self.data_dir} with model {self.model_version}"
            + (" (dry run: nothing written)" if self.dry_run else ""),
            f"  items: {self.items} stored, {self.already_current} already of this model, "
            f"{stale} to re-embed" + (f" ({old})" if old else ""),
        ]
        if self.dry_run:
            out.append(
                f"  to embed: {self.embedded} files; staged by an earlier run: {self.resumed}"
            )
        else:
            out.append(
                f"  embedded: {self.embedded} files now, {self.resumed} staged by an earlier run"
            )
            out.append(f"  swapped: {_items(self.swapped)} to the new model (old vectors dropped)")
        for title, skipped in (("missing media", self.missing_media), ("failed", self.failed)):
            if skipped:
                out.append(f"  {title}: {_items(len(skipped))} keep their old vectors (stale):")
                out += [f"    {s.item_id}: {s.reason}" for s in skipped]
        if not self.dry_run and not self.complete:
            out.append("  re-run `avid reindex` once the files are back, or delete those items")
        out.append(f"  took {self.seconds:.1f} s")
        return out


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def kept_media(media_dir: Path) -> dict[str, Path]:
    """content hash -> the kept upload ``<sha256><ext>`` in ``media_dir``."""
    return {sha: paths[0] for sha, paths in media_files.kept_media(media_dir).items()}


def reindex(
    settings: Settings, *, jobs: int = 2, dry_run: bool = False, show_progress: bool = False
) -> ReindexSummary:
    """Re-embed every item not made by ``settings``' checkpoint (see the module doc).

    Raises ``ReindexError`` (and ``CheckpointError`` / ``StartupError`` for the checkpoint)
    before anything is written; per-item problems end up in the summary instead.
    """
    began = time.monotonic()
    checkpoint = settings.checkpoint_path()
    meta = read_metadata(checkpoint)
    model_version = str(meta["model_version"])
    if settings.database_url is None and not (settings.index_dir / ITEMS_DB_FILE).is_file():
        raise ReindexError(
            f"no index in {settings.data_dir} (nothing was ever stored there); "
            "check --data-dir / AVID_DATA_DIR"
        )
    summary = ReindexSummary(model_version, settings.data_dir, dry_run)
    dim = ModelConfig.from_dict(meta["model"]).embed_dim
    with _open_store(settings, model_version, dim) as store:
        stale = store.stale_items()
        summary.items = store.list_items(limit=0)[1]
        summary.already_current = summary.items - len(stale)
        summary.stale_by_version.update(item.model_version for item in stale)
        if stale:
            _run(settings, store, stale, summary, jobs=jobs, show_progress=show_progress)
    summary.seconds = time.monotonic() - began
    return summary


@contextlib.contextmanager
def _open_store(settings: Settings, model_version: str, dim: int) -> Iterator[IndexStore]:
    try:
        store = IndexStore(
            settings.index_dir,
            model_version=model_version,
            index_type=settings.index_type,
            dim=dim,
            snapshots=SnapshotPolicy(every_changes=settings.snapshot_every),
            backend=settings.index_backend_of(),
            database_url=settings.database_url,
        )
    except StoreLocked as exc:
        raise ReindexError(
            f"{settings.data_dir} is in use (a running `avid serve`?); stop it and re-run"
        ) from exc
    with store:
        yield store


def _run(
    settings: Settings,
    store: IndexStore,
    stale: list[ItemRecord],
    summary: ReindexSummary,
    *,
    jobs: int,
    show_progress: bool,
) -> None:
    staging_path = settings.index_dir / STAGING_FILE
    if summary.dry_run and not staging_path.exists():
        staged: set[StagingKey] = set()
        staging = None
    else:
        staging = StagedVectors(staging_path, summary.model_version)
        staged = staging.staged_keys()
        if not summary.dry_run:
            staging.drop_other_versions()
            for orphan in staged - {(i.content_hash, i.kind) for i in stale}:
                staging.discard(*orphan)  # left by a run stopped mid-swap
    try:
        media = kept_media(settings.media_dir)
        to_embed: dict[StagingKey, Path] = {}
        for item in stale:
            key = (item.content_hash, item.kind)
            if key in staged or key in to_embed:
                continue
            path = media.get(item.content_hash)
            if path is None:
                reason = f"no kept media file {item.content_hash}.* in {settings.media_dir}"
                summary.missing_media.append(SkippedItem(item.item_id, reason))
            else:
                to_embed[key] = path
        summary.resumed = len(staged & {(i.content_hash, i.kind) for i in stale})
        if summary.dry_run or staging is None:
            summary.embedded = len(to_embed)
            return
        failures = _embed_into(settings, staging, to_embed, summary, jobs, show_progress)
        for item in stale:
            if (why := failures.get((item.content_hash, item.kind))) is not None:
                summary.failed.append(SkippedItem(item.item_id, why))
        _swap(store, staging, stale, summary)
    finally:
        if staging is not None:
            left = staging.count()
            staging.close()
            if left == 0:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{staging_path}{suffix}").unlink(missing_ok=True)


def _embed_into(
    settings: Settings,
    staging: StagedVectors,
    to_embed: dict[StagingKey, Path],
    summary: ReindexSummary,
    jobs: int,
    show_progress: bool,
) -> dict[StagingKey, str]:
    """Embed each file and stage its windows; the keys that failed, with the reason."""
    if not to_embed:
        return {}
    failed: dict[StagingKey, str] = {}
    backend = LocalEmbeddingBackend.from_settings(settings)
    try:
        bar = tqdm(total=len(to_embed), unit="file", disable=not show_progress, desc="embedding")
        with bar:
            for key, outcome in _embed_in_order(backend, list(to_embed.items()), jobs):
                if isinstance(outcome, str):
                    failed[key] = outcome
                else:
                    staging.put(key[0], key[1], outcome)
                    summary.embedded += 1
                bar.update()
    finally:
        backend.close()
    return failed


EmbedOutcome = dict[Modality, WindowVectors] | str  # the windows, or why there are none


def _embed_in_order(
    backend: LocalEmbeddingBackend, work: Sequence[tuple[StagingKey, Path]], jobs: int
) -> Iterator[tuple[StagingKey, EmbedOutcome]]:
    """Embed ``jobs`` files at a time (their windows share the batcher's forward passes),
    yielding results in order; the files not yet started are cancelled on an error."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="avid-reindex")
    pending: deque[tuple[StagingKey, Future[EmbedOutcome]]] = deque()
    todo = iter(work)
    try:
        while True:
            while len(pending) < 2 * jobs and (nxt := next(todo, None)) is not None:
                key, path = nxt
                pending.append((key, pool.submit(_embed_file, backend, path, key[1])))
            if not pending:
                return
            key, future = pending.popleft()
            yield key, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _embed_file(backend: LocalEmbeddingBackend, path: Path, kind: ItemKind) -> EmbedOutcome:
    wanted: frozenset[Modality] = frozenset({"video", "audio"} if kind == "video" else {"audio"})
    try:
        emb = backend.embed_file(path, wanted)
    except MediaError as exc:
        return str(exc)
    windows: dict[Modality, WindowVectors] = {}
    for modality, vectors in (("video", emb.video), ("audio", emb.audio)):
        if vectors is not None and modality in wanted:
            windows[modality] = WindowVectors.from_lists(vectors.numpy(), emb.starts, emb.ends)
    if kind not in windows or not len(windows[kind]):
        return f"{path.name}: no {kind} window could be cut from the file"
    return windows


def _swap(
    store: IndexStore, staging: StagedVectors, stale: list[ItemRecord], summary: ReindexSummary
) -> None:
    """Give each stale item its staged vectors (one transaction per item). Two stale items
    with the same content (stored by two older models) share one staged file; the second
    one's swap is then refused (the store holds a content once per model) and reported."""
    by_key: dict[StagingKey, list[ItemRecord]] = {}
    for item in stale:
        by_key.setdefault((item.content_hash, item.kind), []).append(item)
    for (content_hash, kind), items in by_key.items():
        windows = staging.get(content_hash, kind)
        if windows is None:
            continue  # missing media or failed: already reported
        taken = False
        for item in items:
            try:
                store.replace_item(
                    item.item_id,
                    model_version=summary.model_version,
                    video=windows.get("video"),
                    audio=windows.get("audio"),
                )
            except (ItemExists, BadItem, BadVector) as exc:
                summary.failed.append(SkippedItem(item.item_id, str(exc)))
                continue
            taken = True
            summary.swapped += 1
        if taken:
            staging.discard(content_hash, kind)
