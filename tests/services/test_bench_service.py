"""Smoke tests of ``bench/service.py``: the quick path, embedded mode, batching on (on the
default storage, and on the scale-out settings).

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
    assert row["clips/s"] == pytest.approx(2 * row["req/s"])  # 3 s clips: 2 s windows at 0, 1
    assert 0 < row["p50 ms"] <= row["p99 ms"]
    assert row["mean batch"] == 2  # one file's two windows per forward


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_scale_out_run_uses_its_own_database_and_drops_it(tmp_path: Path) -> None:
    """``--storage scale-out``: Milvus Lite in the data dir and a PostgreSQL database of the
    run's own, gone afterwards."""
    import psycopg

    from bench.service import POSTGRES_SERVER
    from tests.services.postgres_db import unreachable_reason

    if (reason := unreachable_reason()) is not None:
        pytest.skip(reason)
    out = tmp_path / "service.json"
    quick = ["--quick", "--modes", "embedded", "--batching", "on"]
    payload = main([*quick, "--storage", "scale-out", "--json", str(out)])
    (row,) = payload["rows"]
    assert (row["storage"], row["errors"], row["requests"]) == ("scale-out", 0, 2)
    with psycopg.connect(POSTGRES_SERVER) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'avid_bench_%'")
        assert left.fetchall() == []
