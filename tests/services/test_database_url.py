"""``AVID_DATABASE_URL``: what it may be, what a bad one says (a clear message and exit
status 2 from ``avid serve``, never a traceback), and the schema its migrations make."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect

from avid_model.cli import main
from services.database.engine import DatabaseError, open_engine
from services.database.tables import metadata
from services.database.url import check_database_url, driver_url, redacted
from services.settings import Settings, get_settings

UNREACHABLE = "postgresql://avid:s3cret@127.0.0.1:1/avid"  # nothing listens on port 1


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """``AVID_*`` variables set for the test, read afresh by ``get_settings``."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_empty_means_sqlite_and_postgresql_urls_are_taken() -> None:
    assert Settings(database_url="").database_url is None
    assert Settings().database_url is None
    for url in ("postgresql://u:p@db:5432/avid", "postgres://db/avid", "postgresql+psycopg://db/a"):
        assert Settings(database_url=url).database_url == url
    assert driver_url("postgresql://u:p@db:5432/avid").drivername == "postgresql+psycopg"
    assert driver_url("postgres://db/avid").drivername == "postgresql+psycopg"
    assert "s3cret" not in redacted(UNREACHABLE)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/avid", "must start with postgresql://"),
        ("sqlite:///items.db", "must start with postgresql://"),
        ("postgresql://db:5432", "names no database"),
        ("not a url", "must be a PostgreSQL URL"),
    ],
)
def test_a_malformed_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_database_url(url)
    with pytest.raises(ValidationError, match=message):
        Settings(database_url=url)


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError) as caught:
        open_engine(UNREACHABLE)
    message = str(caught.value)
    assert "cannot use the database postgresql://avid:***@127.0.0.1:1/avid" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (UNREACHABLE, "cannot use the database postgresql://avid:***@127.0.0.1:1/avid"),
        ("mysql://db/avid", "invalid setting"),
    ],
)
def test_avid_serve_says_what_is_wrong_and_exits(
    environment: pytest.MonkeyPatch,
    checkpoint_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    url: str,
    message: str,
) -> None:
    environment.setenv("AVID_DATABASE_URL", url)
    argv = ["serve", "--checkpoint", str(checkpoint_dir), "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("avid serve: error:")
    assert message in err
    assert "AVID_DATABASE_URL" in err
    assert "Traceback" not in err
    assert "s3cret" not in err


@pytest.mark.postgres
def test_the_migrations_make_the_tables_the_queries_use(postgres_url: str) -> None:
    open_engine(postgres_url).dispose()
    open_engine(postgres_url).dispose()  # a second start finds the schema at head
    engine = create_engine(driver_url(postgres_url))
    try:
        found = inspect(engine)
        for table in metadata.sorted_tables:
            columns = {c["name"]: c for c in found.get_columns(table.name)}
            assert set(columns) == {c.name for c in table.columns}, table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, column
        assert set(found.get_table_names()) == {*metadata.tables, "alembic_version"}
    finally:
        engine.dispose()
