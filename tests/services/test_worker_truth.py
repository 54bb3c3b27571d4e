"""The distributed mode tells the truth about its workers: heartbeats in Redis with a TTL;
no live worker is a quick 503 ``no_worker`` and a not-ready /readyz; a worker killed mid-task
has its task sent again within the heartbeat TTL (not the broker's visibility timeout)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from avid_model.media_writer import write_media
from services.api.app import create_app
from services.worker.heartbeat import Heartbeat, heartbeat_key, live_workers, this_worker
from tests.services.celery_worker_process import (
    empty_redis_db,
    redis_or_skip,
    worker_launcher,
)
from tests.services.conftest import FPS, RATE, Media, frames, service_settings, tone
from tests.services.test_api import assert_error, total, upload


@pytest.mark.redis
def test_heartbeats_expire_unless_renewed_and_go_when_stopped() -> None:
    client = redis_or_skip(12)
    try:
        beating = Heartbeat(client, this_worker("beating@test", "v1", 2), ttl_s=0.6)
        beating.start()
        killed = Heartbeat(client, this_worker("killed@test", "v2", 1), ttl_s=0.6)
        killed.beat()  # one beat and no thread: a worker killed with -9 right after
        assert {w.hostname for w in live_workers(client)} == {"beating@test", "killed@test"}
        time.sleep(1.0)
        workers = live_workers(client)
        assert [(w.hostname, w.model_version, w.concurrency) for w in workers] == [
            ("beating@test", "v1", 2)
        ]
        beating.stop()
        assert live_workers(client) == []
        assert client.get(heartbeat_key("beating@test")) is None
    finally:
        client.flushdb()
        client.close()


@pytest.mark.redis
def test_no_live_worker_is_a_quick_503_no_worker_and_not_ready(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    with empty_redis_db(12) as broker_url:
        settings = service_settings(checkpoint_dir, tmp_path / "data", broker_url=broker_url)
        with TestClient(create_app(settings)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["workers"] == 0
            assert ready.json()["checks"]["broker"] is True
            assert ready.json()["workers"] == []
            start = time.monotonic()
            response = client.post("/embed/audio", files=upload(media.wav))
            assert_error(response, 503, "no_worker", "no `avid worker` is running")
            search = client.post("/search", files=upload(media.wav), data={"target": "video"})
            assert_error(search, 503, "no_worker")
            assert time.monotonic() - start < 5
            assert total(client) == 0
            # A worker of another model only: told so, not "no worker".
            redis_client = redis.Redis.from_url(broker_url)
            other = this_worker("other@test", "another-model", 1)
            Heartbeat(redis_client, other, ttl_s=30).beat()
            redis_client.close()
            response = client.post("/embed/audio", files=upload(media.wav))
            assert_error(response, 503, "worker_model_mismatch", "another-model")
            ready = client.get("/readyz").json()
            assert ready["checks"]["workers"] == 0
            assert ready["workers"] == [
                {"hostname": "other@test", "model_version": "another-model", "concurrency": 1}
            ]
            assert 'avid_workers{model_version="another-model"} 1.0' in client.get("/metrics").text


@pytest.mark.redis
@pytest.mark.slow  # two worker start-ups: 20-40 s on a busy 2-core machine
def test_a_worker_killed_mid_task_has_its_task_sent_again_within_the_heartbeat_ttl(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    long_video = tmp_path / "long.mp4"
    write_media(long_video, video=frames(24, 4), fps=FPS, audio=tone(24, 440.0), sample_rate=RATE)
    data_dir = tmp_path / "data"
    ttl = 2.0
    # The broker's visibility timeout stays at its default (an hour): no redelivery from it.
    env = {"AVID_BATCH_MAX_CLIPS": "2", "AVID_WORKER_HEARTBEAT_TTL_S": str(ttl)}
    with (
        empty_redis_db(12) as broker_url,
        worker_launcher(broker_url, checkpoint_dir, data_dir, tmp_path, **env) as launcher,
    ):
        first = launcher.start(concurrency=1)
        second = launcher.start(concurrency=1)
        first.wait_ready()
        second.wait_ready()
        settings = service_settings(
            checkpoint_dir,
            data_dir,
            broker_url=broker_url,
            task_timeout_s=120.0,
            sync_max_seconds=1.0,
            worker_heartbeat_ttl_s=ttl,
        )
        with TestClient(create_app(settings)) as client:
            response = client.post("/embed/video", files=upload(long_video), data={"id": "long"})
            assert response.status_code == 202, response.text
            url = response.json()["status_url"]
            deadline = time.monotonic() + 60
            while (job := client.get(url).json())["progress"] == 0 and job["state"] != "done":
                assert time.monotonic() < deadline, job
                time.sleep(0.02)
            assert job["state"] == "running", job
            holder = first if " embedding " in first.log() else second
            survivor = second if holder is first else first
            holder.kill()
            killed_at = time.monotonic()
            while (job := client.get(url).json())["state"] not in ("done", "failed"):
                assert time.monotonic() - killed_at < 60, job
                time.sleep(0.1)
            assert job["state"] == "done", (job, survivor.log())
            assert " embedded, " in survivor.log()
            assert total(client) == 1
