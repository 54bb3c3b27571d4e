"""``BatchingEmbedder``: callers get their own rows, requests really share forward passes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from avid_model.checkpoint import load_checkpoint
from avid_model.inference import Embedder, InferenceSettings
from services.batcher import BatcherClosed, BatchingEmbedder


class RecordingEncoder:
    """Row i of the output is (first input value of row i, batch size): checkable by callers.

    ``delay`` makes each forward slow so requests pile up behind it; a NaN in a row makes
    the whole forward raise (an input that breaks the model)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self.started = threading.Event()

    def _encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        self.started.set()
        self.calls.append((modality, x.shape[0]))
        time.sleep(self.delay)
        if torch.isnan(x).any():
            raise ValueError("NaN input")
        first = x.reshape(x.shape[0], -1)[:, 0]
        return torch.stack([first, torch.full_like(first, x.shape[0])], dim=1)

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self._encode("video", clips)

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        return self._encode("audio", spectrograms)


def ramp(start: int, n: int, shape: tuple[int, ...] = (2, 3)) -> torch.Tensor:
    """n clips whose first values are start, start+1, ... (identifiable rows)."""
    return torch.arange(start, start + n, dtype=torch.float32).reshape(n, 1, 1).expand(n, *shape)


def test_concurrent_callers_get_exactly_their_own_vectors(checkpoint_dir: Path) -> None:
    model = load_checkpoint(checkpoint_dir)
    embedder = Embedder(
        model, InferenceSettings(device="cpu", precision="fp32", channels_last=False, batch_size=64)
    )
    batcher = BatchingEmbedder(embedder, max_batch_clips=8, max_wait_ms=30)
    gen = torch.Generator().manual_seed(1)
    requests = []
    for i in range(8):
        n = 1 + i % 3
        if i % 2:
            requests.append(("audio", torch.randn(n, 1, 200, 257, generator=gen)))
        else:
            requests.append(("video", torch.rand(n, 3, 8, 32, 32, generator=gen)))
    barrier = threading.Barrier(len(requests))

    def call(req: tuple[str, torch.Tensor]) -> torch.Tensor:
        barrier.wait()
        modality, x = req
        return batcher.embed_video(x) if modality == "video" else batcher.embed_audio(x)

    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            results = list(pool.map(call, requests))
    finally:
        batcher.close()
    for (modality, x), got in zip(requests, results, strict=True):
        want = embedder.embed_video(x) if modality == "video" else embedder.embed_audio(x)
        assert got.shape == (x.shape[0], 128)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # Requests met in shared forward passes: fewer forwards than requests.
    assert len(batcher.recent_batches) < len(requests)
    assert max(n for _, n in batcher.recent_batches) > 3


def test_requests_queued_behind_a_forward_are_combined() -> None:
    encoder = RecordingEncoder(delay=0.15)
    batcher = BatchingEmbedder(encoder, max_batch_clips=32, max_wait_ms=50)
    first = batcher.submit("video", ramp(0, 1))
    assert encoder.started.wait(5)  # the thread is busy with `first`
    futures = [batcher.submit("video", ramp(100 * i, 2)) for i in range(1, 6)]
    assert batcher.queue_depth == 1 + 10
    futures.append(batcher.submit("audio", ramp(1000, 3)))
    for i, future in enumerate(futures[:-1], start=1):
        rows = future.result(5)
        assert rows[:, 0].tolist() == [100 * i, 100 * i + 1]
        assert rows[0, 1] == 10  # ran in one forward with the four other video requests
    assert futures[-1].result(5)[:, 0].tolist() == [1000, 1001, 1002]
    assert first.result(5)[:, 0].tolist() == [0]
    batcher.close()
    assert list(batcher.recent_batches) == [("video", 1), ("video", 10), ("audio", 3)]
    assert encoder.calls == list(batcher.recent_batches)
    assert batcher.queue_depth == 0


def test_a_request_larger_than_a_batch_is_split_and_reassembled() -> None:
    encoder = RecordingEncoder()
    batcher = BatchingEmbedder(encoder, max_batch_clips=4, max_wait_ms=0)
    rows = batcher.embed_audio(ramp(0, 10))
    batcher.close()
    assert rows[:, 0].tolist() == list(range(10))
    assert [n for _, n in encoder.calls] == [4, 4, 2]


def test_batches_never_exceed_the_clip_limit() -> None:
    encoder = RecordingEncoder(delay=0.05)
    batcher = BatchingEmbedder(encoder, max_batch_clips=5, max_wait_ms=100)
    blocker = batcher.submit("video", ramp(0, 1))
    assert encoder.started.wait(5)
    futures = [batcher.submit("video", ramp(10 * i, 3)) for i in range(1, 5)]
    for i, future in enumerate(futures, start=1):
        assert future.result(5)[:, 0].tolist() == [10 * i, 10 * i + 1, 10 * i + 2]
    blocker.result(5)
    batcher.close()
    assert all(n <= 5 for _, n in encoder.calls)
    assert sum(n for _, n in encoder.calls) == 13


def test_without_batching_each_request_runs_alone() -> None:
    encoder = RecordingEncoder(delay=0.05)
    batcher = BatchingEmbedder(encoder, max_batch_clips=32, max_wait_ms=50, batching=False)
    futures = [batcher.submit("video", ramp(10 * i, 2)) for i in range(4)]
    for i, future in enumerate(futures):
        assert future.result(5)[:, 0].tolist() == [10 * i, 10 * i + 1]
    batcher.close()
    assert [n for _, n in encoder.calls] == [2, 2, 2, 2]


def test_a_failing_input_fails_only_its_own_future() -> None:
    encoder = RecordingEncoder(delay=0.1)
    batcher = BatchingEmbedder(encoder, max_batch_clips=32, max_wait_ms=50)
    blocker = batcher.submit("video", ramp(0, 1))
    assert encoder.started.wait(5)
    bad_input = ramp(50, 2).clone()
    bad_input[1, 0, 0] = float("nan")
    good = batcher.submit("video", ramp(10, 2))
    bad = batcher.submit("video", bad_input)
    other = batcher.submit("video", ramp(20, 1))
    with pytest.raises(ValueError, match="NaN"):
        bad.result(5)
    assert good.result(5)[:, 0].tolist() == [10, 11]
    assert other.result(5)[:, 0].tolist() == [20]
    blocker.result(5)
    # The batcher keeps serving after a failure.
    assert batcher.embed_video(ramp(7, 1))[:, 0].tolist() == [7]
    batcher.close()


def test_shutdown_finishes_queued_work_then_refuses() -> None:
    encoder = RecordingEncoder(delay=0.05)
    batcher = BatchingEmbedder(encoder, max_batch_clips=2, max_wait_ms=0)
    futures = [batcher.submit("audio", ramp(i, 1)) for i in range(5)]
    batcher.close()
    assert [f.result(0)[0, 0].item() for f in futures] == [0, 1, 2, 3, 4]
    assert not batcher.is_running
    assert not batcher._thread.is_alive()
    with pytest.raises(BatcherClosed):
        batcher.submit("audio", ramp(0, 1))
    batcher.close()  # idempotent


def test_rejects_bad_requests() -> None:
    batcher = BatchingEmbedder(RecordingEncoder())
    with pytest.raises(ValueError, match="modality"):
        batcher.submit("text", ramp(0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one clip"):
        batcher.submit("video", torch.empty(0, 3))
    batcher.close()
    with pytest.raises(ValueError, match="max_batch_clips"):
        BatchingEmbedder(RecordingEncoder(), max_batch_clips=0)
