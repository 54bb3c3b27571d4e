"""An SQLAlchemy engine on ``AVID_DATABASE_URL`` (psycopg 3), its schema at Alembic's head.

``open_engine`` connects once and runs ``upgrade head`` inside one transaction that holds an
advisory lock, so several processes starting at once on one database migrate it once, one
after the other. Every failure to reach, log in to or migrate the database is a
``DatabaseError`` whose message names the URL (password masked) and the cause.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from services.database.url import driver_url, redacted

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock keys: one for migrations, one that every write transaction of the
# item database takes (PostgreSQL's stand-in for SQLite's BEGIN IMMEDIATE).
MIGRATION_LOCK = 0x41564944_0001
WRITE_LOCK = 0x41564944_0002
CONNECT_TIMEOUT_S = 10


class DatabaseError(RuntimeError):
    """The database of ``AVID_DATABASE_URL`` cannot be used (unreachable, refused, ...)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this package's migrations (on ``connection``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema to head inside ``connection``'s transaction, one process at a time."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated to head; ``DatabaseError`` if not."""
    engine = create_engine(
        driver_url(url),
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        with engine.begin() as connection:
            upgrade(connection)
    except SQLAlchemyError as exc:
        engine.dispose()
        cause = getattr(exc, "orig", None) or exc
        raise DatabaseError(f"cannot use the database {redacted(url)}: {cause}") from exc
    return engine


def check_database(url: str) -> None:
    """Connect to ``url`` and migrate it (what ``avid serve`` does before it starts)."""
    open_engine(url).dispose()
