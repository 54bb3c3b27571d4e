"""Throwaway PostgreSQL databases on the server at 127.0.0.1:5432 (trust auth, user
postgres; ``AVID_TEST_POSTGRES`` names another server): each test gets a database of its
own, with a random name, dropped afterwards. Without a server the tests skip, saying why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg
import pytest

from services.database.scratch import throwaway_database

SERVER = os.environ.get("AVID_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@cache
def unreachable_reason() -> str | None:
    """Why no test database can be made (None: the server answers)."""
    try:
        with psycopg.connect(SERVER, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {SERVER} ({str(exc).strip().splitlines()[0]})"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database's URL (``postgresql://``), dropped on exit; skips the test
    when there is no server."""
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_database(SERVER, "avid_test") as url:
        yield url
