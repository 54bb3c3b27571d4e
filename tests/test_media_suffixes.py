"""One list of media suffixes: what training's folder scan reads is what the service stores."""

from __future__ import annotations

from pathlib import Path

from avid_model.media_suffixes import AUDIO_SUFFIXES, MEDIA_SUFFIXES
from services.uploads import safe_extension
from training.sources import load_records


def test_training_and_uploads_accept_the_same_suffixes(tmp_path: Path) -> None:
    names = [
        f"clip{suffix.upper() if i % 2 else suffix}" for i, suffix in enumerate(MEDIA_SUFFIXES)
    ]
    for name in [*names, "notes.txt", "image.png"]:
        (tmp_path / name).write_bytes(b"x")
    found = sorted(r.key for r in load_records(tmp_path))
    assert found == sorted(names)  # every suffix in any case, and nothing else
    assert "clip.ts" in found or "clip.TS" in found  # the one uploads took and training did not
    assert {safe_extension(name) for name in names} == set(MEDIA_SUFFIXES)
    assert safe_extension("notes.txt") == ""
    assert safe_extension("image.png") == ""
    assert AUDIO_SUFFIXES <= MEDIA_SUFFIXES
