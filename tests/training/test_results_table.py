"""docs/results.md's generator: trains, evaluates and tabulates rows for real, on a small set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from training.results_table import main, parse_args, results_document, row_minutes


def _small_base(tmp_path: Path) -> Path:
    config = {
        "model": {"name": "avid-tiny", "crop_size": 32},
        "data": {"workers": 0, "stats_clips": 8, "cache": False},
        "loss": {"negatives": 8, "cma": {"pos_k": 2, "within_negatives": 4}},
        "optim": {"batch_size": 4, "lr": 1e-3},
        "run": {"device": "cpu", "log_every": 1},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_rows_train_evaluate_resume_and_tabulate(avdigits_small: Path, tmp_path: Path) -> None:
    runs, doc = tmp_path / "runs", tmp_path / "results.md"
    common = [
        "--data",
        str(avdigits_small.parent),
        "--runs",
        str(runs),
        "--config",
        str(_small_base(tmp_path)),
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--workers",
        "0",
        "--out",
        str(doc),
    ]
    # CMA continues the Cross-AVID run of the same seed (test_trainer covers that chain):
    # refused until that row exists.
    assert main([*common, "--rows", "cma"]) == 2
    assert not (runs / "cma-s0").exists()
    assert main([*common, "--rows", "random", "cross"]) == 0
    cross = json.loads((runs / "cross-s0" / "eval.json").read_text())
    assert cross["training"]["epochs"] == 1
    assert cross["training"]["objective"] == "nce"
    assert (runs / "cross-s0" / "export" / "avid.json").is_file()
    random = json.loads((runs / "random-s0" / "eval.json").read_text())
    assert random["training"] == {"minutes": 0.0}
    text = doc.read_text()
    for label in ("| random init |", "| Cross-AVID |"):
        assert label in text
    assert "Self-AVID |" not in text  # rows not run are left out, not invented
    assert "| AVID+CMA" not in text
    assert "Cross-AVID > Joint-AVID: not measured" in text
    n_test = sum('"split": "test"' in line for line in avdigits_small.read_text().splitlines())
    assert f"Of the {n_test} test clips, the test-time video window" in text
    # A second call reuses every eval.json instead of training again.
    before = (runs / "cross-s0" / "eval.json").stat().st_mtime_ns
    assert main([*common, "--rows", "cross"]) == 0
    assert (runs / "cross-s0" / "eval.json").stat().st_mtime_ns == before


def _result(key: str, seed: int, p1: float, probe: float) -> dict[str, Any]:
    retrieval = {
        "instance": {"R@1": 0.01, "R@10": 0.1},
        "class": {"P@1": p1, "mAP": p1 / 2},
    }
    return {
        "row": key,
        "seed": seed,
        "training": {"objective": "infonce", "minutes": 2.0, "steps": 10},
        "sizes": {"train": 1000, "test": 1000},
        "linear_probe": {
            "video/conv5x": probe,
            "video/embedding": probe,
            "audio/block4": 0.3,
            "audio/encoder": 0.5,
        },
        "knn": {"video": 0.2, "audio": 0.3},
        "retrieval": {"audio->video": retrieval, "video->audio": retrieval},
    }


def test_claims_are_read_off_the_numbers() -> None:
    by_row = {
        "cross": [_result("cross", 0, 0.9, 0.9), _result("cross", 1, 0.7, 0.9)],
        "joint": [_result("joint", 0, 0.5, 0.95)],
        "self": [_result("self", 0, 0.6, 0.5)],
    }
    text = results_document(by_row, "cmd")
    assert "| Cross-AVID | infonce | 0,1 | 2.0 | 10 | 0.900 (0.90–0.90) |" in text
    assert "0.800 (0.70–0.90)" in text  # mean (min–max) over seeds
    assert "Cross-AVID > Joint-AVID: a→v class P@1 0.800 vs 0.500: holds" in text
    assert "video probe conv5x 0.900 vs 0.950: does not hold" in text
    assert "Joint-AVID > Self-AVID: a→v class P@1 0.500 vs 0.600: does not hold" in text
    assert "AVID+CMA ≥ Cross-AVID: not measured" in text
    # 0.95 vs 0.93 on 1,000 items is under two standard errors (0.021): no verdict.
    by_row["joint"] = [_result("joint", 0, 0.78, 0.95)]
    by_row["cross"] = [_result("cross", 0, 0.80, 0.93)]
    text = results_document(by_row, "cmd")
    assert "Cross-AVID > Joint-AVID: a→v class P@1 0.800 vs 0.780: within noise" in text
    assert "video probe conv5x 0.930 vs 0.950: within noise" in text


def test_supervised_row_is_the_upper_bound_each_row_is_measured_against() -> None:
    by_row = {
        "random": [_result("random", 0, 0.1, 0.1)],
        "cross": [_result("cross", 0, 0.12, 0.5)],
        "supervised": [_result("supervised", 0, 0.11, 0.9)],
    }
    text = results_document(by_row, "cmd")
    assert "## The supervised upper bound" in text
    assert "reach video probe conv5x 0.900, audio probe tower 0.500 (chance 0.100)" in text
    assert "Even with the labels" not in text
    assert "- Cross-AVID: video probe conv5x 0.50, audio probe tower 1.00\n" in text
    assert "- random init: video probe conv5x 0.00, audio probe tower 1.00\n" in text
    # Both bounds below 0.95: the table says the towers are broken, not the method.
    assert "video probe conv5x and audio probe tower are below 0.95 with the labels" in text
    assert "Why the video tower falls short" in text
    # 0.11 vs chance 0.1 on 1,000 items is within noise: no share is computed for it.
    by_row["supervised"] = [_result("supervised", 0, 0.11, 0.11)]
    text = results_document(by_row, "cmd")
    assert "Even with the labels, video probe conv5x stays within noise of chance" in text
    assert "- Cross-AVID: audio probe tower 1.00\n" in text
    by_row["supervised"] = [_result("supervised", 0, 0.97, 0.96)]
    text = results_document(by_row, "cmd")
    assert "The bound gates every reading above: audio probe tower is below 0.95" in text
    assert "Why the video tower falls short" not in text
    assert "Both are at or above" not in text
    # Both bounds met: the rows below are read as the method's, and no cause is given.
    healthy = _result("supervised", 0, 0.11, 0.96)
    healthy["linear_probe"]["audio/encoder"] = 0.955
    by_row["supervised"] = [healthy]
    text = results_document(by_row, "cmd")
    assert "Both are at or above 0.95: the towers can learn the task" in text
    assert "The bound gates" not in text
    assert "## The supervised upper bound" not in results_document({"cross": by_row["cross"]}, "")


def test_the_findings_are_stated_for_the_model_they_were_measured_on() -> None:
    by_row = {"cross": [_result("cross", 0, 0.5, 0.5)]}
    text = results_document(by_row, "cmd", model="avid-summary-spectrum")
    assert "Temporal (3,1,1) convolutions delay learning; they do not stop it" in text
    assert "The published NCE objective" in text
    assert "## Why the model first learnt nothing" not in results_document(by_row, "cmd")


def test_row_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["--minutes", "3", "--row-minutes", "cross=20", "supervised=12.5"])
    assert row_minutes(args, "cross") == 20.0
    assert row_minutes(args, "supervised") == 12.5
    assert row_minutes(args, "self") == 3.0
    for bad in ("nosuchrow=3", "cross", "cross=soon", "cross=-1"):
        with pytest.raises(SystemExit):
            parse_args(["--row-minutes", bad])
        assert "--row-minutes" in capsys.readouterr().err


def test_paper_rows_train_on_the_memory_bank_and_the_inbatch_row_on_the_batch(
    tmp_path: Path,
) -> None:
    from training.config import load_config
    from training.results_table import PAPER_NEGATIVES, PAPER_TEMPERATURE, ROWS, _memory_bank

    # A base config with the in-batch recipe (no memory negatives, a softer temperature) still
    # gives the paper's rows the memory bank, with the spec's negatives and temperature; a base
    # with its own count keeps it; the inbatch row keeps the base's temperature.
    inbatch_base = tmp_path / "inbatch.yaml"
    inbatch_base.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "avid-tiny"},
                "loss": {
                    "objective": "infonce",
                    "positives": "batch",
                    "negatives": 0,
                    "temperature": 0.2,
                },
            }
        )
    )
    small_base = _small_base(tmp_path)
    rows = {row.key: row for row in ROWS}
    for key in ("self", "joint", "cross", "cma"):
        assert rows[key].memory_bank
        config = load_config(inbatch_base, [*_memory_bank(inbatch_base), *rows[key].overrides])
        assert (config.loss.positives, config.loss.negatives) == ("memory", PAPER_NEGATIVES)
        assert config.loss.temperature == PAPER_TEMPERATURE
        config = load_config(small_base, [*_memory_bank(small_base), *rows[key].overrides])
        assert (config.loss.positives, config.loss.negatives) == ("memory", 8)
    assert not rows["inbatch"].memory_bank
    config = load_config(small_base, ["loss.objective=nce", *rows["inbatch"].overrides])
    assert (config.loss.positives, config.loss.negatives) == ("batch", 0)
    assert (config.loss.objective, config.loss.within_coeff) == ("infonce", 0.0)
    config = load_config(inbatch_base, rows["inbatch"].overrides)
    assert config.loss.temperature == 0.2


def test_only_the_supervised_row_drops_the_spectrum_path_and_only_where_there_is_one(
    tmp_path: Path,
) -> None:
    from training.config import ModelSection, load_config
    from training.results_table import ROWS, _spectrum_dropout

    spectrum, plain = tmp_path / "spectrum.yaml", tmp_path / "plain.yaml"
    spectrum.write_text(yaml.safe_dump({"model": {"name": "avid-summary-spectrum"}}))
    plain.write_text(yaml.safe_dump({"model": {"name": "avid-tiny"}}))
    rows = {row.key: row for row in ROWS}
    assert _spectrum_dropout(rows["supervised"], spectrum) == ["model.spectrum_dropout=0.5"]
    assert load_config(spectrum, _spectrum_dropout(rows["supervised"], spectrum)).model == (
        ModelSection(name="avid-summary-spectrum", spectrum_dropout=0.5)
    )
    assert _spectrum_dropout(rows["supervised"], plain) == []  # avid-tiny has no such path
    # The self-supervised rows never get it: it stops the in-batch recipe from starting.
    assert all(_spectrum_dropout(row, spectrum) == [] for row in ROWS if row.key != "supervised")
