"""``avid reindex``: items embedded through the real app with model A are re-embedded with
model B (another random tiny model), then served by an app started with B; with the items in
SQLite and in PostgreSQL (``database_url``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from avid_model.cli import main
from services.api.app import create_app
from services.index import IndexStore
from services.reindex.run import reindex
from services.reindex.staging import STAGING_FILE
from services.settings import Settings, get_settings
from tests.services.conftest import Media, service_settings, tiny_checkpoint
from tests.services.test_api import assert_error, embed, results, upload


@pytest.fixture(scope="module")
def checkpoint_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory, 1, "avid-tiny-b")


@pytest.fixture(autouse=True)
def cpu_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``avid reindex`` reads the AVID_* environment, as a service would."""
    monkeypatch.setenv("AVID_DEVICE", "cpu")
    monkeypatch.setenv("AVID_BATCH_MAX_WAIT_MS", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def items(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/items", params={"limit": 100})
    assert response.status_code == 200
    return {item["id"]: item for item in response.json()["items"]}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["reindex", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_reindex_moves_every_item_to_the_new_model(
    checkpoint_dir: Path,
    checkpoint_b: Path,
    media: Media,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str | None,
) -> None:
    data_dir = tmp_path / "data"
    database = {"database_url": database_url}
    if database_url is not None:  # for the command, which reads the environment
        monkeypatch.setenv("AVID_DATABASE_URL", database_url)
        get_settings.cache_clear()
    with TestClient(create_app(service_settings(checkpoint_dir, data_dir, **database))) as client:
        video_a = embed(client, "video", media.videos[0], metadata={"n": 0})
        embed(client, "video", media.videos[1], id="clip-1", metadata={"n": 1})
        embed(client, "video", media.silent_video)
        embed(client, "audio", media.wav, metadata={"n": "wav"})
        embed(client, "audio", media.videos[2])  # an audio item cut from a video file
        before = items(client)
    version_a = video_a["model_version"]
    settings_b = service_settings(checkpoint_b, data_dir, **database)

    # Before reindexing, a service with B lists A's items but never searches their vectors.
    with TestClient(create_app(settings_b)) as client:
        assert {i["model_version"] for i in items(client).values()} == {version_a}
        stale = client.get("/search", params={"video": video_a["id"]})
        assert_error(stale, 409, "model_version_mismatch", "avid reindex")
        by_file = client.post("/search", files=upload(media.wav), data={"target": "video"})
        assert results(by_file) == []
        version_b = embed(client, "audio", media.short_video, store=False)["model_version"]
    assert version_b != version_a

    code, out, _ = run_cli(capsys, "--checkpoint", checkpoint_b, "--data-dir", data_dir)
    assert code == 0, out
    assert f"model {version_b}" in out
    assert "5 to re-embed (5 of " in out
    assert "swapped: 5 items" in out
    assert not (data_dir / "index" / STAGING_FILE).exists()

    with TestClient(create_app(settings_b)) as client:
        after = items(client)
        assert after.keys() == before.keys()
        for item_id, item in after.items():
            old = before[item_id]
            assert item["model_version"] == version_b
            for same in ("kind", "metadata", "content_hash", "n_video_windows", "n_audio_windows"):
                assert item[same] == old[same], (item_id, same)
        videos = {i for i, item in after.items() if item["kind"] == "video"}
        wav = next(i for i, item in after.items() if item["metadata"] == {"n": "wav"})
        by_sound = results(client.get("/search", params={"audio": wav, "k": 10}))
        assert {h["id"] for h in by_sound} == videos
        by_video = results(client.get("/search", params={"video": video_a["id"], "k": 10}))
        assert len(by_video) == 3  # the other items with an audio track
        posted = results(client.post("/search", files=upload(media.wav), data={"target": "video"}))
        assert [h["id"] for h in posted] == [h["id"] for h in by_sound]

    # Re-running has nothing left to do.
    code, out, _ = run_cli(capsys, "--checkpoint", checkpoint_b, "--data-dir", data_dir)
    assert code == 0
    assert "5 already of this model, 0 to re-embed" in out


def test_missing_media_is_reported_and_an_interrupted_run_resumes(
    checkpoint_dir: Path,
    checkpoint_b: Path,
    media: Media,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings_a = service_settings(checkpoint_dir, tmp_path / "data")
    with TestClient(create_app(settings_a)) as client:
        first = embed(client, "video", media.videos[0])
        kept, version_a = first["id"], first["model_version"]
        lost = embed(client, "audio", media.wav)["id"]
        lost_hash = client.get(f"/items/{lost}").json()["content_hash"]
    lost_file = settings_a.media_dir / f"{lost_hash}.wav"
    lost_file.rename(tmp_path / "aside.wav")
    settings_b = service_settings(checkpoint_b, tmp_path / "data")

    dry = reindex(settings_b, dry_run=True)
    assert (dry.embedded, dry.swapped) == (1, 0)
    assert [s.item_id for s in dry.missing_media] == [lost]

    # Stopped after embedding, before the swap: the index is as it was, the work is staged.
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("services.reindex.run._swap", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reindex(settings_b)
    monkeypatch.undo()
    with IndexStore(settings_a.index_dir, model_version=version_a) as store:
        assert store.stale_items() == []  # nothing swapped yet
    assert (settings_a.index_dir / STAGING_FILE).exists()

    code, out, _ = run_cli(capsys, "--checkpoint", checkpoint_b, "--data-dir", tmp_path / "data")
    assert code == 1
    assert "embedded: 0 files now, 1 staged by an earlier run" in out
    assert "swapped: 1 item " in out
    assert "missing media: 1 item keep their old vectors" in out
    assert f"{lost}: no kept media file {lost_hash}" in out

    with TestClient(create_app(settings_b)) as client:
        listed = items(client)
        assert listed.keys() == {kept, lost}  # reported, not lost
        assert listed[lost]["model_version"] != listed[kept]["model_version"]

    shutil.move(tmp_path / "aside.wav", lost_file)
    summary = reindex(settings_b)
    assert summary.complete
    assert (summary.embedded, summary.swapped, summary.already_current) == (1, 1, 1)


@pytest.fixture
def stored_data_dir(checkpoint_dir: Path, media: Media, tmp_path: Path) -> Settings:
    settings = service_settings(checkpoint_dir, tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        embed(client, "audio", media.wav)
    return settings


def test_cli_errors_are_clean(
    stored_data_dir: Settings,
    checkpoint_b: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = stored_data_dir.data_dir
    with TestClient(create_app(stored_data_dir)):  # a running service holds the directory
        code, _, err = run_cli(capsys, "--checkpoint", checkpoint_b, "--data-dir", data_dir)
    assert code == 2
    assert "avid reindex: error:" in err
    assert "is in use" in err

    cases: list[tuple[list[str | Path], str]] = [
        (["--checkpoint", tmp_path / "nope", "--data-dir", data_dir], "no model checkpoint"),
        (["--checkpoint", tmp_path, "--data-dir", data_dir], "no checkpoint at"),
        (["--checkpoint", checkpoint_b, "--data-dir", tmp_path / "empty"], "no index in"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert message in err
        assert "Traceback" not in err

    for bad in (["--jobs", "0"], ["--batch", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(capsys, "--checkpoint", checkpoint_b, *bad)
        assert exit_info.value.code == 2
        assert "positive integer" in capsys.readouterr().err
