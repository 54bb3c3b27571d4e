"""What a crash or a failed job leaves in the data directory is cleaned when the service
starts, and ``DELETE /items/{id}`` removes the item's kept file unless another item holds it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.job_records import JobRecords
from services.jobs import MAX_ATTEMPTS
from tests.services.conftest import Media, SettingsFactory, service_settings, tiny_checkpoint
from tests.services.test_api import embed, upload


def kept_files(media_dir: Path) -> set[str]:
    return {p.name for p in media_dir.iterdir()}


def test_start_removes_partial_uploads_scratch_files_and_media_of_lost_jobs(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        stored = embed(client, "video", media.videos[0], id="kept")
        item = client.get(f"/items/{stored['id']}").json()
    media_dir, scratch = settings.media_dir, settings.scratch_dir
    kept = media_dir / f"{item['content_hash']}.mp4"
    assert kept.is_file()
    # What a kill -9 leaves: partial uploads, scratch copies, the file of a job that failed
    # (interrupted too often), and the file of a job still queued (which must stay).
    debris = [media_dir / ".upload-1.part", scratch / ".upload-2.part", scratch / "q-1.wav"]
    for path in debris:
        path.write_bytes(b"partial")
    lost = media_dir / f"{'a' * 64}.mp4"
    lost.write_bytes(media.videos[1].read_bytes())
    queued = media_dir / f"{'b' * 64}.mp4"
    queued.write_bytes(media.videos[2].read_bytes())
    records = JobRecords(settings.index_dir / "items.sqlite3")
    payload = {"kind": "video", "sha256": "a" * 64, "client_name": "lost.mp4"}
    records.insert("lost", {**payload, "path": str(lost), "media_created": True})
    for _ in range(MAX_ATTEMPTS):
        records.update("lost", state="running", bump_attempts=True)
    records.insert(
        "queued",
        {
            **payload,
            "sha256": "b" * 64,
            "path": str(queued),
            "client_name": "queued.mp4",
            "media_created": True,
        },
    )
    records.close()

    with TestClient(create_app(make_settings(job_workers=1))) as client:
        assert client.get("/jobs/lost").json()["state"] == "failed"
        assert client.get("/items/kept").status_code == 200
        for path in [*debris, lost]:
            assert not path.exists(), path
        assert kept.is_file()
        # The queued job's file stayed for it: the job ran and stored it.
        deadline = time.monotonic() + 60
        while (job := client.get("/jobs/queued").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["state"] == "done", job
        assert queued.is_file()


def test_delete_removes_the_kept_file_unless_another_item_holds_it(
    make_settings: SettingsFactory,
    media: Media,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        embed(client, "video", media.videos[0], id="old-model")
        embed(client, "audio", media.wav, id="alone")
    shared = kept_files(settings.media_dir)
    assert len(shared) == 2
    other = tiny_checkpoint(tmp_path_factory, 1, "avid-tiny-other")
    with TestClient(create_app(service_settings(other, settings.data_dir))) as client:
        # The same file stored again by another model: a second item on the same file.
        new = embed(client, "video", media.videos[0])
        assert new["id"] != "old-model"
        assert client.delete("/items/alone").status_code == 204
        assert len(kept_files(settings.media_dir)) == 1  # the wav went with its item
        assert client.delete(f"/items/{new['id']}").status_code == 204
        assert len(kept_files(settings.media_dir)) == 1  # "old-model" still holds the mp4
        assert client.delete("/items/old-model").status_code == 204
        assert kept_files(settings.media_dir) == set()
        assert client.delete("/items/old-model").status_code == 404
        # Stored again after the delete: the file comes back with the item.
        response = client.post("/embed/video", files=upload(media.videos[0]), data={"id": "x"})
        assert response.status_code == 200, response.text
        assert len(kept_files(settings.media_dir)) == 1
