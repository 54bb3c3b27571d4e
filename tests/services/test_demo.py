"""``avid demo`` (the README's main job) over real HTTP: serve, ingest, search, report."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from avid_model.cli import main
from training.avdigits import generate
from training.avdigits_clip import RenderSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def demo_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-clips")
    return generate(out, clips=12, seed=5, workers=1, settings=RenderSettings(size=64))


def test_demo_ingests_searches_and_is_idempotent(
    demo_clips: Path, checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "demo",
        "--clips",
        str(demo_clips),
        "--split",
        "",
        "--checkpoint",
        str(checkpoint_dir),
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(_free_port()),
        "--instance-queries",
        "4",
        "--exit",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ingested 12 clips" in out
    assert "(12 embedded now" in out
    rows = re.findall(r"^(audio -> video|video -> audio)\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert [(r[0], r[1]) for r in rows] == [("audio -> video", "12"), ("video -> audio", "12")]
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    assert re.search(r"R@1 [\d.]+, R@10 [\d.]+ over 4 queries", out)
    assert out.count("the videos that match it best") == 3
    # Run again on the same data directory: everything is already stored.
    argv[argv.index("--port") + 1] = str(_free_port())
    assert main(argv) == 0
    assert "(0 embedded now" in capsys.readouterr().out


def test_demo_bad_manifest_is_a_clear_error(
    tmp_path: Path, checkpoint_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"path": "a.mp4"}\n')
    code = main(["demo", "--clips", str(manifest), "--checkpoint", str(checkpoint_dir), "--exit"])
    assert code == 2
    assert "not an AV-Digits row" in capsys.readouterr().err
    missing = str(tmp_path / "missing.jsonl")
    code = main(["demo", "--clips", missing, "--checkpoint", str(checkpoint_dir), "--exit"])
    assert code == 2
    assert "cannot read" in capsys.readouterr().err
