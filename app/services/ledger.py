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

from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.models.base import Base

# A ledger write runs in the caller's transaction: an ORM session (the console, the CLI)
# or a plain connection (a send engine, which records outcomes on one).
LedgerWriter = Session | Connection


@cache
def _upsert(table_name: str, backend: str, key_columns: tuple[str, ...]) -> Any:
    """The upsert of one ledger, built once per backend with bound parameters.

    Built once and reused, SQLAlchemy finds its compiled form in its cache at once; a
    statement made afresh per call (with literal values) costs a cache-key walk each
    time, which a send engine recording hundreds of batches a second would feel.
    """
    table = Base.metadata.tables[table_name]
    (reference,) = table.foreign_keys  # each ledger belongs to one parent row
    owner_column = reference.parent.name
    columns = [*key_columns, "sent"]
    values = [
        reference.column if name == owner_column else bindparam(name, type_=table.c[name].type)
        for name in key_columns
    ]
    rows = select(*values, bindparam("sent", type_=table.c.sent.type)).where(
        reference.column == bindparam("owner_id", type_=reference.column.type)
    )
    statement: Any
    if backend in ("mysql", "mariadb"):
        statement = mysql.insert(table).from_select(columns, rows)
        return statement.on_duplicate_key_update(sent=table.c.sent + statement.inserted.sent)
    dialect_module = postgresql if backend == "postgresql" else sqlite
    statement = dialect_module.insert(table).from_select(columns, rows)
    return statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={"sent": table.c.sent + statement.excluded.sent},
    )


def add_sent(writer: LedgerWriter, model: type[Base], key: dict[str, Any], number: int) -> bool:
    """Add ``number`` to ``model``'s ``sent`` at ``key`` (its whole primary key, including
    the one foreign key column), in the caller's transaction, in one statement.

    False when nothing was counted because the row the foreign key names is gone.
    """
    table = cast(Table, cast(Any, model).__table__)
    (reference,) = table.foreign_keys
    owner_column = reference.parent.name
    bind = writer.get_bind() if isinstance(writer, Session) else writer
    statement = _upsert(table.name, bind.dialect.name, tuple(key))
    params = {name: value for name, value in key.items() if name != owner_column}
    params |= {"sent": number, "owner_id": key[owner_column]}
    result = cast(CursorResult[Any], writer.execute(statement, params))
    return bool(result.rowcount)
