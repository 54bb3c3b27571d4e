"""Where training and evaluation clips come from: `VideoRecord`s read from a manifest or a folder.

Sources:
  * ``*.jsonl``: one JSON object a line with ``path`` and optional ``label`` (int), ``split``,
    ``duration`` (s); other keys are ignored. AV-Digits' ``manifest.jsonl`` is of this kind.
  * ``*.csv``: a header row naming a ``path`` column and optional ``label``/``split``/``duration``.
  * a folder: every media file under it, sorted; with class sub-folders, a file's label is the
    index of its top-level sub-folder among the sorted sub-folders holding media (else -1).
    A folder holding a ``manifest.jsonl`` is read through that manifest.

Relative paths resolve against the manifest's folder (or the folder itself).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avid_model.media_suffixes import MEDIA_SUFFIXES

MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class VideoRecord:
    """One source media file. `key` is the path as the source wrote it (a stable id);
    `category` the class name where the source has one; -1 / "" / None when unknown."""

    path: Path
    label: int = -1
    split: str = ""
    duration: float | None = None
    key: str = ""
    category: str = ""


def _row_record(row: Mapping[str, Any], base: Path, where: str) -> VideoRecord:
    """A record from a parsed manifest row; ValueError naming `where` for a bad row."""
    raw_path = row.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise ValueError(f"{where}: bad row: needs a non-empty 'path' string")
    try:
        label = row.get("label")
        label = -1 if label in (None, "") else int(label)
        duration = row.get("duration")
        duration = None if duration in (None, "") else float(duration)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad row: {exc}") from exc
    split = row.get("split")
    if split is not None and not isinstance(split, str):
        raise ValueError(f"{where}: bad row: 'split' must be a string, got {split!r}")
    category = row.get("category", "")
    return VideoRecord(
        path=(base / raw_path.strip()).resolve(),
        label=label,
        split=(split or "").strip(),
        duration=duration,
        key=raw_path.strip(),
        category=category if isinstance(category, str) else "",
    )


def _read_jsonl(path: Path) -> list[VideoRecord]:
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: bad row: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{where}: bad row: expected a JSON object")
            records.append(_row_record(row, path.parent, where))
    return records


def _read_csv(path: Path) -> list[VideoRecord]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns:
            raise ValueError(f"{path}:1: the header must name a 'path' column, got {columns}")
        records = []
        for row in reader:
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(clean.values()):
                continue
            records.append(_row_record(clean, path.parent, f"{path}:{reader.line_num}"))
    return records


def _media_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()
    )


def _read_folder(folder: Path) -> list[VideoRecord]:
    files = _media_files(folder)
    tops = sorted({f.relative_to(folder).parts[0] for f in files if f.parent != folder})
    label_of = {name: i for i, name in enumerate(tops)}
    records = []
    for f in files:
        rel = f.relative_to(folder)
        top = rel.parts[0] if len(rel.parts) > 1 else ""
        records.append(
            VideoRecord(
                path=f.resolve(),
                label=label_of.get(top, -1),
                key=rel.as_posix(),
                category=top,
            )
        )
    return records


def _check_files(records: Iterable[VideoRecord], source: Path) -> None:
    missing = [r for r in records if not r.path.is_file()]
    if missing:
        shown = ", ".join(str(r.path) for r in missing[:3])
        raise ValueError(f"{source}: {len(missing)} media file(s) do not exist, e.g. {shown}")


def select_split(
    records: list[VideoRecord], split: str | None, source: str | Path
) -> list[VideoRecord]:
    """Records of `split`. The filter is skipped when `split` is None or no record has a split
    (a plain folder, a CSV without a split column); ValueError when nothing is left."""
    if split is not None and any(r.split for r in records):
        chosen = [r for r in records if r.split == split]
        if not chosen:
            present = sorted({r.split for r in records})
            raise ValueError(f"{source}: no records in split {split!r} (splits: {present})")
        return chosen
    if not records:
        raise ValueError(f"{source}: no media records found")
    return records


def load_records(
    source: str | Path, split: str | None = None, *, check_files: bool = True
) -> list[VideoRecord]:
    """Read a manifest (.jsonl / .csv) or a folder of media files into `VideoRecord`s.

    Args:
        source: manifest file or folder (see the module docstring).
        split: keep only records of this split (ignored when the source has no splits).
        check_files: raise when a listed media file does not exist.
    Raises:
        ValueError: missing source or media file, a bad row (with file and line), or an empty
            selection.
    """
    src = Path(source)
    if src.is_dir() and (src / MANIFEST_NAME).is_file():
        src = src / MANIFEST_NAME
    if src.is_dir():
        records = _read_folder(src)
    elif not src.is_file():
        raise ValueError(f"data source {src} does not exist")
    elif src.suffix.lower() in (".jsonl", ".json"):
        records = _read_jsonl(src)
    elif src.suffix.lower() == ".csv":
        records = _read_csv(src)
    else:
        raise ValueError(f"data source {src}: expected a .jsonl or .csv manifest or a folder")
    records = select_split(records, split, src)
    if check_files:
        _check_files(records, src)
    return records
