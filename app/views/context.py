"""What every page shares: the open database, background work, and change notifications.

Pages never touch a session on the GUI thread. They ``await context.read(fn, ...)`` or
``context.write(fn, ...)``, which run a service function in the executor, and they start
such coroutines with ``context.spawn`` so the task is kept alive and its failure reported:
an expected ``PostroomError`` as one sentence beside the page, anything else to the crash
dialog.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from PySide6.QtCore import QObject, Signal

from app.models.database import Database
from app.services import runner
from app.services.errors import PostroomError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

P = ParamSpec("P")
R = TypeVar("R")


class NotConnected(PostroomError):
    def __init__(self) -> None:
        super().__init__("No database is open; choose one with File > Switch Database.")


class AppContext(QObject):
    """One per window. ``changed(entity)`` tells pages to reload after any save."""

    changed = Signal(str)  # "delivery_server", "user_group", "user", "dns_template", ...
    database_changed = Signal()
    user_error = Signal(str)  # a one-sentence, actionable message for the status area
    # No Signal(bool) anywhere in the views: emitting a Python bool through one corrupts
    # its reference count in PySide6 6.12 and aborts the interpreter at exit.

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.database: Database | None = None
        # asyncio keeps only weak references to tasks: hold them until they finish.
        self._tasks: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------ database

    def set_database(self, database: Database | None) -> None:
        self.database = database
        self.database_changed.emit()

    def require_database(self) -> Database:
        if self.database is None:
            raise NotConnected()
        return self.database

    async def read(
        self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return await runner.read(self.require_database(), fn, *args, **kwargs)

    async def write(
        self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return await runner.write(self.require_database(), fn, *args, **kwargs)

    async def cipher(self) -> Any:
        """The database's vault (created on first use), opened off the GUI thread."""
        from app.services.vault import open_vault

        return await self.write(open_vault, create=True)

    async def in_executor(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # ------------------------------------------------------------------ tasks

    def spawn(
        self,
        coroutine: Coroutine[Any, Any, Any],
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Run ``coroutine`` on the loop; a PostroomError goes to ``on_error`` (or user_error)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)

        def done(finished: asyncio.Future[Any]) -> None:
            self._tasks.discard(finished)
            if finished.cancelled():
                return
            exc = finished.exception()
            if exc is None:
                return
            if isinstance(exc, PostroomError):
                (on_error or self.user_error.emit)(str(exc))
            else:
                sys.excepthook(type(exc), exc, exc.__traceback__)

        task.add_done_callback(done)
        return task

    def has_pending_work(self) -> bool:
        return bool(self._tasks)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
