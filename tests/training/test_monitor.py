"""The learning / collapse monitor: the spread measure, the alarm, the held-out check, and the
events a real (tiny) training run writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.training.test_trainer import read_log, small_config
from training.monitor import (
    batch_spread,
    collapse_alarms,
    held_out_health,
    monitor_records,
)
from training.trainer import prepare_model, train

HEALTH_FIELDS = {
    "a2v_r1",
    "a2v_r10",
    "v2a_r1",
    "v2a_r10",
    "chance_r1",
    "chance_r10",
    "video_spread",
    "audio_spread",
    "clips",
}


def test_batch_spread_on_known_inputs() -> None:
    assert batch_spread(torch.ones(5, 3)) == pytest.approx(1.0)
    assert batch_spread(torch.eye(4)) == pytest.approx(0.0, abs=1e-12)
    assert batch_spread(torch.tensor([[2.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)
    emb = F.normalize(torch.randn(7, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    sims = emb @ emb.T
    off_diagonal = sims[~torch.eye(7, dtype=torch.bool)].mean()
    assert batch_spread(emb) == pytest.approx(float(off_diagonal), abs=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        batch_spread(torch.ones(1, 3))


def test_alarm_fires_on_collapsed_embeddings_only() -> None:
    gen = torch.Generator().manual_seed(1)
    collapsed = torch.randn(1, 128, generator=gen) + 0.01 * torch.randn(64, 128, generator=gen)
    spread = torch.randn(64, 128, generator=gen)
    health = {"video_spread": batch_spread(collapsed), "audio_spread": batch_spread(spread)}
    assert health["video_spread"] > 0.99
    assert abs(health["audio_spread"]) < 0.1
    assert collapse_alarms(health, 0.95) == [("video", health["video_spread"])]
    assert collapse_alarms({"video_spread": 0.5, "audio_spread": 0.3}, 0.95) == []


def test_monitor_records_skips_a_missing_or_tiny_split(avdigits_small: Path) -> None:
    records, why_not = monitor_records(avdigits_small, "val", 256)
    assert len(records) >= 2
    assert why_not == ""
    assert {r.split for r in records} == {"val"}
    assert len(monitor_records(avdigits_small, "val", 2)[0]) == 2
    for split, clips in (("nonexistent", 256), ("val", 1)):
        records, why_not = monitor_records(avdigits_small, split, clips)
        assert records == []
        assert "monitor off" in why_not
        assert repr(split) in why_not


def test_held_out_health_leaves_training_state_alone(avdigits_small: Path, tmp_path: Path) -> None:
    model = prepare_model(small_config(avdigits_small, tmp_path))
    records, _ = monitor_records(avdigits_small, "val", 256)
    model.train()
    rng = torch.get_rng_state()
    health = held_out_health(model, records, batch_size=4)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert set(health) == HEALTH_FIELDS
    assert health["clips"] == len(records)
    assert health["chance_r1"] == pytest.approx(1 / len(records), abs=1e-6)
    assert 0.0 <= health["a2v_r1"] <= health["a2v_r10"] <= 1.0
    assert -1.0 <= health["video_spread"] <= 1.0


def test_training_run_writes_monitor_and_spread_events(
    avdigits_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Train on the 4 test clips (one step an epoch, to keep it quick), monitor the 4 val clips;
    # collapse_cosine=-1: every spread exceeds it, so the alarm path runs too.
    quick = ("data.split=test", "run.collapse_cosine=-1")
    run = tmp_path / "run"
    result = train(small_config(avdigits_small, run, *quick))
    assert (result.epochs_done, result.steps) == (2, 2)
    events = read_log(run)
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == result.steps
    assert all({"video_spread", "audio_spread"} <= set(e) for e in steps)
    monitors = [e for e in events if e["event"] == "monitor"]
    assert [(e["epoch"], e["step"]) for e in monitors] == [(1, 1), (2, 2)]  # every epoch
    assert all(HEALTH_FIELDS | {"epoch", "step"} <= set(e) for e in monitors)
    assert monitors[0]["clips"] == 4
    collapses = [e for e in events if e["event"] == "collapse"]
    assert sorted(str(e["modality"]) for e in collapses) == ["audio", "audio", "video", "video"]
    assert all("spread" in e for e in collapses)
    captured = capsys.readouterr()
    assert "monitor epoch 1" in captured.out
    assert "embeddings are collapsing" in captured.err

    # A split the manifest lacks: one line saying so, no crash.
    off = tmp_path / "off"
    train(small_config(avdigits_small, off, *quick, "run.monitor_split=nonexistent"))
    events = read_log(off)
    assert not any(e["event"] in ("monitor", "collapse") for e in events)
    assert sum(e["event"] == "monitor_off" for e in events) == 1
