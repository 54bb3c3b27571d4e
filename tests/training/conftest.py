"""A small AV-Digits set shared by the training tests (real MP4s written by the generator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.avdigits import generate
from training.avdigits_clip import RenderSettings


@pytest.fixture(scope="session")
def avdigits_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 clips of 64x64 pixels; returns the manifest path."""
    out = tmp_path_factory.mktemp("avdigits")
    return generate(out, clips=24, seed=3, workers=2, settings=RenderSettings(size=64))
