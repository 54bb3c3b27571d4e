"""The Milvus backend beyond the store suite that both backends pass (test_index_store).

First, several writers on one collection, as replicas of the service that
share one PostgreSQL database and one Milvus run: what one writes, the other finds at once;
a replica that opens while another writes leaves the other's rows alone; two replicas that
make the collections at the same first start both end up on one collection. Then a store on
Milvus Lite reopened by a new process (the file's collections come back released), and the
index's build settings reaching Milvus Lite.

Milvus Lite lets one process hold its file (milvus-lite ``flock``s it; a second process gets
"Open local milvus failed"), so the replicas here are two stores, or two indexes, each with
its own ``MilvusClient``, in this one process, on one Lite file: the clients share its one
embedded server as two processes would share a Milvus server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.index import IndexStore
from services.index.backend_choice import make_backend
from services.index.index_persistence import SnapshotIdentity
from services.index.index_settings import HNSWParams, IndexSpec, IVFParams
from services.index.item_database import open_item_database
from services.index.milvus_index import MilvusBackend, MilvusIndex
from tests.services.index_store_helpers import DIM, VERSION, make_item, near, unit

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = IndexSpec("flat", DIM, HNSWParams(), IVFParams())


def test_a_milvus_index_finds_what_another_replica_wrote(tmp_path: Path) -> None:
    """Two indexes on one collection, each through its own client: the one that wrote
    nothing finds (and counts) every row the other wrote after both were opened."""
    uri = str(tmp_path / "milvus.db")
    db = open_item_database(tmp_path, DIM, None)
    identity = SnapshotIdentity(db.store_id, VERSION, "video", SPEC)
    writer_backend, reader_backend = MilvusBackend(uri), MilvusBackend(uri)
    try:
        writer, _, _ = writer_backend.reconciled(db, identity)
        reader, _, _ = reader_backend.reconciled(db, identity)
        assert reader.client is not writer.client
        rng = np.random.default_rng(30)
        vectors = unit(rng, 40)
        writer.add(np.arange(1, 41, dtype=np.int64), vectors)

        assert reader.live_count == 40
        scores, ids = reader.search(vectors[[7, 23]], 10)
        assert ids.shape == (2, 10)
        assert ids[:, 0].tolist() == [8, 24]
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)

        reader.remove(np.array([8], dtype=np.int64))  # and the other way round
        assert writer.live_count == 39
        assert writer.search(vectors[[7]], 1)[1][0, 0] != 8
    finally:
        writer_backend.close()
        reader_backend.close()
        db.close()


@pytest.mark.postgres
def test_a_milvus_store_finds_what_another_replica_stored(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two stores (each its own data dir and Milvus client) on one PostgreSQL database and
    one Milvus Lite file, both opened on nothing: items stored through one are searched,
    counted and deleted through the other."""
    uri = str(tmp_path / "milvus.db")

    def open_replica(name: str) -> IndexStore:
        backend = make_backend("milvus", uri)
        return IndexStore(
            tmp_path / name, model_version=VERSION, backend=backend, database_url=postgres_url
        )

    first, second = open_replica("replica-a"), open_replica("replica-b")
    try:
        rng = np.random.default_rng(31)
        items = [make_item(rng, f"r-{i}", item_id=f"r-{i}") for i in range(12)]
        first.add_items(items)
        assert second.count("video") == first.count("video") == 48
        for item in items[:4]:
            assert item.video is not None
            query = near(item.video.vectors[1], rng)
            assert second.search(query, "video", k=3)[0].item_id == item.item_id
        second.delete("r-2")
        assert items[2].video is not None
        hits = first.search(items[2].video.vectors[0], "video", k=3)
        assert "r-2" not in {h.item_id for h in hits}
        assert first.count("video") == 44
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_reopening_on_a_shared_database_leaves_newer_rows_alone(
    tmp_path: Path, postgres_url: str
) -> None:
    """Rows above the highest window id the opening replica read from the database are
    another replica's newer writes, not strays: reconcile keeps them (on a store's own
    SQLite file they are strays and go, see test_index_store)."""
    uri = str(tmp_path / "milvus.db")

    def open_store() -> IndexStore:
        return IndexStore(
            tmp_path / "store",
            model_version=VERSION,
            backend=make_backend("milvus", uri),
            database_url=postgres_url,
        )

    rng = np.random.default_rng(32)
    store = open_store()
    store.add_items([make_item(rng, f"n-{i}") for i in range(5)])
    collection = store.stats()["modalities"]["video"]["collection"]
    store.close()
    newer = 10**9  # as if written after this replica read the database
    other = MilvusBackend(uri)
    other.client.insert(
        collection, [{"id": newer, "vector": unit(rng, 1)[0], "model_version": VERSION}]
    )
    try:
        reopened = open_store()
        assert reopened.restored["video"].replayed == 0
        ids = other.client.query(collection, filter=f"id == {newer}", output_fields=["id"])
        assert [r["id"] for r in ids] == [newer]
        reopened.close()
    finally:
        other.close()


def test_two_replicas_making_the_collection_at_once_share_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one that finds the collection already made (it checked before the other made it)
    uses it, rows and all; one that finds it made but not yet written down keeps it too (the
    settings are written before the collection is made), rather than dropping it."""
    uri = str(tmp_path / "milvus.db")
    db = open_item_database(tmp_path, DIM, None)
    identity = SnapshotIdentity(db.store_id, VERSION, "video", SPEC)
    first, late, early = MilvusBackend(uri), MilvusBackend(uri), MilvusBackend(uri)
    try:
        made = first.client.create_collection

        def make_then_let_another_look(*args: Any, **kwargs: Any) -> None:
            made(*args, **kwargs)
            dropped: list[str] = []
            monkeypatch.setattr(early.client, "drop_collection", dropped.append)
            early.reconciled(db, identity)  # between the making and anything after it
            assert dropped == []

        monkeypatch.setattr(first.client, "create_collection", make_then_let_another_look)
        index, _, _ = first.reconciled(db, identity)
        rng = np.random.default_rng(33)
        vectors = unit(rng, 5)
        index.add(np.arange(1, 6, dtype=np.int64), vectors)

        looked_early = [False, False]  # it looked before `first` made the collection
        real_has = late.client.has_collection

        def has_collection(name: str) -> bool:
            return looked_early.pop() if looked_early else real_has(name)

        monkeypatch.setattr(late.client, "has_collection", has_collection)
        # (not reconciled: these rows are in no item database)
        name = late._collection(db, identity)
        assert name == index.collection
        shared = MilvusIndex(late.client, name, SPEC, VERSION)
        assert shared.live_count == 5
        assert shared.search(vectors[[2]], 1)[1][0, 0] == 3
    finally:
        for backend in (first, late, early):
            backend.close()
        db.close()


def test_two_processes_cannot_share_a_milvus_lite_file(tmp_path: Path) -> None:
    """Why the replica tests above are one process: Milvus Lite's file is one process's."""
    uri = str(tmp_path / "milvus.db")
    holder = MilvusBackend(uri)
    try:
        assert not holder.client.has_collection("none")
        child = _run_child(
            "from services.index.milvus_index import MilvusBackend\n"
            f"MilvusBackend({uri!r}).client\n"
        )
        assert child.returncode != 0
        assert "cannot open Milvus" in child.stderr
    finally:
        holder.close()


def test_a_milvus_lite_store_reopens_in_a_new_process(tmp_path: Path) -> None:
    """A restart: the collections a finished process left in the Lite file are loaded again
    (they come back released, and a search or query on them would fail)."""
    uri = str(tmp_path / "milvus.db")
    child = _run_child(
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from services.index import IndexStore\n"
        "from services.index.backend_choice import make_backend\n"
        "from tests.services.index_store_helpers import VERSION, make_item\n"
        "rng = np.random.default_rng(34)\n"
        f"with IndexStore(Path({str(tmp_path / 'store')!r}), model_version=VERSION,\n"
        f"                backend=make_backend('milvus', {uri!r})) as store:\n"
        "    store.add_items([make_item(rng, f'p-{i}', item_id=f'p-{i}') for i in range(6)])\n"
    )
    assert child.returncode == 0, child.stderr
    rng = np.random.default_rng(34)
    first = make_item(rng, "p-0", item_id="p-0")
    assert first.video is not None
    with IndexStore(
        tmp_path / "store", model_version=VERSION, backend=make_backend("milvus", uri)
    ) as store:
        assert store.restored["video"].replayed == 0
        assert store.count("video") == 24
        assert store.search(first.video.vectors[0], "video", k=1)[0].item_id == "p-0"


def _run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_milvus_lite_builds_ivf_with_the_nlist_asked(tmp_path: Path) -> None:
    """nprobe == nlist scans every list, so the answers are exact, but only if the segment
    index was built with that nlist (pymilvus 3 and Milvus Lite 3.2 disagree on where build
    params go; Lite's default nlist=128 with nprobe=16 misses about a third here)."""
    from bench.search_milvus import built_milvus_index
    from tests.services.index_store_helpers import clustered

    rng = np.random.default_rng(35)
    base, queries = clustered(rng, 2000), clustered(rng, 20)
    spec = IndexSpec("ivf", DIM, HNSWParams(), IVFParams(nlist=16, nprobe=16))
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    with built_milvus_index(spec, base, tmp_path) as (index, _):  # inserted, flushed
        found = np.vstack([index.search(q[None, :], 10)[1] for q in queries])
    assert np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]) == 1.0


def test_a_lite_collection_made_without_its_build_params_is_made_anew(tmp_path: Path) -> None:
    """An HNSW collection recorded before the build params reached Milvus Lite (its
    fingerprint lacks the mark) is rebuilt from the item database on the next open."""
    import json
    import sqlite3

    uri = str(tmp_path / "milvus.db")

    def open_store() -> IndexStore:
        backend = make_backend("milvus", uri)
        return IndexStore(tmp_path / "s", model_version=VERSION, index_type="hnsw", backend=backend)

    rng = np.random.default_rng(36)
    with open_store() as store:
        store.add_items([make_item(rng, f"b-{i}") for i in range(5)])
    conn = sqlite3.connect(tmp_path / "s" / "items.sqlite3")
    ((key, value),) = conn.execute(
        "SELECT key, value FROM store_meta WHERE key LIKE 'milvus_build:%video'"
    ).fetchall()
    old = json.loads(value)
    assert old.pop("lite_params") is True
    conn.execute("UPDATE store_meta SET value = ? WHERE key = ?", (json.dumps(old), key))
    conn.commit()
    conn.close()
    with open_store() as store:
        assert store.restored["video"].replayed == 20  # made anew, filled from SQLite
        assert store.count("video") == 20
    with open_store() as store:
        assert store.restored["video"].replayed == 0  # and kept from then on
