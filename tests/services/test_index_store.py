"""IndexStore against each real item database — SQLite files (the default) and a
PostgreSQL database of the test's own — and each real vector backend: FAISS in process and
Milvus (Milvus Lite, embedded, on a file in the test's directory). Search answers, deletes,
restarts, model versions, idempotency and input checks run on every pairing (``open_store``
is parametrized over both: the same test, the same expected answers); FAISS snapshots and
HNSW compaction, and Milvus's reconciliation with the database, have tests of their own.
(Crash safety under kill -9 lives in test_index_store_durability.py; stores of several
processes on one PostgreSQL database in test_shared_database.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from services.index import (
    BadItem,
    BadVector,
    DuplicateContent,
    FieldCondition,
    IndexStore,
    IndexStoreError,
    ItemExists,
    ItemFilter,
    ItemNotFound,
    ItemRecord,
    IVFParams,
    ModelVersionMismatch,
    NewItem,
    SnapshotPolicy,
    WindowNotFound,
    WindowVectors,
)
from services.index.backend_choice import make_backend
from services.index.index_backend import INDEX_BACKENDS, IndexBackendName
from services.index.index_settings import INDEX_TYPES, IndexType
from services.index.item_filter import RangeOp
from tests.services.index_store_helpers import VERSION, make_item, near, unit, windows
from tests.services.postgres_db import fresh_database

# nprobe == nlist: the IVF path (trained once 312 vectors exist) answers exactly here.
SMALL_IVF = IVFParams(nlist=8, nprobe=8, train_size=0)
EXPECTED_MODE = {"flat": "flat", "hnsw": "hnsw", "ivf": "ivf"}

OpenStore = Callable[..., IndexStore]
Stored = list[tuple[ItemRecord, NewItem]]


# How a reopened store finds its index again when nothing changed in between.
REOPENED = {"faiss": "snapshot", "milvus": "reconciled"}


DatabaseOf = Callable[[str], "str | None"]  # store name -> its database URL (None: SQLite)


def store_opener(
    tmp_path: Path, backend_name: IndexBackendName, database_of: DatabaseOf | None = None
) -> tuple[OpenStore, list]:
    """Opens the store ``name`` in ``tmp_path / name``, its items in ``database_of(name)``
    (default: SQLite in that directory)."""
    opened: list[IndexStore] = []

    def _open(index_type: IndexType = "flat", name: str = "store", **kwargs: Any) -> IndexStore:
        kwargs.setdefault("model_version", VERSION)
        kwargs.setdefault("ivf", SMALL_IVF)
        milvus_uri = str(tmp_path / f"{name}-milvus" / "milvus.db")
        kwargs.setdefault("backend", make_backend(backend_name, milvus_uri))
        if database_of is not None:
            kwargs.setdefault("database_url", database_of(name))
        store = IndexStore(tmp_path / name, index_type=index_type, **kwargs)
        opened.append(store)
        return store

    return _open, opened


@pytest.fixture(params=INDEX_BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> IndexBackendName:
    return cast(IndexBackendName, request.param)


@contextmanager
def stores_on(
    tmp_path: Path, backend_name: IndexBackendName, database_url: str | None
) -> Iterator[OpenStore]:
    """An opener of stores on ``backend_name`` and the ``database_url`` database, closing
    them on exit. On PostgreSQL each store name gets a database of its own (the first one
    ``database_url``), as each directory has its own SQLite file."""
    with ExitStack() as databases:
        urls: dict[str, str | None] = {}

        def database_of(name: str) -> str | None:
            if database_url is None:
                return None
            if name not in urls:
                fresh = databases.enter_context(fresh_database()) if urls else database_url
                urls[name] = fresh
            return urls[name]

        opener, opened = store_opener(tmp_path, backend_name, database_of)
        try:
            yield opener
        finally:
            for store in opened:
                store.close()


@pytest.fixture
def open_store(
    tmp_path: Path, backend_name: IndexBackendName, database_url: str | None
) -> Iterator[OpenStore]:
    """Opens stores on ``backend_name`` and the ``database_url`` database (every pairing in
    turn); closes them after the test."""
    with stores_on(tmp_path, backend_name, database_url) as opener:
        yield opener


@pytest.fixture
def open_faiss_store(tmp_path: Path, database_url: str | None) -> Iterator[OpenStore]:
    """``open_store`` for the tests of FAISS's own machinery (snapshots, compaction)."""
    with stores_on(tmp_path, "faiss", database_url) as opener:
        yield opener


@pytest.fixture
def open_milvus_store(tmp_path: Path) -> Iterator[OpenStore]:
    opener, opened = store_opener(tmp_path, "milvus")
    yield opener
    for store in opened:
        store.close()


def populate(store: IndexStore, rng: np.random.Generator, n: int, prefix: str = "item") -> Stored:
    version = store.model_version
    items = [make_item(rng, f"{prefix}-{i}", model_version=version) for i in range(n)]
    return list(zip(store.add_items(items), items, strict=True))


def video_of(item: NewItem) -> np.ndarray:
    assert item.video is not None
    return item.video.vectors


def ranked(store: IndexStore, queries: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
    return [[(h.item_id, round(h.score, 5)) for h in store.search(q, "video", k)] for q in queries]


# -- search answers ---------------------------------------------------------------------


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_a_sound_finds_the_video_it_belongs_to(
    open_store: OpenStore, index_type: IndexType
) -> None:
    rng = np.random.default_rng(0)
    store = open_store(index_type)
    items = populate(store, rng, 100)
    target, target_item = items[37]
    # The query item's second audio window is the target's third video window, plus noise.
    sound = np.stack([unit(rng, 1)[0], near(video_of(target_item)[2], rng)])
    query = store.add_item(make_item(rng, "a-sound", kind="audio", audio=sound))

    hits = store.search_by_item(query.item_id, query_modality="audio", target="video", k=5)

    assert hits[0].item_id == target.item_id
    assert (hits[0].window, hits[0].start, hits[0].end) == (2, 4.0, 6.0)
    assert hits[0].query_window == 1
    assert hits[0].score > 0.99 > hits[1].score
    assert hits[0].metadata == {"name": "item-37"}
    assert len({h.item_id for h in hits}) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.stats()["modalities"]["video"]["mode"] == EXPECTED_MODE[index_type]


def test_the_other_way_a_picture_finds_the_sound(open_store: OpenStore) -> None:
    rng = np.random.default_rng(1)
    store = open_store()
    items = populate(store, rng, 20)
    target, target_item = items[4]
    assert target_item.audio is not None
    hits = store.search(near(target_item.audio.vectors[3], rng), "audio", k=3)
    assert (hits[0].item_id, hits[0].window, hits[0].start) == (target.item_id, 3, 6.0)


def test_one_hit_per_item_when_one_item_owns_every_near_window(open_store: OpenStore) -> None:
    rng = np.random.default_rng(2)
    store = open_store()
    populate(store, rng, 30)
    centre = unit(rng, 1)[0]
    hog = store.add_item(make_item(rng, "hog", video=near(np.tile(centre, (300, 1)), rng, 0.05)))
    hits = store.search(centre, "video", k=8)  # 300 best windows all belong to "hog"
    assert hits[0].item_id == hog.item_id
    assert len(hits) == 8 == len({h.item_id for h in hits})


def test_exclude_item_and_k_larger_than_the_collection(open_store: OpenStore) -> None:
    rng = np.random.default_rng(3)
    store = open_store()
    items = populate(store, rng, 6)
    query = video_of(items[2][1])
    hits = store.search(query, "video", k=100)
    assert len(hits) == 6 == len({h.item_id for h in hits})
    assert hits[0].item_id == items[2][0].item_id
    excluded = store.search(query, "video", k=100, exclude_item=items[2][0].item_id)
    assert [h.item_id for h in excluded] == [h.item_id for h in hits[1:]]
    assert store.search(query, "video", k=0) == []


def test_multi_window_query_scores_an_item_by_its_best_pair(open_store: OpenStore) -> None:
    rng = np.random.default_rng(4)
    store = open_store()
    items = populate(store, rng, 20)
    a, b = items[5], items[9]
    queries = np.stack([near(video_of(a[1])[0], rng, 0.05), near(video_of(b[1])[3], rng, 0.01)])
    hits = store.search(queries, "video", k=2)
    assert [h.item_id for h in hits] == [b[0].item_id, a[0].item_id]
    assert (hits[0].query_window, hits[0].window) == (1, 3)
    assert (hits[1].query_window, hits[1].window) == (0, 0)


# -- deletes, restarts, snapshots -------------------------------------------------------


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_delete_removes_from_results_get_and_list(
    open_store: OpenStore, index_type: IndexType
) -> None:
    rng = np.random.default_rng(5)
    store = open_store(index_type)
    items = populate(store, rng, 100)
    victim, victim_item = items[10]
    query = video_of(victim_item)[1]
    assert store.search(query, "video", k=1)[0].item_id == victim.item_id
    before = store.count("video")

    assert store.delete(victim.item_id)
    assert not store.delete(victim.item_id)

    assert victim.item_id not in {h.item_id for h in store.search(query, "video", k=200)}
    assert victim_item.audio is not None
    audio_hits = store.search(victim_item.audio.vectors, "audio", k=200)
    assert victim.item_id not in {h.item_id for h in audio_hits}
    assert store.get(victim.item_id) is None
    listed, total = store.list_items(0, 1000)
    assert total == 99
    assert victim.item_id not in {r.item_id for r in listed}
    assert store.count("video") == before - 4
    with pytest.raises(ItemNotFound):
        store.vector_of(victim.item_id, "video")


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_restart_gives_identical_results(
    open_store: OpenStore, index_type: IndexType, backend_name: IndexBackendName
) -> None:
    rng = np.random.default_rng(6)
    store = open_store(index_type)
    items = populate(store, rng, 100)
    store.delete(items[3][0].item_id)
    queries = np.concatenate([unit(rng, 4), video_of(items[3][1])[:1], video_of(items[50][1])])
    before = ranked(store, queries)
    store.close()

    reopened = open_store(index_type)
    assert reopened.restored["video"].how == REOPENED[backend_name]
    assert reopened.restored["video"].replayed == 0
    assert ranked(reopened, queries) == before
    assert reopened.count("video") == 99 * 4


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_rows_written_after_the_snapshot_are_replayed(
    open_faiss_store: OpenStore, index_type: IndexType
) -> None:
    rng = np.random.default_rng(7)
    manual = SnapshotPolicy(every_changes=None, every_seconds=None)
    store = open_faiss_store(index_type, snapshots=manual)
    first = populate(store, rng, 90)
    store.snapshot()
    later = populate(store, rng, 10, prefix="later")
    gone = first[0][0].item_id
    store.delete(gone)
    store.close(snapshot=False)  # as if the process died: the snapshot predates 11 changes

    reopened = open_faiss_store(index_type, snapshots=manual)
    restored = reopened.restored["video"]
    assert restored.how == "snapshot"
    assert restored.replayed == 10 * 4 + 4
    for record, item in later:
        assert reopened.search(video_of(item)[0], "video", k=1)[0].item_id == record.item_id
    assert gone not in {h.item_id for h in reopened.search(video_of(first[0][1]), "video", 50)}
    assert reopened.count("video") == 99 * 4


def test_a_corrupt_snapshot_is_ignored_and_rebuilt_from_sqlite(
    open_faiss_store: OpenStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(8)
    store = open_faiss_store("hnsw")
    populate(store, rng, 40)
    queries = unit(rng, 5)
    before = ranked(store, queries)
    store.close()
    snapshots = tmp_path / "store" / "snapshots"
    video = bytearray((snapshots / "video.faiss").read_bytes())
    video[len(video) // 2] ^= 0xFF
    (snapshots / "video.faiss").write_bytes(bytes(video))
    audio = (snapshots / "audio.faiss").read_bytes()
    (snapshots / "audio.faiss").write_bytes(audio[: len(audio) // 3])

    reopened = open_faiss_store("hnsw")
    assert reopened.restored["video"].how == "rebuilt"
    assert "checksum" in reopened.restored["video"].detail
    assert "truncated" in reopened.restored["audio"].detail
    assert reopened.count("video") == reopened.count("audio") == 160
    rebuilt = ranked(reopened, queries)
    assert [[i for i, _ in row][:3] for row in rebuilt] == [[i for i, _ in r][:3] for r in before]
    reopened.close()
    assert open_faiss_store("hnsw").restored["video"].how == "snapshot"  # rewritten after rebuild


def test_an_index_of_other_settings_is_not_reused(
    open_store: OpenStore, backend_name: IndexBackendName
) -> None:
    rng = np.random.default_rng(9)
    store = open_store("flat")
    items = populate(store, rng, 10)
    store.close()
    other = open_store("hnsw")
    restored = other.restored["video"]
    if backend_name == "faiss":
        assert restored.how == "rebuilt"
        assert "build differs" in restored.detail
    else:  # the collection is made anew with an HNSW index and filled from SQLite
        assert (restored.how, restored.replayed) == ("reconciled", 40)
    assert other.count("video") == 40
    assert other.stats()["modalities"]["video"]["mode"] == "hnsw"
    record, item = items[3]
    assert other.search(video_of(item)[1], "video", k=1)[0].item_id == record.item_id


def test_milvus_is_reconciled_with_sqlite_on_open(
    open_milvus_store: OpenStore, tmp_path: Path
) -> None:
    """As after a crash between the SQLite commit and the Milvus write (or a Milvus restored
    from an older backup): rows missing from the collection come back, rows SQLite no longer
    holds go."""
    from pymilvus import MilvusClient

    rng = np.random.default_rng(19)
    store = open_milvus_store()
    items = populate(store, rng, 10)
    collection = store.stats()["modalities"]["video"]["collection"]
    store.close()
    client = MilvusClient(str(tmp_path / "store-milvus" / "milvus.db"))
    lost = store_ids_of(client, collection)[:6]
    client.delete(collection, ids=lost)
    stray = unit(rng, 1)[0]
    client.insert(collection, [{"id": 10**9, "vector": stray, "model_version": VERSION}])
    client.close()

    reopened = open_milvus_store()
    restored = reopened.restored["video"]
    assert (restored.how, restored.replayed) == ("reconciled", 6 + 1)
    assert "6 upserted, 1 deleted" in restored.detail
    assert reopened.count("video") == 40
    for record, item in items:
        assert reopened.search(video_of(item)[0], "video", k=1)[0].item_id == record.item_id
    assert reopened.search(stray, "video", k=1)[0].score < 0.5  # the stray row is gone


def store_ids_of(client: Any, collection: str) -> list[int]:
    rows = client.query(collection, filter="id >= 0", output_fields=["id"])
    return sorted(int(r["id"]) for r in rows)


def test_a_bad_milvus_uri_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"ending in \.db"):
        make_backend("milvus", "/tmp/not-a-milvus-file.txt")
    with pytest.raises(ValueError, match="needs AVID_MILVUS_URI"):
        make_backend("milvus", None)
    with pytest.raises(ValueError, match="must be one of"):
        make_backend(cast(IndexBackendName, "qdrant"))


def test_snapshots_are_taken_every_n_changes(open_faiss_store: OpenStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    store = open_faiss_store(snapshots=SnapshotPolicy(every_changes=3, every_seconds=None))
    snapshot = tmp_path / "store" / "snapshots" / "video.faiss"
    store.add_item(make_item(rng, "a"))
    store.add_item(make_item(rng, "b"))
    assert not snapshot.exists()
    store.add_item(make_item(rng, "c"))
    assert snapshot.exists()
    stats = store.stats()
    assert stats["changes_since_snapshot"] == 0
    assert stats["last_snapshot_at"] is not None


def test_hnsw_is_rebuilt_once_enough_of_it_is_deleted(open_faiss_store: OpenStore) -> None:
    rng = np.random.default_rng(11)
    store = open_faiss_store("hnsw")
    items = populate(store, rng, 50)
    for record, _ in items[:9]:
        store.delete(record.item_id)
    assert store.stats()["modalities"]["video"]["deleted_pending"] == 36  # 36 < 0.2 * 200
    store.delete(items[9][0].item_id)  # 40 ... then 44 > 20 %: compacted
    store.delete(items[10][0].item_id)
    assert store.stats()["modalities"]["video"]["deleted_pending"] == 0
    assert store.count("video") == 39 * 4
    for record, item in items[11:]:
        assert store.search(video_of(item)[2], "video", k=1)[0].item_id == record.item_id


# -- model versions, idempotency, input checks --------------------------------------------


def test_embedding_spaces_never_mix(open_store: OpenStore) -> None:
    rng = np.random.default_rng(12)
    v1 = open_store(model_version="v1")
    old = populate(v1, rng, 5, prefix="old")
    other = make_item(rng, "new-model", model_version="v2")
    with pytest.raises(ModelVersionMismatch):
        v1.add_item(other)
    v1.close()

    v2 = open_store(model_version="v2")
    assert v2.count("video") == 0
    assert v2.search(video_of(old[0][1]), "video", k=10) == []
    assert {r.item_id for r in v2.stale_items()} == {r.item_id for r, _ in old}
    assert v2.stats()["stale_items"] == 5
    with pytest.raises(ModelVersionMismatch):
        v2.vector_of(old[0][0].item_id, "video")

    same_bytes = v2.add_item(replace(old[0][1], model_version="v2"))  # new space: new item
    assert same_bytes.item_id != old[0][0].item_id
    new_video = unit(rng, 2)
    with pytest.raises(ItemExists):  # old[0]'s content already lives under v2
        v2.replace_item(old[0][0].item_id, model_version="v2", video=windows(new_video))
    with pytest.raises(ModelVersionMismatch):
        v2.replace_item(old[1][0].item_id, model_version="v3", video=windows(new_video))

    reembedded = v2.replace_item(old[1][0].item_id, model_version="v2", video=windows(new_video))
    assert (reembedded.model_version, reembedded.n_video_windows) == ("v2", 2)
    assert not reembedded.has_audio
    hits = v2.search(new_video[1], "video", k=10)
    assert hits[0].item_id == old[1][0].item_id
    assert {h.item_id for h in hits} == {same_bytes.item_id, old[1][0].item_id}
    assert len(v2.stale_items()) == 4  # old[0] (refused above) and old[2:]


def test_add_is_idempotent_by_content_and_model_version(open_store: OpenStore) -> None:
    rng = np.random.default_rng(13)
    store = open_store()
    item = make_item(rng, "same-bytes")
    first = store.add_item(item)
    assert store.add_item(item) == first  # a redelivered task
    # The same content under another id is refused, naming the stored item (issue 9).
    with pytest.raises(DuplicateContent, match=repr(first.item_id)):
        store.add_item(replace(item, item_id="another-id"))
    assert store.add_items([item, item]) == [first, first]
    assert store.count("video") == 4
    assert store.list_items()[1] == 1

    fixed = store.add_item(make_item(rng, "h2", item_id="fixed"))
    assert fixed.item_id == "fixed"
    assert store.add_item(make_item(rng, "h2", item_id="fixed")) == fixed
    with pytest.raises(ItemExists):
        store.add_item(make_item(rng, "h3", item_id="fixed"))
    with pytest.raises(ItemExists):  # a batch is all or nothing
        store.add_items([make_item(rng, "h4"), make_item(rng, "h5", item_id="fixed")])
    assert store.list_items()[1] == 2
    assert store.count("video") == 8


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda v: v[:, :127], BadVector),
        (lambda v: np.where(np.arange(128) == 5, np.nan, v), BadVector),
        (lambda v: np.where(np.arange(128) == 5, np.inf, v), BadVector),
        (lambda v: v * np.array([[0.0], [1.0], [1.0], [1.0]]), BadVector),
        (lambda v: v.astype(np.complex64), BadVector),
    ],
    ids=["dim", "nan", "inf", "zero", "complex"],
)
def test_bad_vectors_are_refused(open_store: OpenStore, change: Any, error: type) -> None:
    rng = np.random.default_rng(14)
    store = open_store()
    item = make_item(rng, "bad")
    assert item.video is not None
    bad = replace(item, video=replace(item.video, vectors=change(item.video.vectors)))
    with pytest.raises(error):
        store.add_item(bad)
    assert store.list_items()[1] == 0
    assert store.count("video") == 0


def test_bad_items_and_queries_are_refused(open_store: OpenStore) -> None:
    rng = np.random.default_rng(15)
    store = open_store()
    audio_with_video = make_item(rng, "x", kind="audio", video=unit(rng, 2), audio=unit(rng, 2))
    backwards = make_item(rng, "y")
    assert backwards.video is not None
    backwards = replace(backwards, video=replace(backwards.video, ends=backwards.video.starts - 1))
    for bad in (
        audio_with_video,
        replace(make_item(rng, "z"), video=None),
        backwards,
        replace(make_item(rng, "w"), metadata={"x": object()}),
        replace(make_item(rng, "v"), content_hash=""),
    ):
        with pytest.raises(BadItem):
            store.add_item(bad)
    with pytest.raises(BadVector):
        store.search(np.ones(127), "video")
    with pytest.raises(BadVector):
        store.search(np.zeros(128), "video")
    assert issubclass(BadItem, IndexStoreError)
    assert issubclass(BadVector, IndexStoreError)


def test_vector_of_an_item_or_of_a_moment(open_store: OpenStore) -> None:
    rng = np.random.default_rng(16)
    store = open_store()
    record, item = populate(store, rng, 1)[0]
    video = video_of(item)
    mean = video.mean(axis=0)
    np.testing.assert_allclose(
        store.vector_of(record.item_id, "video"), mean / np.linalg.norm(mean), atol=1e-5
    )
    np.testing.assert_allclose(
        store.vector_of(record.item_id, "video", at=3.0), video[1], atol=1e-6
    )
    assert store.vectors_of(record.item_id, "audio").vectors.shape == (4, 128)
    with pytest.raises(WindowNotFound):
        store.vector_of(record.item_id, "video", at=100.0)
    sound = store.add_item(make_item(rng, "sound-only", kind="audio"))
    with pytest.raises(WindowNotFound):
        store.vector_of(sound.item_id, "video")
    with pytest.raises(ItemNotFound):
        store.vector_of("nope", "video")


def test_list_items_pages_and_filters_by_kind(open_store: OpenStore) -> None:
    rng = np.random.default_rng(17)
    store = open_store()
    videos = [make_item(rng, f"v{i}") for i in range(5)]
    sounds = [make_item(rng, f"a{i}", kind="audio") for i in range(3)]
    records = store.add_items(videos + sounds)
    page, total = store.list_items(offset=3, limit=3)
    assert total == 8
    assert [r.item_id for r in page] == [r.item_id for r in records[3:6]]
    audio_page, audio_total = store.list_items(kind="audio")
    assert audio_total == 3
    assert all(r.kind == "audio" and not r.has_video for r in audio_page)
    assert store.get(records[0].item_id) == records[0]


# -- approximate indexes: recall against exact search ----------------------------------


def test_hnsw_and_ivf_recall_at_10_against_flat(open_store: OpenStore) -> None:
    rng = np.random.default_rng(18)
    from tests.services.index_store_helpers import clustered

    data = clustered(rng, 2100)
    base, queries = data[:2000], data[2000:]
    items = [
        NewItem(
            kind="video",
            model_version=VERSION,
            content_hash=f"c{i}",
            duration=1.0,
            video=WindowVectors.from_lists(v[None, :], [0.0], [1.0]),
            item_id=f"c{i}",
        )
        for i, v in enumerate(base)
    ]
    ivf = IVFParams(nlist=32, nprobe=6, train_size=0)
    stores = {t: open_store(t, name=t, ivf=ivf) for t in INDEX_TYPES}
    for store in stores.values():
        store.add_items(items)
    assert stores["ivf"].stats()["modalities"]["video"]["mode"] == "ivf"
    exact = [{h.item_id for h in stores["flat"].search(q, "video", 10)} for q in queries]
    for index_type in ("hnsw", "ivf"):
        found = [{h.item_id for h in stores[index_type].search(q, "video", 10)} for q in queries]
        recall = np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)])
        assert recall >= 0.9, (index_type, recall)


def test_a_second_store_on_the_same_directory_is_refused(open_store: OpenStore) -> None:
    from services.index import StoreLocked

    store = open_store()
    with pytest.raises(StoreLocked):
        open_store()
    store.close()
    open_store()  # released on close


def test_a_file_of_before_file_names_opens_with_them_empty(tmp_path: Path) -> None:
    """An items.sqlite3 written before items kept file name and size: the columns are added
    on open (NULL for the old rows); new items keep theirs; metadata can be updated."""
    rng = np.random.default_rng(5)
    with IndexStore(tmp_path, model_version=VERSION) as store:
        old = store.add_item(make_item(rng, "old"))
    conn = sqlite3.connect(tmp_path / "items.sqlite3")
    conn.execute("ALTER TABLE items DROP COLUMN file_name")
    conn.execute("ALTER TABLE items DROP COLUMN size_bytes")
    conn.commit()
    conn.close()
    with IndexStore(tmp_path, model_version=VERSION) as store:
        reread = store.get(old.item_id)
        assert reread is not None
        assert (reread.file_name, reread.size_bytes) == (None, None)
        new = store.add_item(replace(make_item(rng, "new"), file_name="a.mp4", size_bytes=123))
        assert (new.file_name, new.size_bytes) == ("a.mp4", 123)
        updated = store.update_metadata(new.item_id, lambda m: {**m, "tag": 1})
        assert updated.metadata == {"name": "new", "tag": 1}
        with pytest.raises(ItemNotFound):
            store.update_metadata("nope", dict)
        with pytest.raises(BadItem):
            store.update_metadata(new.item_id, lambda m: [1])  # type: ignore[arg-type,return-value]
    with IndexStore(tmp_path, model_version=VERSION) as store:
        again = store.get(new.item_id)
        assert again is not None
        assert (again.file_name, again.size_bytes, again.metadata["tag"]) == ("a.mp4", 123, 1)


def test_faiss_and_milvus_give_identical_answers_on_an_exact_index(tmp_path: Path) -> None:
    """The same items, the same queries (single and multi-window, with deletes and an
    excluded item): the same item ids in the same order, the same windows and scores."""
    rng = np.random.default_rng(20)
    items = [make_item(rng, f"same-{i}", item_id=f"id-{i}") for i in range(60)]
    queries = [unit(rng, 1)[0] for _ in range(8)]
    queries += [near(video_of(items[i])[:2], rng, 0.2) for i in (3, 17, 42)]
    answers = {}
    for name in INDEX_BACKENDS:
        opener, opened = store_opener(tmp_path / name, name)
        store = opener("flat")
        records = store.add_items(items)
        store.delete(records[5].item_id)
        store.delete(records[17].item_id)
        answers[name] = [
            [(h.item_id, h.window, h.query_window, round(h.score, 5)) for h in hits]
            for q in queries
            for hits in (
                store.search(q, "video", k=10),
                store.search(q, "audio", k=7, exclude_item=records[3].item_id),
            )
        ]
        for s in opened:
            s.close()
    assert answers["faiss"] == answers["milvus"]
    assert all(len(a) in (7, 10) for a in answers["faiss"])


def test_settings_choose_the_backend_and_refuse_a_bad_one(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from services.index.milvus_index import MilvusBackend
    from services.settings import Settings

    default = Settings(data_dir=tmp_path).index_backend_of()
    assert default.name == "faiss"
    milvus = Settings(data_dir=tmp_path, index_backend="milvus").index_backend_of()
    assert isinstance(milvus, MilvusBackend)
    assert milvus.uri == str(tmp_path / "index" / "milvus.db")
    with pytest.raises(ValidationError, match=r"ending in \.db"):
        Settings(milvus_uri="/tmp/x.sqlite")
    with pytest.raises(ValidationError):
        Settings(index_backend=cast(Any, "qdrant"))


def test_range_filters_hold_the_same_on_faiss_and_milvus(
    tmp_path: Path, backend_name: IndexBackendName
) -> None:
    """gt/gte/lt/lte on a number field, judged on the items' metadata: the same items come
    back whichever engine holds the vectors, each the nearest k of those that pass."""
    rng = np.random.default_rng(21)
    items = [make_item(rng, f"r-{i}", item_id=f"r-{i}", metadata={"n": i}) for i in range(40)]
    items.append(make_item(rng, "r-text", item_id="r-text", metadata={"n": "5"}))
    opener, opened = store_opener(tmp_path, backend_name)
    store = opener("flat")
    store.add_items(items)
    query = unit(rng, 1)[0]
    everything = store.search(query, "video", k=len(items))
    try:
        cases: list[tuple[tuple[tuple[RangeOp, float], ...], set[int]]] = [
            ((("gte", 10), ("lt", 20)), set(range(10, 20))),
            ((("gt", 35),), set(range(36, 40))),
            ((("lte", 2.5),), {0, 1, 2}),
        ]
        for bounds, wanted in cases:
            flt = ItemFilter(conditions=(FieldCondition(("n",), bounds=bounds),))
            hits = store.search(query, "video", k=3, item_filter=flt)
            expected = [h.item_id for h in everything if h.item_id in {f"r-{n}" for n in wanted}]
            assert [h.item_id for h in hits] == expected[:3]
    finally:
        for s in opened:
            s.close()
