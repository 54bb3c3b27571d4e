"""Fixtures for the service tests: a tiny random checkpoint and real media files (PyAV).

Media are small (3 s, 64x64, 16 fps, 16 kHz) so the whole service suite stays quick on a
2-core CPU; every file is written once per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avid_model.checkpoint import save_checkpoint
from avid_model.media_writer import write_media
from avid_model.registry import create_model
from services.settings import Settings
from tests.services.postgres_db import fresh_database

FPS = 16
RATE = 16_000
SIZE = 64
# The item databases the store tests run on (``database_url``).
DATABASES = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


@dataclass(frozen=True)
class Media:
    videos: tuple[Path, Path, Path]  # 3 s, with a tone each (different pictures and pitch)
    short_video: Path  # 2 s with a tone
    silent_video: Path  # 3 s, no audio track
    wav: Path  # 3 s tone, audio only
    truncated_mp4: Path  # the first half of an mp4
    text_file: Path  # not media at all


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames(seconds: float, seed: int) -> np.ndarray:
    """A bright square moving over a coloured background, different for each seed."""
    rng = np.random.default_rng(seed)
    n = round(seconds * FPS)
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    out[:] = rng.integers(0, 200, size=3, dtype=np.uint8)
    for i in range(n):
        x = (i * (seed + 2)) % (SIZE - 16)
        out[i, 20:36, x : x + 16] = 255
    return out


def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, seed: int, name: str) -> Path:
    """A randomly initialised avid-tiny checkpoint (``seed`` picks the weights)."""
    torch.manual_seed(seed)
    path = tmp_path_factory.mktemp("checkpoint") / name
    save_checkpoint(create_model("avid-tiny").eval(), path)
    return path


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory, 0, "avid-tiny-test")


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("media")
    videos = []
    for i, freq in enumerate((330.0, 523.0, 880.0)):
        path = root / f"video_{i}.mp4"
        write_media(path, video=frames(3, i), fps=FPS, audio=tone(3, freq), sample_rate=RATE)
        videos.append(path)
    short = root / "short.mp4"
    write_media(short, video=frames(2, 7), fps=FPS, audio=tone(2, 440.0), sample_rate=RATE)
    silent = root / "silent.mp4"
    write_media(silent, video=frames(3, 5), fps=FPS)
    wav = root / "tone.wav"
    write_media(wav, audio=tone(3, 660.0), sample_rate=RATE)
    truncated = root / "truncated.mp4"
    data = videos[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = root / "notes.txt"
    text.write_text("this is not a media file\n" * 20)
    return Media((videos[0], videos[1], videos[2]), short, silent, wav, truncated, text)


SettingsFactory = Callable[..., Settings]


def service_settings(checkpoint: Path, data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "checkpoint": checkpoint,
        "data_dir": data_dir,
        "device": "cpu",
        "batch_max_wait_ms": 2.0,
        "job_workers": 1,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture
def make_settings(checkpoint_dir: Path, tmp_path: Path) -> SettingsFactory:
    """Settings for an app on a fresh data directory of this test; keywords override."""

    def make(**overrides: Any) -> Settings:
        return service_settings(checkpoint_dir, tmp_path / "data", **overrides)

    return make


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (``postgres_db``); skips without a server."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each item database in turn: None (SQLite in the data dir, the default), then a
    PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url
