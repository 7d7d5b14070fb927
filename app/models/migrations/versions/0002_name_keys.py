"""one rule for names on every backend: a unique normalised key, exact names on MariaDB

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:00:00

SQLite accepted ``s1`` beside ``S1``, MariaDB refused it (and ``A1`` beside ``Ä1``, its
default collation ignores accents), PostgreSQL accepted both. From here on every named
table has ``name_key`` (NFKC, case-folded, see ``app.models.base.name_key``) under a
unique index, and on MariaDB the name columns compare byte for byte like elsewhere.

Rows that an older, laxer backend let in and that now share a key keep their names; the
later ones get a key suffixed with a control character and their id, which no valid name
can produce, so the index can be built and the administrator can rename them at leisure.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.models.base import NAME_KEY_LENGTH, name_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# table, name column, its length, columns that scope the uniqueness
NAMED_TABLES = (
    ("delivery_servers", "name", 200, ()),
    ("user_groups", "name", 200, ()),
    ("users", "username", 100, ()),
    ("dns_templates", "name", 200, ("kind",)),
)
_DUPLICATE_MARK = "\x1f"


def _key_type() -> sa.types.TypeEngine[str]:
    return sa.String(NAME_KEY_LENGTH).with_variant(
        mysql.VARCHAR(NAME_KEY_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
        "mysql",
        "mariadb",
    )


def _fill_keys(table: str, column: str, scope: tuple[str, ...]) -> None:
    bind = op.get_bind()
    rows = sa.table(table, sa.column("id"), sa.column(column), sa.column("name_key"))
    for part in scope:
        rows.append_column(sa.column(part))
    query = sa.select(rows.c.id, rows.c[column], *(rows.c[part] for part in scope))
    seen: set[tuple[object, ...]] = set()
    for row in bind.execute(query.order_by(rows.c.id)):
        key = name_key(row[1])
        scoped = (*row[2:], key)
        if scoped in seen:
            key = f"{key}{_DUPLICATE_MARK}{row[0]}"
        seen.add(scoped)
        bind.execute(sa.update(rows).where(rows.c.id == row[0]).values(name_key=key))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, column, length, scope in NAMED_TABLES:
        if dialect in ("mysql", "mariadb"):
            op.alter_column(
                table,
                column,
                type_=mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"),
                existing_nullable=False,
            )
        op.add_column(table, sa.Column("name_key", _key_type(), nullable=True))
        _fill_keys(table, column, scope)
        if dialect != "sqlite":
            # SQLite can only add NOT NULL by copying the table, which its foreign keys make
            # risky; there the ORM fills the key on every insert and rename instead.
            op.alter_column(table, "name_key", existing_type=_key_type(), nullable=False)
        index = f"ix_{table}_{'_'.join(scope) + '_' if scope else ''}name_key"
        op.create_index(index, table, [*scope, "name_key"], unique=True)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, column, length, scope in reversed(NAMED_TABLES):
        index = f"ix_{table}_{'_'.join(scope) + '_' if scope else ''}name_key"
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("name_key")
        if dialect in ("mysql", "mariadb"):
            op.alter_column(table, column, type_=mysql.VARCHAR(length), existing_nullable=False)
