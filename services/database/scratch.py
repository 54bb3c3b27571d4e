"""Throwaway PostgreSQL databases: a new one with a random name on a server, dropped on exit
(``WITH (FORCE)``: connections left open by the user do not keep it). For tests and
benchmarks that must not touch a real deployment's database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

__all__ = ["throwaway_database"]


@contextmanager
def throwaway_database(server: str, prefix: str) -> Iterator[str]:
    """``server``: a ``postgresql://`` URL of a database to connect to (e.g. ``.../postgres``);
    yields the URL of a new empty database named ``{prefix}_{random}`` on that server. A
    psycopg.Error from creating it propagates."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
