"""``services.uploads``: streamed, hashed, size-capped, never named after the client's file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from avid_model.errors import EmptyMediaError, MediaTooLargeError
from services.uploads import display_name, safe_extension, save_upload


def test_stores_under_sha256_with_whitelisted_extension(tmp_path: Path) -> None:
    data = b"\x00\x01media bytes" * 1000
    stored = save_upload(io.BytesIO(data), "Holiday Clip.MP4", tmp_path, 10**6, chunk_bytes=777)
    sha = hashlib.sha256(data).hexdigest()
    assert stored.path == tmp_path / f"{sha}.mp4"
    assert stored.sha256 == sha
    assert stored.size == len(data)
    assert stored.created
    assert stored.path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [stored.path.name]  # no temporaries left

    again = save_upload(io.BytesIO(data), "copy.mp4", tmp_path, 10**6)
    assert again.path == stored.path
    assert not again.created
    again.discard()  # did not create it: keeps the file
    assert stored.path.exists()


@pytest.mark.parametrize(
    ("client_name", "ext"),
    [
        ("../../etc/passwd.wav", ".wav"),
        ("C:\\evil\\..\\x.flac", ".flac"),
        ("payload.exe", ""),
        ("archive.tar.gz", ""),
        ("no_extension", ""),
        (None, ""),
        ("", ""),
        (".mp4", ""),  # a dot-file, not an extension
    ],
)
def test_client_name_is_never_a_path(tmp_path: Path, client_name: str | None, ext: str) -> None:
    dest = tmp_path / "media"
    stored = save_upload(io.BytesIO(b"abc"), client_name, dest, 100)
    assert stored.path.parent == dest
    assert stored.path.name == hashlib.sha256(b"abc").hexdigest() + ext
    assert safe_extension(client_name) == ext
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["media", stored.path.name])


def test_over_the_limit_is_too_large_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(MediaTooLargeError, match="over the limit of 1000 bytes") as err:
        save_upload(io.BytesIO(b"x" * 1001), "big.mp4", tmp_path, 1000, chunk_bytes=100)
    assert err.value.code == "too_large"
    assert list(tmp_path.iterdir()) == []
    assert save_upload(io.BytesIO(b"x" * 1000), "ok.mp4", tmp_path, 1000).size == 1000


def test_empty_upload_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(EmptyMediaError, match="empty") as err:
        save_upload(io.BytesIO(b""), "nothing.wav", tmp_path, 1000)
    assert err.value.code == "empty"
    assert list(tmp_path.iterdir()) == []


def test_unique_names_give_private_copies(tmp_path: Path) -> None:
    a = save_upload(io.BytesIO(b"same"), "q.wav", tmp_path, 100, unique_name=True)
    b = save_upload(io.BytesIO(b"same"), "q.wav", tmp_path, 100, unique_name=True)
    assert a.path != b.path
    assert a.sha256 == b.sha256
    assert a.created
    assert b.created
    a.discard()
    assert not a.path.exists()
    assert b.path.exists()


def test_display_name_is_a_short_base_name() -> None:
    assert display_name("/home/me/clip.mp4") == "clip.mp4"
    assert display_name("..\\..\\clip.mp4") == "clip.mp4"
    assert display_name(None) == "upload"
    assert len(display_name("a" * 500 + ".mp4")) == 80
