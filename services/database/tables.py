"""The PostgreSQL tables as SQLAlchemy Core sees them (the schema itself is made by the
Alembic migrations; a test checks the two agree)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

metadata = MetaData()

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

items = Table(
    "items",
    metadata,
    # Insertion order (SQLite's rowid): what listings sort and page by.
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("item_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("duration", Float, nullable=False),
    Column("n_video", Integer, nullable=False),
    Column("n_audio", Integer, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("file_name", Text),
    Column("size_bytes", BigInteger),
)

windows = Table(
    "windows",
    metadata,
    Column("row_id", BigInteger, Identity(), primary_key=True),
    Column("item_id", Text, ForeignKey("items.item_id", ondelete="CASCADE"), nullable=False),
    Column("modality", Text, nullable=False),
    Column("window", Integer, nullable=False),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("vector", LargeBinary, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("progress", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("owner", Text),
)

ITEM_COLUMNS = (
    items.c.item_id,
    items.c.kind,
    items.c.model_version,
    items.c.content_hash,
    items.c.duration,
    items.c.n_video,
    items.c.n_audio,
    items.c.metadata,
    items.c.created_at,
    items.c.file_name,
    items.c.size_bytes,
)
