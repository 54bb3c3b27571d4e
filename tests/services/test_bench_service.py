"""Smoke test of ``bench/service.py``: the quick path, embedded mode, batching on.

Marked slow: it starts ``avid serve`` in a subprocess (15-20 s on a loaded 2-core CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.service import COLUMNS, main


@pytest.mark.slow
def test_quick_embedded_run_writes_the_table_fields(tmp_path: Path) -> None:
    out = tmp_path / "service.json"
    payload = main(["--quick", "--modes", "embedded", "--batching", "on", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert len(payload["loadavg before"]) == 3
    assert len(payload["loadavg after"]) == 3
    (row,) = payload["rows"]
    assert set(COLUMNS) <= set(row)
    assert (row["mode"], row["batching"], row["clients"]) == ("embedded", "on", 1)
    assert row["requests"] == 2
    assert row["errors"] == 0
    assert row["req/s"] > 0
    assert row["clips/s"] == pytest.approx(3 * row["req/s"])
    assert 0 < row["p50 ms"] <= row["p99 ms"]
    assert row["mean batch"] == 3  # one file's three windows per forward
