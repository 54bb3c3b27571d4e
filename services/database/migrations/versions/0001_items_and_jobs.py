"""Items, their window vectors, store settings and job records.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_meta",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("item_id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("n_video", sa.Integer(), nullable=False),
        sa.Column("n_audio", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("file_name", sa.Text()),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.CheckConstraint("kind IN ('video', 'audio')", name="items_kind"),
        sa.UniqueConstraint("seq", name="items_seq"),
        # The dedup rule: one item per content per model version, across every process.
        sa.UniqueConstraint("content_hash", "model_version", name="items_content"),
    )
    op.create_index("items_by_version", "items", ["model_version"])
    op.create_table(
        "windows",
        sa.Column("row_id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "item_id",
            sa.Text(),
            sa.ForeignKey("items.item_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("modality", sa.Text(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("modality IN ('video', 'audio')", name="windows_modality"),
    )
    op.create_index("windows_by_space", "windows", ["modality", "model_version", "row_id"])
    op.create_index("windows_by_item", "windows", ["item_id", "modality", "window"])
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Text(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("result", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        # The data directory (``data_dir_id``) of the process that accepted the job: the
        # one that resumes it after a restart.
        sa.Column("owner", sa.Text()),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="jobs_state"),
    )
    op.create_index("jobs_by_state", "jobs", ["state", "created_at"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("windows")
    op.drop_table("items")
    op.drop_table("store_meta")
