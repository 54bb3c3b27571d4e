"""The workers' Celery task (thin): ``embed_media`` embeds one file on shared storage.

Idempotence: the task only READS a file and RETURNS vectors; it writes nothing (no index, no
file). Running it twice (a task redelivered after its worker died mid-task, acks_late) costs
the work again and nothing else. The API process is the one writer of the index (FAISS: one
writer): it stores what a request's result says once, and the store is keyed on content hash
and model version, so the same bytes embedded by the same model are one item however often
they are sent or embedded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task

from avid_model.errors import MediaError
from avid_model.media import MediaLimits
from services.embedding import LocalEmbeddingBackend
from services.index import Modality
from services.jobs import Progress
from services.worker.messages import (
    EMBED_TASK,
    PROGRESS_STATE,
    RemoteMediaError,
    encode_embedding,
    resolve_shared_path,
)
from services.worker.model import WorkerModel

log = logging.getLogger(__name__)

_MODALITIES: dict[str, Modality] = {"video": "video", "audio": "audio"}


def embed_media(
    model: WorkerModel,
    path: str,
    modalities: list[str],
    hop: float,
    limits: Mapping[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed the file at ``path`` (relative to the shared directory: ``AVID_SHARED_DIR``, else
    the data directory); JSON result.

    A ``MediaError`` is raised again as ``RemoteMediaError`` (see ``services.worker.messages``).
    """
    unknown = set(modalities) - set(_MODALITIES)
    if unknown or not modalities:
        raise ValueError(f"modalities must be among video, audio; got {modalities}")
    wanted = frozenset(_MODALITIES[m] for m in modalities)
    loaded = model.backend()
    file = resolve_shared_path(path, model.settings.shared_root)
    # The request's own hop and limits (the API's settings), on the process's model and batcher.
    backend = LocalEmbeddingBackend(
        loaded.embedder, loaded.batcher, hop=hop, limits=MediaLimits(**limits)
    )
    try:
        embedding = backend.embed_file(file, wanted, progress)
    except MediaError as exc:
        raise RemoteMediaError.from_media_error(exc) from exc
    return encode_embedding(embedding, loaded.model_version)


def register_tasks(app: Celery, model: WorkerModel) -> None:
    """Register ``embed_media`` on a worker's ``app``, running on ``model``."""

    @app.task(name=EMBED_TASK, bind=True)
    def embed_media_task(
        task: Task,
        path: str,
        modalities: list[str],
        hop: float,
        limits: dict[str, Any],
        report_progress: bool = False,
    ) -> dict[str, Any]:
        task_id = task.request.id

        def progress(fraction: float) -> None:
            meta = {"progress": float(fraction), "hostname": task.request.hostname}
            task.update_state(task_id, PROGRESS_STATE, meta)

        start = time.perf_counter()
        log.info("task %s: embedding %s (%s)", task_id, path, ", ".join(modalities))
        result = embed_media(
            model, path, modalities, hop, limits, progress if report_progress else None
        )
        log.info(
            "task %s: %s embedded, %d windows, %.2f s",
            task_id,
            path,
            len(result.get("starts", [])),
            time.perf_counter() - start,
        )
        return result
