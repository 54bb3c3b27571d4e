"""What ``AVID_DATABASE_URL`` may be: a PostgreSQL URL (checked without connecting)."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DRIVER = "postgresql+psycopg"
_ACCEPTED = ("postgresql", "postgres", DRIVER)


def _parsed(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            "AVID_DATABASE_URL must be a PostgreSQL URL such as "
            f"postgresql://user:password@host:5432/avid, got {redacted(url)!r} ({exc})"
        ) from exc


def check_database_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database (``postgresql://``, ``postgres://`` or
    ``postgresql+psycopg://``, with a database name); else ``ValueError``."""
    parsed = _parsed(url)
    if parsed.drivername not in _ACCEPTED:
        raise ValueError(
            f"AVID_DATABASE_URL must start with postgresql:// (empty: SQLite in the data "
            f"directory), got {parsed.drivername}://..."
        )
    if not parsed.database:
        raise ValueError(f"AVID_DATABASE_URL names no database: {redacted(url)!r}")
    return url


def driver_url(url: str) -> URL:
    """``url`` for SQLAlchemy with the psycopg 3 driver (``postgresql+psycopg://``)."""
    return _parsed(check_database_url(url)).set(drivername=DRIVER)


def redacted(url: str) -> str:
    """``url`` with its password masked (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<not a URL>"
