"""Downstream split files (UCF-101, HMDB-51, ESC-50), hand-written in their own formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.downstream import esc50_records, hmdb51_records, ucf101_records


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


@pytest.fixture
def ucf(tmp_path: Path) -> tuple[Path, Path]:
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    # The real files use CRLF line ends, and a class whose video names differ in case.
    (splits / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    (splits / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
    )
    (splits / "testlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
        b"HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n\r\n"
    )
    for line in (splits / "trainlist01.txt").read_text().splitlines():
        _touch(root / line.split()[0])
    for line in (splits / "testlist01.txt").read_text().split():
        _touch(root / line)
    return root, splits


def test_ucf101(ucf: tuple[Path, Path]) -> None:
    root, splits = ucf
    records = ucf101_records(root, splits, fold=1)
    assert [(r.split, r.label, r.category) for r in records] == [
        ("train", 0, "ApplyEyeMakeup"),
        ("train", 1, "HandstandPushups"),
        ("test", 0, "ApplyEyeMakeup"),
        ("test", 1, "HandstandPushups"),
    ]
    assert records[1].path == root.resolve() / "HandstandPushups/v_HandStandPushups_g08_c01.avi"
    assert records[1].key == "HandstandPushups/v_HandStandPushups_g08_c01.avi"


def test_ucf101_errors(ucf: tuple[Path, Path]) -> None:
    root, splits = ucf
    with pytest.raises(ValueError, match=r"within 1\.\.3"):
        ucf101_records(root, splits, fold=4)
    with pytest.raises(ValueError, match=r"trainlist02\.txt does not exist"):
        ucf101_records(root, splits, fold=2)
    (root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()
    with pytest.raises(ValueError, match="1 listed file"):
        ucf101_records(root, splits)
    assert len(ucf101_records(root, splits, check_files=False)) == 4
    (splits / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1: class id 2"):
        ucf101_records(root, splits, check_files=False)
    (splits / "trainlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi 3\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1: expected"):
        ucf101_records(root, splits, check_files=False)


def test_hmdb51(tmp_path: Path) -> None:
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    (splits / "brush_hair_test_split1.txt").write_text("b1.avi 2 \nb2.avi 1 \n")
    (splits / "brush_hair_test_split2.txt").write_text("b1.avi 1 \nb2.avi 2 \n")
    for rel in ("wave/w1.avi", "wave/w2.avi", "brush_hair/b1.avi", "brush_hair/b2.avi"):
        _touch(root / rel)
    records = hmdb51_records(root, splits, fold=1)
    assert [(r.key, r.split, r.label, r.category) for r in records] == [
        ("brush_hair/b1.avi", "test", 0, "brush_hair"),
        ("brush_hair/b2.avi", "train", 0, "brush_hair"),
        ("wave/w1.avi", "train", 1, "wave"),
        ("wave/w2.avi", "test", 1, "wave"),
    ]
    assert records[0].path == root.resolve() / "brush_hair/b1.avi"
    assert [r.split for r in hmdb51_records(root, splits, fold=2)] == ["train", "test"]
    with pytest.raises(ValueError, match=r"no \*_test_split3\.txt"):
        hmdb51_records(root, splits, fold=3)
    (splits / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi 7\n")
    with pytest.raises(ValueError, match=r"wave_test_split1.txt:2: expected"):
        hmdb51_records(root, splits)


def test_esc50(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        "2-100648-A-43.wav,2,43,chirping_birds,False,100648,A\n"
        "5-103415-A-2.wav,5,2,pig,False,103415,A\n"
    )
    for name in ("1-100032-A-0.wav", "2-100648-A-43.wav", "5-103415-A-2.wav"):
        _touch(tmp_path / "audio" / name)
    records = esc50_records(tmp_path)
    assert [(r.split, r.label, r.category) for r in records] == [
        ("fold1", 0, "dog"),
        ("fold2", 43, "chirping_birds"),
        ("fold5", 2, "pig"),
    ]
    assert records[0].path == tmp_path.resolve() / "audio" / "1-100032-A-0.wav"
    assert [r.split for r in esc50_records(tmp_path, test_fold=2)] == ["train", "test", "train"]
    with pytest.raises(ValueError, match=r"within 1\.\.5"):
        esc50_records(tmp_path, test_fold=6)
    (tmp_path / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category\n1-100032-A-0.wav,9,0,dog\n"
    )
    with pytest.raises(ValueError, match=r"esc50.csv:2: bad row"):
        esc50_records(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        esc50_records(tmp_path / "missing")
