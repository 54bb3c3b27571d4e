"""What travels through Redis: exact vectors as JSON, media errors through Celery's JSON
result codec, and paths that stay inside the shared data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avid_model.errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaTooLongError,
    NoUsableStreamError,
)
from avid_model.inference import FileEmbedding
from avid_model.media import MediaLimits
from services.api.errors import describe
from services.settings import Settings
from services.worker.celery_app import create_celery_app
from services.worker.messages import (
    RemoteMediaError,
    SharedPathError,
    decode_embedding,
    embed_task_kwargs,
    encode_embedding,
    resolve_shared_path,
    shared_relative_path,
)


def test_an_embedding_survives_json_bit_for_bit() -> None:
    video = F.normalize(torch.randn(3, 128), dim=1)
    embedding = FileEmbedding(3.0, True, False, [0.0, 1.0, 2.0], [2.0, 3.0, 4.0], video, None)
    message = json.loads(json.dumps(encode_embedding(embedding, "avid-tiny-abc")))
    back, version = decode_embedding(message)
    assert version == "avid-tiny-abc"
    assert (back.duration, back.has_video, back.has_audio) == (3.0, True, False)
    assert (back.starts, back.ends) == (embedding.starts, embedding.ends)
    assert back.video is not None
    assert back.video.dtype == torch.float32
    assert torch.equal(back.video, video)
    assert back.audio is None


def test_task_arguments_are_plain_json() -> None:
    kwargs = embed_task_kwargs(
        "media/abc.mp4",
        frozenset({"video", "audio"}),
        hop=0.5,
        limits=MediaLimits(max_duration_s=60.0),
        report_progress=True,
    )
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["modalities"] == ["audio", "video"]
    assert MediaLimits(**kwargs["limits"]) == MediaLimits(max_duration_s=60.0)


@pytest.mark.parametrize(
    "error",
    [
        CorruptMediaError("decoding failed part-way", path="/data/media/abc.mp4"),
        MediaTooLongError("lasts 99.0 s, over the limit of 60 s", path="x.wav"),
        NoUsableStreamError("has no video stream", path="x.wav"),
        EmptyMediaError("contains no frames or samples"),
        MediaError("something else"),
    ],
)
def test_a_workers_media_error_comes_back_as_itself(error: MediaError) -> None:
    """Through Celery's own JSON exception codec, as a failed task's result travels."""
    backend = create_celery_app(Settings(broker_url="redis://127.0.0.1:1/0")).backend
    stored = json.loads(
        json.dumps(backend.prepare_exception(RemoteMediaError.from_media_error(error)))
    )
    rebuilt = backend.exception_to_python(stored)
    assert isinstance(rebuilt, RemoteMediaError)
    again = rebuilt.to_media_error()
    assert type(again) is type(error)
    assert (str(again), again.message, again.filename) == (
        str(error),
        error.message,
        error.filename,
    )
    assert describe(again) == describe(error)


def test_paths_stay_inside_the_shared_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "media").mkdir(parents=True)
    stored = data_dir / "media" / "abc.mp4"
    stored.write_bytes(b"x")
    assert shared_relative_path(stored, data_dir) == "media/abc.mp4"
    assert resolve_shared_path("media/abc.mp4", data_dir) == stored.resolve()
    with pytest.raises(SharedPathError, match="not under the shared data directory"):
        shared_relative_path(tmp_path / "elsewhere.mp4", data_dir)
    for escaping in ("../elsewhere.mp4", "/etc/passwd", ".", "media/../../x"):
        with pytest.raises(SharedPathError, match="not a file path inside"):
            resolve_shared_path(escaping, data_dir)
    with pytest.raises(SharedPathError, match="must share AVID_DATA_DIR"):
        resolve_shared_path("media/missing.mp4", data_dir)


def test_replicas_data_dirs_inside_one_shared_directory(tmp_path: Path) -> None:
    """Two API replicas, each with its data dir inside AVID_SHARED_DIR, and one worker on
    the shared directory: each replica's upload path resolves to its file on the worker."""
    worker = Settings(data_dir=tmp_path, shared_dir=tmp_path)
    assert Settings(data_dir=tmp_path).shared_root == tmp_path  # the default: the data dir
    for name in ("api-1", "api-2"):
        api = Settings(data_dir=tmp_path / name, shared_dir=tmp_path)
        upload = api.media_dir / "abc.mp4"
        upload.parent.mkdir(parents=True)
        upload.write_bytes(name.encode())
        relative = shared_relative_path(upload, api.shared_root)
        assert relative == f"{name}/media/abc.mp4"
        assert resolve_shared_path(relative, worker.shared_root).read_bytes() == name.encode()
    with pytest.raises(ValueError, match="must be inside AVID_SHARED_DIR"):
        Settings(data_dir=tmp_path / "elsewhere", shared_dir=tmp_path / "shared")
