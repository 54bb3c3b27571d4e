"""Background jobs outlive the process: recorded beside the items (in SQLite, or in the
PostgreSQL database of ``AVID_DATABASE_URL``: ``database_url`` runs the tests on both),
resumed (or failed with a reason, never forgotten) after kill -9, left queued on disk by a
SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from avid_model.media_writer import write_media
from services.api.app import create_app
from services.job_records import JobRecords, JobRecordStore
from services.jobs import MAX_ATTEMPTS, JobStatus, Progress, RunnerClosed, ThreadJobRunner
from services.postgres_job_records import PostgresJobRecords
from tests.services.conftest import FPS, RATE, Media, SettingsFactory, frames, tone
from tests.services.server_process import ServerProcess
from tests.services.test_api import upload

OpenRecords = Callable[..., JobRecordStore]


@pytest.fixture
def open_records(tmp_path: Path, database_url: str | None) -> OpenRecords:
    """Opens the job records of one data directory (``owner``): SQLite's file there, or the
    test's PostgreSQL database."""

    def _open(owner: str = "here") -> JobRecordStore:
        if database_url is None:
            return JobRecords(tmp_path / "items.sqlite3")
        return PostgresJobRecords(database_url, owner)

    return _open


def wait_for(runner: ThreadJobRunner, job_id: str, states: set[str]) -> JobStatus:
    deadline = time.monotonic() + 10
    while (status := runner.status(job_id)).state not in states:
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status


def test_close_finishes_running_jobs_and_keeps_queued_ones_for_the_next_start(
    open_records: OpenRecords,
) -> None:
    gate = threading.Event()
    seen: list[int] = []

    def handler(payload: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
        gate.wait(5)
        seen.append(payload["n"])
        return {"n": payload["n"]}

    runner = ThreadJobRunner(handler, records=open_records(), workers=1)
    running, waiting = runner.submit({"n": 1}), runner.submit({"n": 2})
    wait_for(runner, running.id, {"running"})
    threading.Timer(0.2, gate.set).start()
    runner.close()
    with pytest.raises(RunnerClosed, match="shutting down"):
        runner.submit({"n": 3})
    assert seen == [1]
    records = open_records()
    assert records.get(running.id)["state"] == "done"  # type: ignore[index]
    assert records.get(waiting.id)["state"] == "queued"  # type: ignore[index]
    # The next start runs it.
    again = ThreadJobRunner(handler, records=records, workers=1)
    assert again.resume(lambda payload: None) == (1, 0)
    assert wait_for(again, waiting.id, {"done", "failed"}).result == {"n": 2}
    assert seen == [1, 2]
    again.close()


def test_close_abandons_a_job_still_running_after_the_grace_and_the_next_start_runs_it(
    tmp_path: Path,
) -> None:
    stuck, release = threading.Event(), threading.Event()

    def handler(payload: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
        if payload["n"] == 1 and not stuck.is_set():  # the first run blocks (a stuck decode)
            stuck.set()
            release.wait(20)
            progress(0.9)  # too late: the runner closed; nothing of this run is recorded
            return {"n": 1, "run": "abandoned"}
        return {"n": payload["n"], "run": "again"}

    db = tmp_path / "items.sqlite3"
    runner = ThreadJobRunner(handler, records=JobRecords(db), workers=1)
    blocked, waiting = runner.submit({"n": 1}), runner.submit({"n": 2})
    wait_for(runner, blocked.id, {"running"})
    started = time.monotonic()
    runner.close(grace_s=0.5)
    took = time.monotonic() - started
    assert 0.4 < took < 2.0, took
    records = JobRecords(db)
    left = records.get(blocked.id)
    assert left is not None
    assert (left["state"], left["progress"], left["attempts"]) == ("queued", 0.0, 1)
    assert records.get(waiting.id)["state"] == "queued"  # type: ignore[index]
    release.set()  # the abandoned thread ends now and writes nothing
    time.sleep(0.2)
    assert records.get(blocked.id)["state"] == "queued"  # type: ignore[index]
    # The next start runs both.
    again = ThreadJobRunner(handler, records=records, workers=1)
    assert again.resume(lambda payload: None) == (2, 0)
    done = wait_for(again, blocked.id, {"done", "failed"})
    assert (done.state, done.result) == ("done", {"n": 1, "run": "again"})
    assert wait_for(again, waiting.id, {"done", "failed"}).state == "done"
    assert records.get(blocked.id)["attempts"] == 2  # type: ignore[index]
    again.close(grace_s=5)


def test_close_with_memory_records_fails_an_abandoned_job_with_shutdown() -> None:
    release = threading.Event()
    runner = ThreadJobRunner(lambda payload, progress: {"ok": release.wait(20)}, workers=1)
    job = runner.submit({})
    wait_for(runner, job.id, {"running"})
    runner.close(grace_s=0.1)
    release.set()
    time.sleep(0.1)
    status = runner.status(job.id)
    assert (status.state, status.error) == (
        "failed",
        {"code": "shutdown", "message": "the service stopped first"},
    )


def test_resume_fails_lost_jobs_with_a_reason(open_records: OpenRecords) -> None:
    crashed = open_records()  # what a process killed mid-run left behind
    gone = crashed.insert("gone", {"path": "missing.mp4"})["id"]
    crashed.update(gone, state="running", bump_attempts=True)
    flaky = crashed.insert("flaky", {"path": "kills-the-service.mp4"})["id"]
    for _ in range(MAX_ATTEMPTS):
        crashed.update(flaky, state="running", bump_attempts=True)
    crashed.close()

    runner = ThreadJobRunner(lambda payload, progress: {}, records=open_records())
    missing = {"missing.mp4"}
    resumed = runner.resume(lambda p: "its file is gone" if p["path"] in missing else None)
    assert resumed == (0, 2)
    lost, repeated = runner.status(gone), runner.status(flaky)
    assert lost.state == repeated.state == "failed"
    assert lost.error == {"code": "interrupted", "message": "not finished: its file is gone"}
    assert repeated.error is not None
    assert f"stopped {MAX_ATTEMPTS} times" in repeated.error["message"]
    runner.close()


@pytest.mark.postgres
def test_replicas_list_every_job_and_resume_only_their_own(postgres_url: str) -> None:
    """Two processes' records in one PostgreSQL database: each lists both's jobs; a
    restarted one takes up its own unfinished jobs, never one the other is running."""
    mine, theirs = (PostgresJobRecords(postgres_url, owner) for owner in "ab")
    queued = mine.insert("mine", {"path": "a.mp4"})["id"]
    running = theirs.insert("theirs", {"path": "b.mp4"})["id"]
    theirs.update(running, state="running", bump_attempts=True)
    assert {r["id"] for r in mine.page(None, 0, 10)[0]} == {queued, running}
    assert theirs.counts() == {"queued": 1, "running": 1, "done": 0, "failed": 0}
    assert [r["id"] for r in mine.unfinished()] == [queued]
    assert [r["id"] for r in theirs.unfinished()] == [running]
    mine.close()
    theirs.close()


def test_get_jobs_lists_jobs_by_state_a_page_at_a_time(
    make_settings: SettingsFactory, media: Media, database_url: str | None
) -> None:
    settings = make_settings(sync_max_seconds=0.0, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        ids = []
        for path in (media.videos[0], media.videos[1], media.wav):
            kind = "audio" if path == media.wav else "video"
            response = client.post(f"/embed/{kind}", files=upload(path))
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        deadline = time.monotonic() + 60
        while client.get("/jobs", params={"state": "done"}).json()["total"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        page = client.get("/jobs", params={"limit": 2}).json()
        assert (page["total"], page["offset"], page["limit"]) == (3, 0, 2)
        assert [job["id"] for job in page["jobs"]] == ids[:2]
        rest = client.get("/jobs", params={"limit": 2, "offset": 2}).json()
        assert [job["id"] for job in rest["jobs"]] == ids[2:]
        assert client.get("/jobs", params={"state": "failed"}).json()["total"] == 0
        assert client.get("/jobs", params={"state": "lost"}).status_code == 422
    # A new app on the same data directory still knows them.
    with TestClient(create_app(settings)) as client:
        for job_id in ids:
            job = client.get(f"/jobs/{job_id}").json()
            assert job["state"] == "done", job
            assert job["result"]["model_version"]


def wait_until_finished(url: str, job_ids: list[str], timeout: float = 90.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [httpx.get(f"{url}/jobs/{job_id}", timeout=5) for job_id in job_ids]
        assert all(r.status_code == 200 for r in jobs), [r.text for r in jobs]
        bodies = [r.json() for r in jobs]
        if all(b["state"] in ("done", "failed") for b in bodies):
            return bodies
        assert time.monotonic() < deadline, bodies
        time.sleep(0.2)


def submit_jobs(url: str, media: Media) -> list[str]:
    ids = []
    for path in (*media.videos, media.short_video):
        with path.open("rb") as file:
            response = httpx.post(f"{url}/embed/video", files={"file": (path.name, file)})
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


@pytest.mark.slow
def test_kill_9_during_jobs_then_restart_resumes_every_job(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    env = {"AVID_SYNC_MAX_SECONDS": "0", "AVID_JOB_WORKERS": "1"}
    server = ServerProcess(checkpoint_dir, tmp_path / "data", tmp_path / "serve.log", **env)
    try:
        server.start()
        ids = submit_jobs(server.url, media)
        server.kill()
        server.start()
        bodies = wait_until_finished(server.url, ids)
        assert [b["state"] for b in bodies] == ["done"] * len(ids), bodies
        assert httpx.get(f"{server.url}/items").json()["total"] == len(ids)
    finally:
        server.stop()


@pytest.mark.slow
def test_sigterm_finishes_the_running_job_and_the_next_start_runs_the_queued_ones(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    env = {"AVID_SYNC_MAX_SECONDS": "0", "AVID_JOB_WORKERS": "1"}
    server = ServerProcess(checkpoint_dir, tmp_path / "data", tmp_path / "serve.log", **env)
    try:
        server.start()
        ids = submit_jobs(server.url, media)
        # uvicorn shuts down gracefully, then exits by the signal it got (status -15).
        assert server.terminate() in (0, -signal.SIGTERM), server.log()
        assert "Application shutdown complete" in server.log()
        records = JobRecords(tmp_path / "data" / "index" / "items.sqlite3")
        states = [records.get(job_id)["state"] for job_id in ids]  # type: ignore[index]
        records.close()
        assert set(states) <= {"done", "queued"}, states  # none left half-run, none failed
        server.start()
        bodies = wait_until_finished(server.url, ids)
        assert [b["state"] for b in bodies] == ["done"] * len(ids), bodies
    finally:
        server.stop()


@pytest.mark.slow
def test_sigterm_stops_within_the_grace_and_the_next_start_runs_the_abandoned_job(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    # A 90 s video: its job takes several seconds on the tiny model, longer than the grace.
    long_video = tmp_path / "long.mp4"
    seconds = 90.0
    write_media(
        long_video, video=frames(seconds, 3), fps=FPS, audio=tone(seconds, 330.0), sample_rate=RATE
    )
    grace = 2.0
    env = {"AVID_SYNC_MAX_SECONDS": "0", "AVID_JOB_WORKERS": "1", "AVID_SHUTDOWN_GRACE_S": "2"}
    server = ServerProcess(checkpoint_dir, tmp_path / "data", tmp_path / "serve.log", **env)
    try:
        server.start(timeout=180)
        with long_video.open("rb") as file:
            response = httpx.post(
                f"{server.url}/embed/video", files={"file": (long_video.name, file)}, timeout=30
            )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/jobs/{job_id}", timeout=5).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        assert server.terminate(timeout=grace + 10) == 0, server.log()
        took = time.monotonic() - started
        assert took < grace + 8, (took, server.log())
        assert "left queued for the next start" in server.log()
        records = JobRecords(tmp_path / "data" / "index" / "items.sqlite3")
        left = records.get(job_id)
        records.close()
        assert left is not None
        assert left["state"] == "queued", left
        server.start(timeout=180)
        (body,) = wait_until_finished(server.url, [job_id], timeout=120)
        assert body["state"] == "done", body
        assert httpx.get(f"{server.url}/items").json()["total"] == 1
    finally:
        server.stop()
