"""``avid migrate-index --to milvus``: an embedded data directory (FAISS + SQLite) copied into
real Milvus Lite (a temporary file) and, with ``AVID_DATABASE_URL``, the real PostgreSQL
server (a database of the test's own); a store opened on the scale-out backends afterwards
lists the same items and gives the same answers, with nothing left to reconcile. A run cut
off half-way resumes; bad input is one clear line and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avid_model.cli import main
from services.index import IndexStore, ItemKind, ItemRecord
from services.migrate import copy_items as copy_module
from services.migrate.run import MigrateError, migrate_index
from services.settings import Settings, get_settings
from tests.services.index_store_helpers import VERSION, clustered, make_item

OLD_VERSION = "avid-test-v0"
N_ITEMS = 12


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command reads the AVID_* environment: none of it from the machine's."""
    for name in ("AVID_DATA_DIR", "AVID_MILVUS_URI", "AVID_DATABASE_URL", "AVID_INDEX_TYPE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def embedded_data_dir(data_dir: Path) -> None:
    """``N_ITEMS`` items of ``VERSION`` (video + audio, and audio only) and one stale item
    of ``OLD_VERSION`` in the embedded store of ``data_dir``, FAISS snapshotted."""
    rng = np.random.default_rng(7)
    index_dir = Settings(data_dir=data_dir).index_dir
    with IndexStore(index_dir, model_version=OLD_VERSION) as old:
        old.add_item(make_item(rng, "old-0", model_version=OLD_VERSION, item_id="old-0"))
    video, audio = clustered(rng, 3 * N_ITEMS, n_centres=5), clustered(rng, 3 * N_ITEMS)
    with IndexStore(index_dir, model_version=VERSION) as store:
        for i in range(N_ITEMS):
            kind: ItemKind = "audio" if i % 4 == 3 else "video"
            store.add_item(
                make_item(
                    rng,
                    f"content-{i}",
                    kind=kind,
                    item_id=f"clip-{i}",
                    video=video[3 * i : 3 * i + 3] if kind == "video" else None,
                    audio=audio[3 * i : 3 * i + 3],
                    metadata={"n": i, "split": "test" if i % 2 else "train"},
                )
            )


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["migrate-index", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def listing(store: IndexStore) -> list[tuple[Any, ...]]:
    items, _ = store.list_items(limit=1000)
    return [_fields(item) for item in items]


def _fields(item: ItemRecord) -> tuple[Any, ...]:
    return (
        item.item_id,
        item.kind,
        item.model_version,
        item.content_hash,
        item.metadata,
        item.created_at,
        item.n_video_windows,
        item.n_audio_windows,
    )


def answers(store: IndexStore) -> list[tuple[list[str], list[float]]]:
    """Every stored item's audio -> video and video -> video searches: (ids, scores)."""
    out = []
    for i in range(N_ITEMS):
        for query in ("audio", "video"):
            if query == "video" and i % 4 == 3:
                continue
            hits = store.search_by_item(f"clip-{i}", query_modality=query, target="video", k=5)
            out.append(([h.item_id for h in hits], [h.score for h in hits]))
    return out


def assert_same_answers(
    found: list[tuple[list[str], list[float]]], expected: list[tuple[list[str], list[float]]]
) -> None:
    assert [ids for ids, _ in found] == [ids for ids, _ in expected]
    for (_, a), (_, b) in zip(found, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_migrates_vectors_and_items_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database_url: str | None
) -> None:
    data_dir, milvus_db = tmp_path / "data", tmp_path / "milvus" / "avid.db"
    embedded_data_dir(data_dir)
    with IndexStore(Settings(data_dir=data_dir).index_dir, model_version=VERSION) as embedded:
        before, expected = listing(embedded), answers(embedded)

    argv: list[str | Path] = ["--to", "milvus", "--data-dir", data_dir, "--milvus-uri", milvus_db]
    if database_url is not None:
        argv += ["--database-url", database_url]
        # The target database already holds an item of its own (an audio one: it never
        # shows up in the video searches compared below).
        with IndexStore(
            tmp_path / "elsewhere", model_version=VERSION, database_url=database_url
        ) as elsewhere:
            elsewhere.add_item(
                make_item(np.random.default_rng(3), "x", kind="audio", item_id="extra")
            )
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    assert "verified in" in out
    assert "MISMATCH" not in out
    n_video = 3 * (N_ITEMS - N_ITEMS // 4)  # every fourth item has no video
    if database_url is not None:
        assert f"items: {N_ITEMS + 1} in the data dir; {N_ITEMS + 1} copied" in out
        assert f"ok items: {N_ITEMS + 1} in the data dir = {N_ITEMS + 1} in the target" in out
        assert f"ok video vectors of {VERSION}: {n_video} in the target database = " in out
    else:
        assert f"ok video vectors of {VERSION}: {n_video} in the data dir = {n_video} in" in out
    assert f"searches: {N_ITEMS + 1} sampled stored vectors, {N_ITEMS + 1} with the same" in out

    # A store on the scale-out backends (its own data dir when the items are in PostgreSQL)
    # finds everything in place: nothing to write into Milvus on open.
    serving_dir = data_dir if database_url is None else tmp_path / "replica"
    settings = Settings(
        data_dir=serving_dir,
        index_backend="milvus",
        milvus_uri=str(milvus_db),
        database_url=database_url,
    )
    with IndexStore(
        settings.index_dir,
        model_version=VERSION,
        backend=settings.index_backend_of(),
        database_url=database_url,
    ) as scaled:
        assert {m: (r.how, r.replayed) for m, r in scaled.restored.items()} == {
            "video": ("reconciled", 0),
            "audio": ("reconciled", 0),
        }
        assert [item for item in listing(scaled) if item[0] != "extra"] == before
        assert_same_answers(answers(scaled), expected)
        assert scaled.stats()["stale_items"] == 1

    # The data dir is left as it was: the embedded default still serves it.
    with IndexStore(Settings(data_dir=data_dir).index_dir, model_version=VERSION) as embedded:
        assert listing(embedded) == before
        assert {r.how for r in embedded.restored.values()} == {"snapshot"}

    # Again: nothing left to do.
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    if database_url is not None:
        assert f"0 copied, {N_ITEMS + 1} already there" in out
    assert f"Milvus video vectors of {VERSION}: 0 written, 0 removed" in out


@pytest.mark.postgres
def test_an_interrupted_migration_resumes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
) -> None:
    data_dir, milvus_db = tmp_path / "data", tmp_path / "milvus.db"
    embedded_data_dir(data_dir)
    settings = Settings(data_dir=data_dir, milvus_uri=str(milvus_db), database_url=postgres_url)

    # Cut off after the first page of 5 items was committed.
    real_copy_page = copy_module._copy_page
    pages: list[int] = []

    def copy_then_fail(*args: Any) -> None:
        if pages:
            raise RuntimeError("power cut")
        pages.append(1)
        real_copy_page(*args)

    monkeypatch.setattr(copy_module, "_copy_page", copy_then_fail)
    with pytest.raises(RuntimeError, match="power cut"):
        migrate_index(settings, page_size=5)
    monkeypatch.setattr(copy_module, "_copy_page", real_copy_page)

    argv: list[str | Path] = ["--to", "milvus", "--data-dir", data_dir, "--milvus-uri", milvus_db]
    argv += ["--database-url", postgres_url, "--batch", "5"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    assert f"items: {N_ITEMS + 1} in the data dir; {N_ITEMS + 1 - 5} copied, 5 already" in out
    assert "verified in" in out

    # Vectors lost from Milvus (a run stopped while writing them) are written again.
    from pymilvus import MilvusClient

    client = MilvusClient(str(milvus_db))
    (collection,) = [c for c in client.list_collections() if c.endswith("_video")]
    client.delete(collection, filter=f'model_version == "{VERSION}"')
    client.close()
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    n_video = 3 * (N_ITEMS - N_ITEMS // 4)  # every fourth item has no video
    assert f"Milvus video vectors of {VERSION}: {n_video} written, 0 removed" in out
    assert f"0 copied, {N_ITEMS + 1} already there" in out
    assert "verified in" in out

    # An id the target holds with other content: left out, listed, exit status 1.
    other = Settings(data_dir=tmp_path / "other", database_url=postgres_url)
    with IndexStore(other.index_dir, model_version=VERSION, database_url=postgres_url) as store:
        store.delete("clip-0")
        store.add_item(make_item(np.random.default_rng(1), "else", item_id="clip-0"))
    code, out, _ = run_cli(capsys, *argv)
    assert code == 1, out
    assert "conflict: clip-0: the target holds other content under this id" in out
    assert "NOT verified" in out


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, milvus_db = tmp_path / "data", tmp_path / "milvus.db"
    embedded_data_dir(data_dir)
    garbage = tmp_path / "garbage"
    (garbage / "index").mkdir(parents=True)
    (garbage / "index" / "items.sqlite3").write_bytes(b"not a database at all" * 100)
    to = ["--to", "milvus"]
    bad_url = "postgresql://postgres@127.0.0.1:9/avid"
    cases: list[tuple[list[str | Path], str]] = [
        ([*to, "--data-dir", tmp_path / "nope"], "no embedded index in"),
        ([*to, "--data-dir", garbage], "is not an AVID item database"),
        (
            [*to, "--data-dir", data_dir, "--milvus-uri", "http://127.0.0.1:9"],
            "cannot use Milvus at 'http://127.0.0.1:9'",
        ),
        ([*to, "--data-dir", data_dir, "--milvus-uri", tmp_path / "x.txt"], "AVID_MILVUS_URI"),
        (
            [*to, "--data-dir", data_dir, "--milvus-uri", milvus_db, "--database-url", bad_url],
            "cannot use the database postgresql://postgres@127.0.0.1:9/avid",
        ),
        ([*to, "--data-dir", data_dir, "--database-url", "mysql://h/db"], "AVID_DATABASE_URL"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.startswith("avid migrate-index: error:"), err
        assert message in err, err
        assert "Traceback" not in err
    with IndexStore(Settings(data_dir=data_dir).index_dir, model_version=VERSION):
        code, _, err = run_cli(capsys, *to, "--data-dir", data_dir, "--milvus-uri", milvus_db)
    assert code == 2
    assert "is in use (a running `avid serve`?)" in err
    assert not milvus_db.exists()  # nothing was written anywhere

    for bad in (["--to", "faiss"], ["--data-dir", data_dir], [*to, "--sample", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(capsys, *bad)
        assert exit_info.value.code == 2

    with pytest.raises(MigrateError, match="--to must be one of"):
        migrate_index(Settings(data_dir=data_dir), to="qdrant")
