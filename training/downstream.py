"""Records for the downstream benchmarks users bring: UCF-101, HMDB-51 and ESC-50.

Nothing is downloaded; each loader reads the data set's own split files:

  * UCF-101 (``ucfTrainTestlist/``): ``classInd.txt`` ("1 ApplyEyeMakeup"),
    ``trainlist0{k}.txt`` ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1") and
    ``testlist0{k}.txt`` ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"); videos under the root.
  * HMDB-51 (``testTrainMulti_7030_splits/``): ``<class>_test_split{k}.txt`` with lines
    "<video>.avi <id>" (1 train, 2 test, 0 unused); videos at ``<root>/<class>/<video>.avi``;
    labels are the indices of the sorted class names.
  * ESC-50: ``meta/esc50.csv`` (filename, fold, target, category, ...), clips in ``audio/``;
    split ``fold{k}``, or "train"/"test" for one cross-validation fold.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from training.sources import VideoRecord

_HMDB_SPLITS = {"1": "train", "2": "test"}


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of the non-blank lines of a split file."""
    if not path.is_file():
        raise ValueError(f"split file {path} does not exist")
    with path.open(encoding="utf-8") as f:  # universal newlines: the UCF files use CRLF
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                yield number, fields


def _check_files(records: list[VideoRecord], what: str) -> None:
    missing = [r for r in records if not r.path.is_file()]
    if missing:
        raise ValueError(
            f"{what}: {len(missing)} listed file(s) do not exist under the root, "
            f"e.g. {missing[0].path}"
        )


def _check_fold(fold: int, folds: int) -> None:
    if not 1 <= fold <= folds:
        raise ValueError(f"fold must be within 1..{folds}, got {fold}")


def _cv_split(fold: int, test_fold: int) -> str:
    return "test" if fold == test_fold else "train"


def ucf101_records(
    video_root: str | Path,
    split_dir: str | Path,
    *,
    fold: int = 1,
    check_files: bool = True,
) -> list[VideoRecord]:
    """UCF-101 split `fold` (1-3): train records then test records, labels 0-based."""
    _check_fold(fold, 3)
    root, splits = Path(video_root).resolve(), Path(split_dir)
    classes: dict[str, int] = {}
    names: dict[int, str] = {}
    for number, fields in _lines(splits / "classInd.txt"):
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{splits / 'classInd.txt'}:{number}: expected '<id> <class>'")
        classes[fields[1].lower()] = int(fields[0]) - 1
        names[int(fields[0]) - 1] = fields[1]

    records = []
    for split in ("train", "test"):
        listing = splits / f"{split}list{fold:02d}.txt"
        for number, fields in _lines(listing):
            rel = fields[0]
            folder = rel.split("/")[0].lower()
            if folder not in classes or len(fields) > 2 or "/" not in rel:
                raise ValueError(f"{listing}:{number}: expected '<Class>/<video> [id]', got {rel}")
            label = classes[folder]
            if len(fields) == 2 and fields[1] != str(label + 1):
                raise ValueError(
                    f"{listing}:{number}: class id {fields[1]} does not match folder {rel}"
                )
            records.append(
                VideoRecord(
                    path=root / rel, label=label, split=split, key=rel, category=names[label]
                )
            )
    if check_files:
        _check_files(records, f"UCF-101 fold {fold}")
    return records


def hmdb51_records(
    video_root: str | Path,
    split_dir: str | Path,
    *,
    fold: int = 1,
    check_files: bool = True,
) -> list[VideoRecord]:
    """HMDB-51 split `fold` (1-3): videos marked 1 (train) or 2 (test); 0 (unused) skipped."""
    _check_fold(fold, 3)
    root, splits = Path(video_root).resolve(), Path(split_dir)
    suffix = f"_test_split{fold}.txt"
    files = sorted(splits.glob(f"*{suffix}"))
    if not files:
        raise ValueError(f"no *{suffix} files in {splits}")
    records = []
    for label, listing in enumerate(files):
        category = listing.name[: -len(suffix)]
        for number, fields in _lines(listing):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{listing}:{number}: expected '<video> <0|1|2>'")
            if fields[1] == "0":
                continue
            key = f"{category}/{fields[0]}"
            records.append(
                VideoRecord(
                    path=root / key,
                    label=label,
                    split=_HMDB_SPLITS[fields[1]],
                    key=key,
                    category=category,
                )
            )
    if check_files:
        _check_files(records, f"HMDB-51 fold {fold}")
    return records


def esc50_records(
    root: str | Path, *, test_fold: int | None = None, check_files: bool = True
) -> list[VideoRecord]:
    """ESC-50 clips from ``meta/esc50.csv``, split ``fold{k}`` (k = 1..5); with `test_fold`,
    split "test" for that fold and "train" for the others (5-fold cross-validation)."""
    if test_fold is not None:
        _check_fold(test_fold, 5)
    base = Path(root).resolve()
    meta = base / "meta" / "esc50.csv"
    if not meta.is_file():
        raise ValueError(f"ESC-50 metadata {meta} does not exist")
    records = []
    with meta.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"filename", "fold", "target", "category"}
        if not need <= set(reader.fieldnames or []):
            raise ValueError(f"{meta}:1: header must name {sorted(need)}")
        for row in reader:
            where = f"{meta}:{reader.line_num}"
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: bad row: {exc}") from exc
            if not 1 <= fold <= 5 or not row["filename"]:
                raise ValueError(f"{where}: bad row: fold {fold}, filename {row['filename']!r}")
            split = f"fold{fold}" if test_fold is None else _cv_split(fold, test_fold)
            records.append(
                VideoRecord(
                    path=base / "audio" / row["filename"],
                    label=target,
                    split=split,
                    key=row["filename"],
                    category=row["category"],
                )
            )
    if not records:
        raise ValueError(f"{meta} lists no clips")
    if check_files:
        _check_files(records, "ESC-50")
    return records
