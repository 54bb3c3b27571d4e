"""IndexStore under crashes and concurrency: a real kill -9 of a writing process, and searches
from several threads while another thread writes; on each item database (SQLite, and
PostgreSQL: ``database_url``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from services.index import IndexStore
from services.index.index_settings import IndexType
from tests.services.index_store_helpers import VERSION, make_item, near
from tests.services.index_store_writer import item_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def _acknowledged_ids(
    data_dir: Path, index_type: str, kill_after: int, database_url: str | None
) -> list[str]:
    """Run the writer child, SIGKILL it once ``kill_after`` adds are acknowledged, and
    return every id it acknowledged (printed after ``add_item`` returned)."""
    database = [] if database_url is None else [database_url]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.services.index_store_writer",
            str(data_dir),
            index_type,
            *database,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(acked) < kill_after:
            line = child.stdout.readline()
            if not line:
                stderr = child.stderr.read() if child.stderr else ""
                pytest.fail(f"writer exited early ({child.wait()}): {stderr}")
            acked.append(line.strip())
            assert time.monotonic() < deadline, "writer too slow"
        os.kill(child.pid, signal.SIGKILL)  # mid-write: the child never stops adding
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    acked += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_every_acknowledged_item_survives_kill_9(
    tmp_path: Path, index_type: IndexType, database_url: str | None
) -> None:
    data_dir = tmp_path / "store"
    acked = _acknowledged_ids(data_dir, index_type, kill_after=40, database_url=database_url)
    assert acked[:3] == ["item-0", "item-1", "item-2"]

    reopened = IndexStore(
        data_dir, model_version=VERSION, index_type=index_type, database_url=database_url
    )
    with reopened as store:
        stored, total = store.list_items(0, 10_000)
        stored_ids = [r.item_id for r in stored]
        # Everything acknowledged is there; at most the one add in flight got in beyond it.
        assert set(acked) <= set(stored_ids)
        assert total - len(acked) in (0, 1)
        assert stored_ids == [f"item-{i}" for i in range(total)]
        for record in stored:  # nothing half-written: every item has all of its windows
            expected = item_for(int(record.item_id.split("-")[1]))
            assert expected.video is not None
            assert expected.audio is not None
            np.testing.assert_allclose(
                store.vectors_of(record.item_id, "video").vectors, expected.video.vectors, atol=1e-6
            )
            assert store.vectors_of(record.item_id, "audio").vectors.shape == (3, 128)
            hits = store.search(expected.audio.vectors[1], "audio", k=1)
            assert hits[0].item_id == record.item_id
        assert store.count("video") == store.count("audio") == 3 * total


def test_searches_from_threads_while_a_writer_adds_and_deletes(
    tmp_path: Path, database_url: str | None
) -> None:
    rng = np.random.default_rng(0)
    store = IndexStore(
        tmp_path / "store", model_version=VERSION, index_type="hnsw", database_url=database_url
    )
    base = store.add_items([make_item(rng, f"base-{i}") for i in range(40)])
    probes = [(r.item_id, store.vectors_of(r.item_id, "video").vectors[1]) for r in base]
    stop = threading.Event()
    errors: list[str] = []
    searches = [0]

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        while not stop.is_set():
            item_id, vector = probes[int(r.integers(len(probes)))]
            try:
                hits = store.search(near(vector, r), "video", k=5)
            except Exception as exc:
                errors.append(repr(exc))
                return
            ids = [h.item_id for h in hits]
            if ids[0] != item_id or len(set(ids)) != len(ids):
                errors.append(f"{item_id}: {ids}")
            searches[0] += 1

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    try:
        added = [store.add_item(make_item(rng, f"new-{i}")) for i in range(80)]
        for record in added[::5]:
            store.delete(record.item_id)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert searches[0] > 20
    survivors = [r for i, r in enumerate(added) if i % 5]
    assert store.count("video") == (40 + len(survivors)) * 4
    for record in survivors:
        vector = store.vectors_of(record.item_id, "video").vectors[0]
        assert store.search(vector, "video", k=1)[0].item_id == record.item_id
    store.close()
