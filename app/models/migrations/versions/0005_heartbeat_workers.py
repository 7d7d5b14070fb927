"""engine heartbeats: workers per campaign, and an index on the engine name

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00

Each send engine keeps one heartbeat row for itself (``campaign_id`` NULL) and one per
campaign it sends; ``workers`` is how many of its workers sent for that campaign during
the last beat, what the dashboard shows per campaign and container. An added column with
a server default: no table copy on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "engine_heartbeats",
        sa.Column("workers", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_engine_heartbeats_engine", "engine_heartbeats", ["engine"])


def downgrade() -> None:
    op.drop_index("ix_engine_heartbeats_engine", table_name="engine_heartbeats")
    with op.batch_alter_table("engine_heartbeats") as batch:
        batch.drop_column("workers")
