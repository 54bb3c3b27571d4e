"""``avid`` given a file it cannot use: one clear line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avid_model import commands
from avid_model.cli import main
from avid_model.inference import Embedder

REPO = Path(__file__).resolve().parents[2]


def run_avid(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``avid`` script in a fresh process, as a user runs it (importing this
    checkout's code)."""
    script = Path(sys.executable).with_name("avid")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=300, env=env
    )


def assert_one_line_error(stderr: str, command: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"avid {command}: error: "), stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], stderr


def test_embed_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    done = run_avid("embed", str(missing), "--device", "cpu")
    assert done.returncode == 2
    assert done.stdout == ""
    assert_one_line_error(done.stderr, "embed", "no such media file", str(missing))


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_embed_of_a_directory_or_undecodable_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path, words in (
        (tmp_path, ("is a directory",)),
        (text, ("notes.mp4", "not a media file")),
        (empty, ("empty.wav", "empty")),
    ):
        code, err = run_main(capsys, "embed", str(path), "--device", "cpu")
        assert code == 2
        assert_one_line_error(err, "embed", *words)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_embed_of_an_unreadable_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(b"\x00" * 1000)
    locked.chmod(0)
    code, err = run_main(capsys, "embed", str(locked), "--device", "cpu")
    assert code == 2
    assert_one_line_error(err, "embed", "locked.mp4")


def test_os_errors_of_any_command_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the command cannot read (permission denied, as a non-root user meets it) or
    write (``--json`` into a missing folder) is reported like a missing one."""
    locked = tmp_path / "locked.mp4"

    def denied(self: Embedder, path: Path, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    with monkeypatch.context() as patch:
        patch.setattr(Embedder, "embed_file", denied)
        code, err = run_main(capsys, "embed", str(locked), "--device", "cpu")
    assert code == 2
    assert_one_line_error(err, "embed", f"{locked}: Permission denied")

    sample = tmp_path / "sample.mp4"
    commands.write_sample(sample, seconds=1.0)
    out = tmp_path / "no-such-folder" / "vectors.json"
    code, err = run_main(capsys, "embed", str(sample), "--device", "cpu", "--json", str(out))
    assert code == 2
    assert_one_line_error(err, "embed", str(out), "No such file or directory")


def test_embed_without_weights_named_uses_the_servers_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --checkpoint and no --model: the committed checkpoint, as `avid serve`, never random
    weights in silence."""
    sample = tmp_path / "sample.mp4"
    commands.write_sample(sample, seconds=1.0)
    versions = {}
    for name, extra in (
        ("default", []),
        ("checkpoint", ["--checkpoint", str(commands.DEFAULT_CHECKPOINT)]),
        ("random", ["--model", "avid-tiny"]),
    ):
        out = tmp_path / f"{name}.json"
        code, _ = run_main(
            capsys, "embed", str(sample), "--device", "cpu", "--json", str(out), *extra
        )
        assert code == 0
        versions[name] = json.loads(out.read_text())
    assert versions["default"]["model_version"] == versions["checkpoint"]["model_version"]
    assert versions["default"]["audio"] == versions["checkpoint"]["audio"]
    assert versions["default"]["audio"] != versions["random"]["audio"]


def test_embed_with_no_default_checkpoint_says_how_to_choose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "DEFAULT_CHECKPOINT", tmp_path / "no-model")
    sample = tmp_path / "sample.mp4"
    commands.write_sample(sample, seconds=1.0)
    code, err = run_main(capsys, "embed", str(sample), "--device", "cpu")
    assert code == 2
    assert_one_line_error(err, "embed", "no-model", "--checkpoint", "--model")


def test_embed_without_a_checkpoint_follows_avid_checkpoint_like_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`avid serve` loads $AVID_CHECKPOINT when it is set; `avid embed` loads the same one."""
    import torch

    from avid_model.checkpoint import read_metadata, save_checkpoint
    from avid_model.registry import create_model

    torch.manual_seed(3)
    tiny = tmp_path / "tiny"
    save_checkpoint(create_model("avid-tiny").eval(), tiny)
    sample = tmp_path / "sample.mp4"
    commands.write_sample(sample, seconds=1.0)
    monkeypatch.setenv("AVID_CHECKPOINT", str(tiny))
    out = tmp_path / "out.json"
    code, _ = run_main(capsys, "embed", str(sample), "--device", "cpu", "--json", str(out))
    assert code == 0
    assert json.loads(out.read_text())["model_version"] == read_metadata(tiny)["model_version"]
    monkeypatch.setenv("AVID_CHECKPOINT", str(tmp_path / "gone"))
    code, err = run_main(capsys, "embed", str(sample), "--device", "cpu")
    assert code == 2
    assert_one_line_error(err, "embed", "AVID_CHECKPOINT", "gone", "--checkpoint")
