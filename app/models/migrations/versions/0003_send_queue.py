"""the send queue: item and campaign statuses of the engine, lease indexes, campaign names

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

Statuses are plain strings without CHECK constraints (``base.str_enum``), so renaming a
value is an UPDATE of the rows that hold it. Every change here is an added column, an
UPDATE or an index: nothing needs SQLite's copy-the-table batch mode, which would drop and
recreate ``campaigns`` under the foreign keys of ``queue_items`` (a cascading delete).

``campaigns.name_key`` follows 0002: unique, NOT NULL where the backend can add that in
place (SQLite cannot, so there the ORM fills it on every insert and rename).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.models.base import NAME_KEY_LENGTH, UtcDateTime, name_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

QUEUE_RENAMES = {"pending": "queued", "sending": "in_flight"}
CAMPAIGN_RENAMES = {"sending": "running", "sent": "completed", "failed": "completed"}
# What a downgrade writes back; statuses the old code never knew fall to their nearest kin.
QUEUE_BACK = {"queued": "pending", "in_flight": "sending", "deferred": "pending", "held": "pending"}
CAMPAIGN_BACK = {"running": "sending", "completed": "sent", "cancelled": "failed"}

CLAIMABLE_WHERE = "status IN ('queued', 'deferred')"
IN_FLIGHT_WHERE = "status = 'in_flight'"
_DUPLICATE_MARK = "\x1f"


def _binary(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def _rename(table: str, renames: dict[str, str]) -> None:
    rows = sa.table(table, sa.column("status", sa.String))
    for old, new in renames.items():
        op.get_bind().execute(sa.update(rows).where(rows.c.status == old).values(status=new))


def _fill_campaign_keys() -> None:
    bind = op.get_bind()
    rows = sa.table("campaigns", sa.column("id"), sa.column("name"), sa.column("name_key"))
    seen: set[str] = set()
    for row_id, name in bind.execute(sa.select(rows.c.id, rows.c.name).order_by(rows.c.id)):
        key = name_key(name)
        if key in seen:  # campaigns had no unique name before: keep both, mark the later one
            key = f"{key}{_DUPLICATE_MARK}{row_id}"
        seen.add(key)
        bind.execute(sa.update(rows).where(rows.c.id == row_id).values(name_key=key))


def _drop_duplicate_recipients() -> None:
    """Keep the first row of a recipient queued twice in one campaign (the new unique rule)."""
    items = sa.table(
        "queue_items", sa.column("id"), sa.column("campaign_id"), sa.column("recipient")
    )
    bind = op.get_bind()
    # Read first, delete after: MariaDB refuses a DELETE whose subquery reads its own table.
    seen: set[tuple[object, str]] = set()
    doomed: list[int] = []
    query = sa.select(items.c.id, items.c.campaign_id, items.c.recipient).order_by(items.c.id)
    for row_id, campaign_id, recipient in bind.execute(query):
        if (campaign_id, recipient) in seen:
            doomed.append(row_id)
        seen.add((campaign_id, recipient))
    for start in range(0, len(doomed), 1000):
        bind.execute(sa.delete(items).where(items.c.id.in_(doomed[start : start + 1000])))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    mariadb = dialect in ("mysql", "mariadb")

    _rename("queue_items", QUEUE_RENAMES)
    _rename("campaigns", CAMPAIGN_RENAMES)

    # campaigns: a unique name key, and when the campaign ran
    if mariadb:
        op.alter_column(
            "campaigns",
            "name",
            type_=mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"),
            existing_nullable=False,
        )
    op.add_column("campaigns", sa.Column("name_key", _binary(NAME_KEY_LENGTH), nullable=True))
    op.add_column("campaigns", sa.Column("started_at", UtcDateTime(), nullable=True))
    op.add_column("campaigns", sa.Column("finished_at", UtcDateTime(), nullable=True))
    _fill_campaign_keys()
    if dialect != "sqlite":
        op.alter_column(
            "campaigns", "name_key", existing_type=_binary(NAME_KEY_LENGTH), nullable=False
        )
    op.create_index("ix_campaigns_name_key", "campaigns", ["name_key"], unique=True)

    # queue_items: why an item is held, which server took it, one row per recipient
    op.add_column("queue_items", sa.Column("held_reason", sa.String(200), nullable=True))
    op.add_column("queue_items", sa.Column("server_name", sa.String(200), nullable=True))
    if mariadb:
        op.alter_column(
            "queue_items",
            "recipient",
            type_=mysql.VARCHAR(320, charset="utf8mb4", collation="utf8mb4_bin"),
            existing_nullable=False,
        )
    _drop_duplicate_recipients()
    op.create_index(
        "uq_queue_items_campaign_id_recipient",
        "queue_items",
        ["campaign_id", "recipient"],
        unique=True,
    )
    # The old index served no query the engine makes; the two below match its hot ones.
    op.drop_index("ix_queue_items_claim", table_name="queue_items")
    op.create_index(
        "ix_queue_items_claimable",
        "queue_items",
        ["status", "next_attempt_at"],
        postgresql_where=sa.text(CLAIMABLE_WHERE),
        sqlite_where=sa.text(CLAIMABLE_WHERE),
    )
    op.create_index(
        "ix_queue_items_lease_owner",
        "queue_items",
        ["lease_owner", "lease_expires_at"],
        postgresql_where=sa.text(IN_FLIGHT_WHERE),
        sqlite_where=sa.text(IN_FLIGHT_WHERE),
    )
    # Rows queued before this revision may lack a due time; the claim compares it directly.
    items = sa.table("queue_items", sa.column("next_attempt_at"), sa.column("status"))
    op.get_bind().execute(
        sa.update(items)
        .where(items.c.next_attempt_at.is_(None), items.c.status.in_(["queued", "deferred"]))
        .values(next_attempt_at=sa.func.now())
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_queue_items_lease_owner", table_name="queue_items")
    op.drop_index("ix_queue_items_claimable", table_name="queue_items")
    op.create_index("ix_queue_items_claim", "queue_items", ["status", "lease_expires_at"])
    # MariaDB keeps the unique index while the foreign key on campaign_id needs an index:
    # give it a plain one first.
    if dialect in ("mysql", "mariadb"):
        op.create_index("ix_queue_items_campaign_id", "queue_items", ["campaign_id"])
    op.drop_index("uq_queue_items_campaign_id_recipient", table_name="queue_items")
    # Plain DROP COLUMN (SQLite >= 3.35), never a batch copy of tables others refer to.
    op.drop_column("queue_items", "server_name")
    op.drop_column("queue_items", "held_reason")
    op.drop_index("ix_campaigns_name_key", table_name="campaigns")
    for column in ("finished_at", "started_at", "name_key"):
        op.drop_column("campaigns", column)
    _rename("queue_items", QUEUE_BACK)
    _rename("campaigns", CAMPAIGN_BACK)
