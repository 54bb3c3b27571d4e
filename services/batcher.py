"""``BatchingEmbedder``: one background thread owns the model and batches across callers.

Request threads call ``embed_video`` / ``embed_audio`` (or ``submit``) with n clips and block
on a future. The thread takes the oldest request, then keeps gathering more (from any caller)
until ``max_batch_clips`` clips are waiting or ``max_wait_ms`` has passed since it took the
first one, runs one forward per modality, and hands each caller back its own rows. Batch
sizes are counted in clips (windows), not files; a request larger than ``max_batch_clips`` is
split into pieces that are batched like any other.

If a combined forward raises, each of its requests is run again on its own so the failure
reaches only the futures whose input causes it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

log = logging.getLogger(__name__)

Modality = Literal["video", "audio"]
BatchObserver = Callable[[Modality, int], None]


class Encoder(Protocol):
    """What the batcher drives: an ``avid_model.inference.Embedder`` or a test double."""

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor: ...

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor: ...


class BatcherClosed(RuntimeError):
    """The batcher was shut down; no more requests are accepted."""


class _Request:
    """One caller's request: its pieces' results are joined into one future."""

    def __init__(self, n_pieces: int) -> None:
        self.future: Future[torch.Tensor] = Future()
        self._parts: list[torch.Tensor | None] = [None] * n_pieces
        self._left = n_pieces
        self._lock = threading.Lock()

    def piece_done(self, index: int, result: torch.Tensor) -> None:
        with self._lock:
            if self.future.done():
                return
            self._parts[index] = result
            self._left -= 1
            if self._left == 0:
                parts = [p for p in self._parts if p is not None]
                self.future.set_result(parts[0] if len(parts) == 1 else torch.cat(parts))

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if not self.future.done():
                self.future.set_exception(exc)


@dataclass
class _Piece:
    modality: Modality
    inputs: torch.Tensor
    request: _Request
    index: int
    clips: int = field(init=False)

    def __post_init__(self) -> None:
        self.clips = int(self.inputs.shape[0])


_STOP = object()


class BatchingEmbedder:
    """Cross-request batching in front of an encoder (see the module doc).

    ``batching=False`` runs every piece in its own forward (the benchmark's baseline).
    ``on_batch(modality, clips)`` is called after every forward (for /metrics);
    ``recent_batches`` keeps the last few thousand ``(modality, clips)`` for inspection.
    """

    def __init__(
        self,
        embedder: Encoder,
        max_batch_clips: int = 32,
        max_wait_ms: float = 10.0,
        *,
        batching: bool = True,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch_clips < 1:
            raise ValueError(f"max_batch_clips must be >= 1, got {max_batch_clips}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.embedder = embedder
        self.max_batch_clips = max_batch_clips
        self.max_wait_s = max_wait_ms / 1000.0
        self.batching = batching
        self.on_batch = on_batch
        self.recent_batches: collections.deque[tuple[Modality, int]] = collections.deque(
            maxlen=4096
        )
        self._queue: queue.Queue[_Piece | object] = queue.Queue()
        self._carry: _Piece | None = None  # taken from the queue but did not fit the last batch
        self._depth = 0  # clips submitted and not yet run
        self._depth_lock = threading.Lock()
        self._closed = False
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="avid-batcher", daemon=True)
        self._thread.start()

    # -- callers --------------------------------------------------------------------------

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, D)``, blocking until this request's batch has run."""
        return self.submit("video", clips).result()

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` spectrograms -> ``(B, D)``, blocking."""
        return self.submit("audio", spectrograms).result()

    def submit(self, modality: Modality, inputs: torch.Tensor) -> Future[torch.Tensor]:
        """Queue ``inputs`` (n clips) for ``modality``; the future gives the (n, D) rows."""
        if modality not in ("video", "audio"):
            raise ValueError(f"modality must be 'video' or 'audio', got {modality!r}")
        if inputs.ndim < 1 or inputs.shape[0] == 0:
            raise ValueError("a request needs at least one clip")
        chunks = inputs.split(self.max_batch_clips)
        request = _Request(len(chunks))
        with self._submit_lock:
            if self._closed:
                raise BatcherClosed("the batching embedder is shut down")
            with self._depth_lock:
                self._depth += int(inputs.shape[0])
            for i, chunk in enumerate(chunks):
                self._queue.put(_Piece(modality, chunk, request, i))
        return request.future

    @property
    def queue_depth(self) -> int:
        """Clips submitted and not yet through a forward pass."""
        with self._depth_lock:
            return self._depth

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests, finish the ones already queued, stop the thread."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("batcher thread did not stop within %s s", timeout)

    # -- the model thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch, stop = self._gather()
            try:
                self._run(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("batcher failed on a batch")
                for piece in batch:
                    piece.request.fail(exc)
            if stop:
                return

    def _next(self, timeout: float | None) -> _Piece | object:
        if self._carry is not None:
            piece, self._carry = self._carry, None
            return piece
        return self._queue.get(timeout=timeout)

    def _gather(self) -> tuple[list[_Piece], bool]:
        """The next batch, and whether the stop signal was seen (after queued work)."""
        first = self._next(None)
        if not isinstance(first, _Piece):
            return [], True
        batch, clips = [first], first.clips
        if not self.batching:
            return batch, False
        deadline = time.monotonic() + self.max_wait_s
        while clips < self.max_batch_clips:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if not isinstance(item, _Piece):
                self._queue.put(_STOP)  # seen once more after this batch: drain, then stop
                break
            if clips + item.clips > self.max_batch_clips:
                self._carry = item
                break
            batch.append(item)
            clips += item.clips
        return batch, False

    def _run(self, batch: list[_Piece]) -> None:
        groups: dict[tuple[Modality, tuple[int, ...]], list[_Piece]] = {}
        for piece in batch:
            key = (piece.modality, tuple(piece.inputs.shape[1:]))
            groups.setdefault(key, []).append(piece)
        for (modality, _), pieces in groups.items():
            try:
                self._forward(modality, pieces)
            except Exception as exc:
                if len(pieces) == 1:
                    pieces[0].request.fail(exc)
                else:
                    for piece in pieces:  # find out whose input fails
                        try:
                            self._forward(modality, [piece])
                        except Exception as single_exc:
                            piece.request.fail(single_exc)
            finally:
                with self._depth_lock:
                    self._depth -= sum(p.clips for p in pieces)

    def _forward(self, modality: Modality, pieces: list[_Piece]) -> None:
        inputs = torch.cat([p.inputs for p in pieces]) if len(pieces) > 1 else pieces[0].inputs
        encode = self.embedder.embed_video if modality == "video" else self.embedder.embed_audio
        out = encode(inputs)
        if out.shape[0] != inputs.shape[0]:
            raise RuntimeError(f"encoder returned {out.shape[0]} rows for {inputs.shape[0]}")
        self.recent_batches.append((modality, int(inputs.shape[0])))
        if self.on_batch is not None:
            try:
                self.on_batch(modality, int(inputs.shape[0]))
            except Exception:
                log.exception("batch observer failed")
        for piece, rows in zip(pieces, out.split([p.clips for p in pieces]), strict=True):
            piece.request.piece_done(piece.index, rows)
