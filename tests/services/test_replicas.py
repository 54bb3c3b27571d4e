"""Two ``avid serve`` replicas sharing one PostgreSQL database (``AVID_DATABASE_URL``), each
on its own data directory (its own FAISS index and media): what they share is the items and
the jobs, so each lists what the other stored and accepted, and content one stored is a
duplicate on the other."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.conftest import Media
from tests.services.server_process import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def post(url: str, path: Path, **data: str) -> httpx.Response:
    with path.open("rb") as file:
        return httpx.post(
            f"{url}/embed/video", files={"file": (path.name, file)}, data=data, timeout=60
        )


def finished_job(url: str, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/jobs/{job_id}", timeout=5).json())["state"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def item_ids(url: str) -> list[str]:
    page = httpx.get(f"{url}/items", timeout=5).json()
    return [item["id"] for item in page["items"]]


def test_two_replicas_list_each_others_items_and_jobs(
    checkpoint_dir: Path, media: Media, tmp_path: Path, postgres_url: str
) -> None:
    shared = {"AVID_DATABASE_URL": postgres_url, "AVID_JOB_WORKERS": "1"}
    # Replica a embeds every upload as a background job, replica b at once.
    a = ServerProcess(
        checkpoint_dir, tmp_path / "a", tmp_path / "a.log", AVID_SYNC_MAX_SECONDS="0", **shared
    )
    b = ServerProcess(checkpoint_dir, tmp_path / "b", tmp_path / "b.log", **shared)
    try:
        a.start()
        b.start()
        accepted = post(a.url, media.videos[0])
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        job = finished_job(a.url, job_id)
        assert job["state"] == "done", job
        stored = job["result"]["id"]

        # b sees a's job and a's item.
        assert finished_job(b.url, job_id)["result"]["id"] == stored
        jobs = httpx.get(f"{b.url}/jobs", timeout=5).json()
        assert (jobs["total"], [j["id"] for j in jobs["jobs"]]) == (1, [job_id])
        assert item_ids(b.url) == [stored]
        assert httpx.get(f"{b.url}/items/{stored}", timeout=5).status_code == 200

        # The same bytes under another id on b: refused, naming a's item.
        copy = post(b.url, media.videos[0], id="copy")
        assert copy.status_code == 409, copy.text
        assert copy.json()["error"]["code"] == "duplicate_content"
        assert repr(stored) in copy.json()["error"]["message"]

        # What b stores, a lists.
        other = post(b.url, media.videos[1])
        assert other.status_code == 200, other.text
        assert item_ids(a.url) == [stored, other.json()["id"]]
    finally:
        a.stop()
        b.stop()
