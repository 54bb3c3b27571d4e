"""load_records: JSONL / CSV manifests and folders of media files (files need not be media)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.sources import VideoRecord, load_records


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_jsonl_manifest_resolves_paths_and_filters_split(tmp_path: Path) -> None:
    rows = [
        {"path": "train/000000.mp4", "label": 3, "split": "train", "speaker": "en", "onset": 0.4},
        {"path": "test/000001.mp4", "label": 5, "split": "test"},
        {"path": "train/000002.mp4", "label": 1, "split": "train", "duration": 2.5},
    ]
    for row in rows:
        _touch(tmp_path / row["path"])  # type: ignore[operator]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    train = load_records(manifest, "train")
    assert [r.label for r in train] == [3, 1]
    assert train[0] == VideoRecord(
        path=(tmp_path / "train/000000.mp4").resolve(), label=3, split="train",
        key="train/000000.mp4",
    )  # fmt: skip
    assert train[1].duration == 2.5
    assert len(load_records(manifest)) == 3
    assert load_records(tmp_path, "test")[0].label == 5  # a folder with a manifest.jsonl


def test_csv_manifest(tmp_path: Path) -> None:
    _touch(tmp_path / "clips" / "a.mp4")
    _touch(tmp_path / "b.wav")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("path,label\nclips/a.mp4,2\nb.wav,\n")
    records = load_records(csv_file, split="train")  # no split column: the filter is skipped
    assert [(r.path.name, r.label, r.split) for r in records] == [
        ("a.mp4", 2, ""),
        ("b.wav", -1, ""),
    ]


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    for rel in ("dog/x.mp4", "cat/y.MKV", "cat/deeper/z.wav", "bird/notes.txt", "loose.mp4"):
        _touch(tmp_path / rel)
    records = load_records(tmp_path)
    assert [(r.key, r.label, r.category) for r in records] == [
        ("cat/deeper/z.wav", 0, "cat"),
        ("cat/y.MKV", 0, "cat"),
        ("dog/x.mp4", 1, "dog"),
        ("loose.mp4", -1, ""),
    ]
    assert all(r.path.is_absolute() for r in records)


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    _touch(tmp_path / "b.mp4")
    _touch(tmp_path / "a.mp4")
    assert [(r.key, r.label) for r in load_records(tmp_path)] == [("a.mp4", -1), ("b.mp4", -1)]


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no media records"):
        load_records(tmp_path)  # empty folder

    _touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.mp4", "split": "train"}\n{"label": 1}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: bad row.*path"):
        load_records(manifest)
    manifest.write_text('{"path": "a.mp4", "split": "train"}\nnot json\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: bad row"):
        load_records(manifest)
    manifest.write_text('{"path": "a.mp4", "label": "cat"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:1: bad row"):
        load_records(manifest)
    manifest.write_text('{"path": "a.mp4", "split": "train"}\n')
    with pytest.raises(ValueError, match=r"no records in split 'val' \(splits: \['train'\]\)"):
        load_records(manifest, "val")
    manifest.write_text('{"path": "a.mp4"}\n{"path": "gone.mp4"}\n')
    with pytest.raises(ValueError, match=r"1 media file.*gone\.mp4"):
        load_records(manifest)
    assert len(load_records(manifest, check_files=False)) == 2

    csv_file = tmp_path / "m.csv"
    csv_file.write_text("file,label\na.mp4,1\n")
    with pytest.raises(ValueError, match="'path' column"):
        load_records(csv_file)
    csv_file.write_text("path,label\na.mp4,1\na.mp4,one\n")
    with pytest.raises(ValueError, match=r"m\.csv:3: bad row"):
        load_records(csv_file)
    with pytest.raises(ValueError, match=r"expected a \.jsonl or \.csv"):
        load_records(_touch(tmp_path / "list.txt"))
