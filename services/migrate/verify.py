"""Check a migration: counts on both sides, and searches that give the same answers.

Counts: the data directory's items found in the target database (by id; the target may hold
other items too), and per (model version, modality) the window vectors in the item database
and in Milvus (asked of Milvus itself).
Searches: a random sample of stored window vectors, each searched (same modality, top ``k``
items) in an exact FAISS index over the data directory's vectors and in Milvus through the
target database, as the service searches (when the target holds other items too, Milvus is
asked for that many more answers, up to ``MAX_OTHERS``, and its answers among the data
directory's items are compared). On an exact index (``flat``) both must give the
same item ids in the same order (positions where the two scores tie within ``TIE`` may swap);
on an approximate one (``hnsw``, ``ivf``) they must share at least ``MIN_RECALL`` of them on
average, the bar the store's own tests set for recall@10 against exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.index.index_persistence import build_from_db
from services.index.index_settings import IndexSpec
from services.index.item_database import ItemDatabase
from services.index.item_search import search_items
from services.index.metadata import MetadataDB
from services.index.milvus_index import MilvusIndex
from services.index.records import Modality, SearchHit
from services.index.vector_index import ModalityIndex

TIE = 1e-5
MIN_RECALL = 0.95
MAX_OTHERS = 1000

Space = tuple[str, Modality]  # (model version, modality): what one index holds


@dataclass(frozen=True)
class CountCheck:
    what: str
    expected: tuple[str, int]  # (where, how many)
    found: tuple[str, int]

    @property
    def ok(self) -> bool:
        return self.expected[1] == self.found[1]

    def line(self) -> str:
        sign = "=" if self.ok else "!="
        (a, n), (b, m) = self.expected, self.found
        return f"{self.what}: {n} in {a} {sign} {m} in {b}"


@dataclass
class SearchCheck:
    exact: bool  # the Milvus index is exact: answers must be identical
    k: int
    queries: int = 0
    identical: int = 0
    recall_sum: float = 0.0
    differences: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.recall_sum / self.queries if self.queries else 1.0

    @property
    def ok(self) -> bool:
        if self.exact:
            return self.identical == self.queries
        return self.recall >= MIN_RECALL

    def line(self) -> str:
        kind = "exact" if self.exact else "approximate"
        return (
            f"searches: {self.queries} sampled stored vectors, {self.identical} with the same "
            f"top {self.k} item ids from FAISS (exact) and Milvus ({kind}); "
            f"mean overlap {self.recall:.3f}"
        )


def count_checks(
    source: MetadataDB, target: ItemDatabase, milvus: dict[Space, MilvusIndex]
) -> list[CountCheck]:
    """Every item of the data dir is in the target database (which may hold others too),
    and Milvus holds as many vectors as that database per (model version, modality)."""
    checks: list[CountCheck] = []
    if target is not source:
        found, after = 0, 0
        while True:
            page, total, next_row = source.items_after(after, 1000, None)
            found += len(target.item_summaries([item.item_id for item in page]))
            if next_row is None:
                break
            after = next_row
        checks.append(CountCheck("items", ("the data dir", total), ("the target", found)))
    database = "the data dir" if target is source else "the target database"
    for (version, modality), index in sorted(milvus.items()):
        checks.append(
            CountCheck(
                f"{modality} vectors of {version}",
                (database, target.count_windows(modality, version)),
                ("Milvus", len(index.ids())),
            )
        )
    return checks


def same_answers(a: list[SearchHit], b: list[SearchHit]) -> bool:
    """The same item ids in the same order, but where two scores tie (within ``TIE``)."""
    return len(a) == len(b) and all(
        x.item_id == y.item_id or abs(x.score - y.score) <= TIE for x, y in zip(a, b, strict=True)
    )


def sample_searches(
    source: MetadataDB,
    target: ItemDatabase,
    milvus: dict[Space, MilvusIndex],
    spec: IndexSpec,
    *,
    sample: int,
    k: int,
    seed: int = 0,
) -> SearchCheck:
    """Search ``sample`` random stored vectors both ways (see the module doc)."""
    check = SearchCheck(exact=spec.index_type == "flat", k=k)
    total = source.count_items()
    # Items the target holds besides the data dir's may rank among them: ask Milvus for that
    # many more and compare the data dir's items among its answers (up to MAX_OTHERS more).
    others = min(max(target.count_items() - total, 0), MAX_OTHERS)
    if not total or sample <= 0:
        return check
    rng = np.random.default_rng(seed)
    exact = IndexSpec("flat", spec.dim, spec.hnsw, spec.ivf)
    faiss: dict[Space, ModalityIndex] = {}
    for offset in sorted(rng.choice(total, size=min(sample, total), replace=False)):
        page, _ = source.list_items(int(offset), 1, None, None)
        if not page:
            continue
        item = page[0]
        modality: Modality = "video" if item.has_video else "audio"
        stored = source.windows_of(item.item_id, modality)
        space = (item.model_version, modality)
        if stored is None or space not in milvus:
            continue
        if space not in faiss:
            faiss[space] = build_from_db(source, exact, *space)
        query = stored.windows.vectors[rng.integers(len(stored.windows))][None, :]
        expected = search_items(faiss[space], source, query, k)
        found = _data_dirs_hits(search_items(milvus[space], target, query, k + others), source, k)
        check.queries += 1
        wanted = {h.item_id for h in expected}
        check.recall_sum += len(wanted & {h.item_id for h in found}) / max(len(wanted), 1)
        if same_answers(expected, found):
            check.identical += 1
        else:
            check.differences.append(
                f"{item.item_id} ({modality} window): FAISS "
                f"{[h.item_id for h in expected]}, Milvus {[h.item_id for h in found]}"
            )
    return check


def _data_dirs_hits(hits: list[SearchHit], source: MetadataDB, k: int) -> list[SearchHit]:
    """The first ``k`` of ``hits`` that are items of the data dir."""
    known = source.item_summaries([h.item_id for h in hits])
    return [h for h in hits if h.item_id in known][:k]
