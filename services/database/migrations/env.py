"""Alembic's environment: migrations run on the connection ``services.database.engine``
passes in (``config.attributes["connection"]``), inside its transaction; or, from the
``alembic`` command line, on ``sqlalchemy.url`` of alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (postgresql+psycopg://...) to run migrations")
    with create_engine(url).begin() as own:
        context.configure(connection=own, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
