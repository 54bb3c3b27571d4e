"""Check a migration: counts on both sides, and searches that give the same answers.

Counts: the items in the data directory and in the target database, and per (model version,
modality) the window vectors in the data directory and in Milvus (asked of Milvus itself).
Searches: a random sample of stored window vectors, each searched (same modality, top ``k``
items) in an exact FAISS index over the data directory's vectors and in Milvus through the
target database, as the service searches. On an exact index (``flat``) both must give the
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

Space = tuple[str, Modality]  # (model version, modality): what one index holds


@dataclass(frozen=True)
class CountCheck:
    what: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target

    def line(self) -> str:
        sign = "=" if self.ok else "!="
        return f"{self.what}: {self.source} in the data dir {sign} {self.target} in the target"


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
    checks: list[CountCheck] = []
    if target is not source:
        checks.append(CountCheck("items", source.count_items(), target.count_items()))
    for (version, modality), index in sorted(milvus.items()):
        n = source.count_windows(modality, version)
        if target is not source:
            checks.append(
                CountCheck(
                    f"{modality} windows of {version} (database)",
                    n,
                    target.count_windows(modality, version),
                )
            )
        checks.append(CountCheck(f"{modality} vectors of {version} (Milvus)", n, len(index.ids())))
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
        found = search_items(milvus[space], target, query, k)
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
