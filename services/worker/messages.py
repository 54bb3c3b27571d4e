"""What travels between the API and the workers through Redis: JSON only, never media bytes.

The API sends ``embed_media`` a path RELATIVE to the shared directory (storage mounted by the
API and every worker; each resolves it against its own ``AVID_SHARED_DIR``, which defaults to
``AVID_DATA_DIR``; API replicas give each its data dir inside one shared dir), the wanted
modalities, the window hop and the media limits (the API's settings decide them, so a
worker's own settings cannot change the windows). The worker answers with ``EmbeddingMessage``:
per-window vectors as base64 little-endian float32 (exact, a third of the size of JSON
numbers), window times, duration, streams and the worker's model version.

A ``MediaError`` raised in a worker travels as ``RemoteMediaError`` (its arguments are plain
strings, so Celery's JSON result carries it and rebuilds it in the API) and becomes the same
``MediaError`` class with the same message again (``to_media_error``).

Framework-free: no Celery here.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avid_model import errors as media_errors
from avid_model.errors import MediaError
from avid_model.inference import FileEmbedding
from avid_model.media import MediaLimits
from services.index import Modality

EMBED_TASK = "avid.embed_media"
EMBED_QUEUE = "avid"  # the Redis list the tasks wait in (its length is the queue depth)
PROGRESS_STATE = "PROGRESS"  # task state whose meta is {"progress": fraction}

_MEDIA_ERRORS: dict[str, type[MediaError]] = {
    name: getattr(media_errors, name) for name in media_errors.__all__
}


class SharedPathError(ValueError):
    """A path that is not inside the data directory the API and the workers share."""


def shared_relative_path(path: Path, data_dir: Path) -> str:
    """``path`` as the API sends it: relative to the shared data directory."""
    root = data_dir.resolve()
    full = path.resolve()
    if not full.is_relative_to(root):
        raise SharedPathError(f"{path} is not under the shared data directory {root}")
    return full.relative_to(root).as_posix()


def resolve_shared_path(relative: str, data_dir: Path) -> Path:
    """The file a worker reads for ``relative``; never a path outside its data directory."""
    root = data_dir.resolve()
    full = (root / relative).resolve()
    if not full.is_relative_to(root) or full == root:
        raise SharedPathError(f"{relative!r} is not a file path inside the data directory")
    if not full.is_file():
        raise SharedPathError(
            f"{relative!r} is not in this worker's data directory {root}: "
            "the API and the workers must share AVID_DATA_DIR (one volume), or AVID_SHARED_DIR "
            "when it holds several APIs' data dirs"
        )
    return full


def embed_task_kwargs(
    relative_path: str,
    modalities: frozenset[Modality],
    *,
    hop: float,
    limits: MediaLimits,
    report_progress: bool,
) -> dict[str, Any]:
    """The keyword arguments of one ``embed_media`` task (all JSON)."""
    return {
        "path": relative_path,
        "modalities": sorted(modalities),
        "hop": hop,
        "limits": asdict(limits),
        "report_progress": report_progress,
    }


def _encode_vectors(vectors: torch.Tensor | None) -> dict[str, Any] | None:
    if vectors is None:
        return None
    array = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype="<f4")
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode()}


def _decode_vectors(encoded: dict[str, Any] | None) -> torch.Tensor | None:
    if encoded is None:
        return None
    raw = base64.b64decode(encoded["float32"])
    array = np.frombuffer(raw, dtype="<f4").reshape(encoded["shape"]).astype(np.float32)
    return torch.from_numpy(array)


def encode_embedding(embedding: FileEmbedding, model_version: str) -> dict[str, Any]:
    """A worker's result: one file's windows and vectors, and the model that made them."""
    return {
        "model_version": model_version,
        "duration": embedding.duration,
        "has_video": embedding.has_video,
        "has_audio": embedding.has_audio,
        "starts": list(embedding.starts),
        "ends": list(embedding.ends),
        "video": _encode_vectors(embedding.video),
        "audio": _encode_vectors(embedding.audio),
    }


def decode_embedding(message: dict[str, Any]) -> tuple[FileEmbedding, str]:
    """The ``FileEmbedding`` a worker's result describes, and the worker's model version."""
    embedding = FileEmbedding(
        duration=float(message["duration"]),
        has_video=bool(message["has_video"]),
        has_audio=bool(message["has_audio"]),
        starts=[float(t) for t in message["starts"]],
        ends=[float(t) for t in message["ends"]],
        video=_decode_vectors(message["video"]),
        audio=_decode_vectors(message["audio"]),
    )
    return embedding, str(message["model_version"])


class RemoteMediaError(Exception):
    """A worker's ``MediaError`` on its way back: class name, message, file name.

    The arguments are strings so that Celery's JSON result backend stores and rebuilds it.
    """

    def __init__(self, error_class: str, message: str, filename: str | None = None) -> None:
        super().__init__(error_class, message, filename)
        self.error_class = error_class
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return f"{self.error_class}: {self.message}"

    @classmethod
    def from_media_error(cls, exc: MediaError) -> RemoteMediaError:
        message = exc.message
        if exc.filename and message.startswith(f"{exc.filename}: "):
            message = message[len(exc.filename) + 2 :]
        return cls(type(exc).__name__, message, exc.filename)

    def to_media_error(self) -> MediaError:
        """The error the worker raised: same class, same message (``str``), same file name."""
        error_type = _MEDIA_ERRORS.get(self.error_class, MediaError)
        return error_type(self.message, path=self.filename)
