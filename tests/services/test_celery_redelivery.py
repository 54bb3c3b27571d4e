"""A worker killed mid-task (SIGKILL): the task is delivered again to the next worker, and
the item is stored once. Real ``avid worker`` processes on the Redis at 127.0.0.1:6379 (DB 12).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from avid_model.media_writer import write_media
from services.api.app import create_app
from tests.services.celery_worker_process import empty_redis_db, worker_launcher
from tests.services.conftest import FPS, RATE, frames, service_settings, tone
from tests.services.test_api import total, upload


def _wait_for_job(client: TestClient, url: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(url).json()
        if done(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


@pytest.mark.redis
@pytest.mark.slow  # two worker start-ups: 20-40 s on a busy 2-core machine
def test_worker_killed_mid_task_task_is_redelivered_and_stored_once(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    """A worker of its own, on DB 12: no other worker may take the task."""
    long_video = tmp_path / "long.mp4"
    write_media(long_video, video=frames(24, 4), fps=FPS, audio=tone(24, 440.0), sample_rate=RATE)
    data_dir = tmp_path / "data"
    # One window per progress step; a task unacknowledged for 1 s is restored by the next
    # worker that starts.
    env = {"AVID_BATCH_MAX_CLIPS": "2", "AVID_BROKER_VISIBILITY_TIMEOUT_S": "1"}
    with (
        empty_redis_db(12) as broker_url,
        worker_launcher(broker_url, checkpoint_dir, data_dir, tmp_path, **env) as launcher,
        TestClient(
            create_app(
                service_settings(
                    checkpoint_dir,
                    data_dir,
                    broker_url=broker_url,
                    task_timeout_s=120.0,
                    sync_max_seconds=1.0,
                )
            )
        ) as client,
    ):
        first = launcher.start(concurrency=1)
        first.wait_ready()
        response = client.post("/embed/video", files=upload(long_video), data={"id": "long"})
        assert response.status_code == 202, response.text
        url = response.json()["status_url"]
        # Kill once the worker reports progress: it holds the task, unacknowledged.
        job = _wait_for_job(client, url, lambda j: j["progress"] > 0 or j["state"] == "done", 60)
        first.kill()
        assert 0 < job["progress"] < 1, job
        job = client.get(url).json()
        assert job["state"] == "running", f"the task ended before the worker was killed: {job}"

        second = launcher.start(concurrency=1)
        job = _wait_for_job(client, url, lambda j: j["state"] in ("done", "failed"), 90)
        if job["state"] != "done":
            keys = redis.Redis.from_url(broker_url).keys("*")
            pytest.fail(f"{job}\nkeys {keys}\n{first.log()}\n{second.log()}")
        assert job["result"]["id"] == "long"
        task_id = first.log().split("avid.embed_media[")[1].split("]")[0]
        assert f"avid.embed_media[{task_id}] succeeded" in second.log()  # the same task, again

        assert total(client) == 1
        item = client.get("/items/long").json()
        # 24 s, 2 s windows every second, each inside the file: starts 0 .. 22
        assert item["n_video_windows"] == item["n_audio_windows"] == 23
        again = client.post("/embed/video", files=upload(long_video))  # same bytes, same model
        job = _wait_for_job(client, again.json()["status_url"], lambda j: j["state"] == "done", 60)
        assert job["result"]["id"] == "long"
        assert total(client) == 1
