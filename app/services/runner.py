"""Run a session-taking service function off the event loop.

The GUI awaits these on the qasync loop so the window never waits on the database; the
CLI can call the same service functions directly. One implementation, two front ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from app.models.database import Database

P = ParamSpec("P")
R = TypeVar("R")


async def read(
    db: Database, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """``fn(session, ...)`` in a worker thread, in a read-only session."""

    def work() -> R:
        with db.session() as session:
            return fn(session, *args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(None, work)


async def write(
    db: Database, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """``fn(session, ...)`` in a worker thread, committed on success, rolled back on error."""

    def work() -> R:
        with db.transaction() as session:
            return fn(session, *args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(None, work)
