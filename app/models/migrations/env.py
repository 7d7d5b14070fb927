"""Alembic environment: runs on the connection handed in by ``upgrade_schema``.

For ``alembic revision --autogenerate`` during development, set ``POSTROOM_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.models import Base
from app.models.database import create_db_engine, resolve_database_url

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_db_engine(resolve_database_url())
    with engine.begin() as own_connection:
        _run(own_connection)
