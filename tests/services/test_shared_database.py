"""Several IndexStores in several processes on one PostgreSQL database (``AVID_DATABASE_URL``),
each on its own data directory, as replicas of the service run: they see each other's items,
and the dedup rule (one item per content and model version; content stored under one id is
not stored again under another) holds across them while they write at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.index import IndexStore
from tests.services.index_store_helpers import VERSION
from tests.services.shared_database_writer import N_OWN, N_SHARED, item_of

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = ("replica-a", "replica-b")

pytestmark = pytest.mark.postgres


class Writer:
    """A ``shared_database_writer`` child process."""

    def __init__(self, data_dir: Path, url: str, name: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.services.shared_database_writer",
                str(data_dir),
                url,
                name,
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            pytest.fail(f"writer exited early ({self.process.wait()}): {stderr}")
        return line.strip() if line.strip() == "ready" else json.loads(line)

    def quit(self) -> None:
        self.send("quit")
        assert self.process.wait(timeout=60) == 0


@pytest.fixture
def writers(tmp_path: Path, postgres_url: str) -> Iterator[list[Writer]]:
    started = [Writer(tmp_path / name, postgres_url, name) for name in NAMES]
    try:
        yield started
    finally:
        for writer in started:
            if writer.process.poll() is None:
                writer.process.kill()
                writer.process.wait()


def test_two_processes_share_items_and_the_dedup_rule(
    writers: list[Writer], tmp_path: Path, postgres_url: str
) -> None:
    assert [w.read() for w in writers] == ["ready", "ready"]
    for writer in writers:  # both write at once, the shared items in opposite orders
        writer.send("add")
    a, b = (writer.read() for writer in writers)

    # The same content is one item, whichever process stored it first.
    assert len(a["shared"]) == len(b["shared"]) == N_SHARED
    assert a["shared"] == b["shared"]
    # The same content under two explicit ids: one process stored it, the other was told
    # which item holds it.
    clashes = sorted([a["clash"], b["clash"]])
    winner = next(c for c in clashes if not c.startswith("DuplicateContent:"))
    assert winner in ("replica-a-clash", "replica-b-clash")
    assert clashes.count(f"DuplicateContent:{winner}") == 1

    # Each process lists the other's items too.
    for writer in writers:
        writer.send("list")
    listed = [set(writer.read()) for writer in writers]
    everything = set(a["shared"].values()) | set(a["own"]) | set(b["own"]) | {winner}
    assert len(everything) == N_SHARED + 2 * N_OWN + 1
    assert listed[0] == listed[1] == everything
    for writer in writers:
        writer.quit()

    # A replica reopened later indexes what the other wrote meanwhile (replayed from the
    # database after its own snapshot): a search there finds the other's items.
    with IndexStore(tmp_path / NAMES[0], model_version=VERSION, database_url=postgres_url) as store:
        assert store.stats()["items"] == len(everything)
        assert store.count("video") == 2 * len(everything)
        for own_id, i in zip(b["own"], range(N_OWN), strict=True):
            vector = item_of(f"replica-b-own-{i}").video
            assert vector is not None
            assert store.search(vector.vectors[0], "video", k=1)[0].item_id == own_id
