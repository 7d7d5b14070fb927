"""The race-safe increment of the send ledgers, ``user_send_counts`` and ``server_send_counts``.

Each ledger row is a counter ``sent`` under a composite primary key, and several send
engines add to the same row at once. One statement per row does it, an upsert in the
backend's own words (``ON CONFLICT DO UPDATE`` on PostgreSQL and SQLite, ``ON DUPLICATE KEY
UPDATE`` on MariaDB): the addition happens inside the database, never as a read-modify-write
in Python, and the database itself settles two engines inserting the same new row.

Why not "UPDATE, and INSERT in a savepoint if no row, UPDATE again on a duplicate": on
MariaDB (REPEATABLE READ) an UPDATE that finds no row takes a gap lock, two engines then
both hold it, and each one's INSERT waits for the other's: InnoDB kills one transaction as
a deadlock, with everything else the engine wrote in it (its queue acknowledgements too).

The row is selected from the parent it refers to (``INSERT ... SELECT ... FROM users WHERE
id = ...``): when the parent is gone, nothing is inserted and the caller's transaction
goes on, where a failed foreign key would have aborted it on PostgreSQL.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, literal, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.models.base import Base


def add_sent(session: Session, model: type[Base], key: dict[str, Any], number: int) -> bool:
    """Add ``number`` to ``model``'s ``sent`` at ``key`` (its whole primary key, including
    the one foreign key column), in the caller's transaction, in one statement.

    False when nothing was counted because the row the foreign key names is gone.
    """
    table = cast(Table, cast(Any, model).__table__)
    (reference,) = table.foreign_keys  # each ledger belongs to one parent row
    owner_column = reference.parent.name
    columns = [*key, "sent"]
    values = [
        reference.column if name == owner_column else literal(value, table.c[name].type)
        for name, value in key.items()
    ]
    rows = select(*values, literal(number, table.c.sent.type)).where(
        reference.column == key[owner_column]
    )
    backend = session.get_bind().dialect.name
    statement: Any
    if backend in ("mysql", "mariadb"):
        statement = mysql.insert(table).from_select(columns, rows)
        statement = statement.on_duplicate_key_update(sent=table.c.sent + statement.inserted.sent)
    else:
        dialect_module = postgresql if backend == "postgresql" else sqlite
        statement = dialect_module.insert(table).from_select(columns, rows)
        statement = statement.on_conflict_do_update(
            index_elements=[column.name for column in table.primary_key.columns],
            set_={"sent": table.c.sent + statement.excluded.sent},
        )
    result = cast(CursorResult[Any], session.execute(statement))
    return bool(result.rowcount)
