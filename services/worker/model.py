"""The model of one worker process: loaded once, on first use, in the process that runs it.

Nothing is loaded at import or while the worker starts, so CUDA is first touched in the
process that embeds (a forked pool child loads its own; the threads and solo pools never
fork). Every task of the process shares the one ``LocalEmbeddingBackend``: one model and one
``BatchingEmbedder``, so windows of files that concurrent task threads decode meet in the
same forward pass (batch size counted in clips: ``batch_max_clips``, ``batch_max_wait_ms``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from services.embedding import LocalEmbeddingBackend
from services.settings import Settings

log = logging.getLogger(__name__)

BackendLoader = Callable[[Settings], LocalEmbeddingBackend]


_PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class WorkerModel:
    """Lazily loaded, process-wide embedding backend of an ``avid worker``."""

    def __init__(
        self, settings: Settings, load: BackendLoader = LocalEmbeddingBackend.from_settings
    ) -> None:
        self.settings = settings
        self._load = load
        self._lock = threading.Lock()
        self._backend: LocalEmbeddingBackend | None = None
        self._pid: int | None = None

    def backend(self) -> LocalEmbeddingBackend:
        """The loaded backend; the first caller of this process loads it (the others wait)."""
        with self._lock:
            if self._backend is None or self._pid != os.getpid():
                backend = self._load(self.settings)
                embedder = backend.embedder
                log.info(
                    "worker %d loaded model %s on %s (%s)",
                    os.getpid(),
                    backend.model_version,
                    embedder.device,
                    # The precision's name (fp32, bf16), not the dtype's: the log is checked
                    # for tensor reprs ("float32"), which must never appear in it.
                    _PRECISION.get(embedder.dtype, str(embedder.dtype)),
                )
                self._backend, self._pid = backend, os.getpid()
            return self._backend

    @property
    def is_loaded(self) -> bool:
        return self._backend is not None and self._pid == os.getpid()

    def close(self) -> None:
        with self._lock:
            if self._backend is not None and self._pid == os.getpid():
                self._backend.close()
            self._backend = self._pid = None
