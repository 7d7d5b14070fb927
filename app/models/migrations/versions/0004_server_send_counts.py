"""the delivery servers' send ledger: messages accepted per server and UTC hour

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:00:00

A new table only: the hourly and daily quotas of ``delivery_servers`` are sums over it
(``app.services.quotas``). Its rows go with their server (ON DELETE CASCADE). Nothing that
exists changes, so the downgrade drops the table and loses only these counts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_send_counts",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("hour", UtcDateTime(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["delivery_servers.id"],
            name=op.f("fk_server_send_counts_server_id_delivery_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "hour", name=op.f("pk_server_send_counts")),
    )


def downgrade() -> None:
    op.drop_table("server_send_counts")
