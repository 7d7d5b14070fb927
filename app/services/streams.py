"""Long-running blocking streams (log following, Docker events, stats polling) off the executor.

The loop's default executor is what database reads run on (``runner.read``/``write``). A log
follower or an event stream holds its thread for as long as it runs, so a dashboard following
six engines would starve every read. These streams get threads of their own instead:

- :class:`BlockingStream` runs one blocking iterator in a dedicated daemon thread and hands its
  items to asyncio through a bounded queue (the reader waits when the consumer is behind, so
  memory stays bounded and nothing is dropped);
- :func:`polling_executor` is a separate small pool for periodic blocking calls (stats).

Cancelling must work even while the thread is blocked inside a read: docker-py's log and event
streams only return when their response is closed *from another thread*. So a stream is given
a ``close`` callable, and :meth:`BlockingStream.cancel` calls it from the caller's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_POLL_WORKERS: Final = 8
# How often a reader blocked on a full queue looks whether it was cancelled.
_PUT_RECHECK_SECONDS: Final = 0.2

_polling_executor: concurrent.futures.ThreadPoolExecutor | None = None
_polling_lock = threading.Lock()


def polling_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The pool for periodic blocking calls (stats samples), apart from the default executor."""
    global _polling_executor
    with _polling_lock:
        if _polling_executor is None:
            _polling_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=_POLL_WORKERS, thread_name_prefix="postroom-poll"
            )
        return _polling_executor


class _End:
    """Queued after the last item; carries the reader's exception, if it failed."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class BlockingStream(Generic[T]):
    """Iterate ``async for item in stream`` over a blocking iterator read in its own thread.

    Use it as ``async with stream: async for item in stream: ...`` so that leaving the loop
    early (break, an exception, a cancelled task) stops the reader at once.

    ``open_stream`` is called in that thread (connecting may block too). ``close`` is called
    by :meth:`cancel` from another thread to unblock a read in progress; it may be None for
    sources whose reads return on their own. The iteration ends after cancel, or when the
    source ends; an exception from the source is raised to the consumer.
    """

    def __init__(
        self,
        open_stream: Callable[[], Iterator[T]],
        close: Callable[[], None] | None = None,
        *,
        name: str = "stream",
        buffer: int = 1000,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must hold at least one item")
        self._open = open_stream
        self._close = close
        self._name = name
        self._buffer = buffer
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[T | _End] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start reading; called by the first ``async for`` if not before. Needs a running loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self._buffer)
        self._thread = threading.Thread(
            target=self._read_all, name=f"postroom-{self._name}", daemon=True
        )
        self._thread.start()

    def cancel(self) -> None:
        """Stop reading: safe from any thread, idempotent, unblocks a read in progress."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        if self._close is not None:
            try:
                self._close()
            except Exception:  # closing an already broken stream is not worth a crash
                log.debug("closing stream %s failed", self._name, exc_info=True)
        if self._loop is not None and self._queue is not None and not self._loop.is_closed():
            # Wake a consumer waiting on an empty queue.
            self._loop.call_soon_threadsafe(self._wake_consumer)

    def _wake_consumer(self) -> None:
        assert self._queue is not None
        if self._queue.empty():
            self._queue.put_nowait(_End(None))

    def _put(self, item: T | _End) -> bool:
        """Hand one item to the loop, waiting while the queue is full; False once cancelled."""
        assert self._loop is not None and self._queue is not None
        while not self._cancelled.is_set() or isinstance(item, _End):
            try:
                future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False
            try:
                future.result(timeout=_PUT_RECHECK_SECONDS)
                return True
            except concurrent.futures.TimeoutError:
                future.cancel()
                if isinstance(item, _End):
                    return False  # the consumer is gone or stuck; don't wait forever
        return False

    def _read_all(self) -> None:
        error: BaseException | None = None
        try:
            for item in self._open():
                if self._cancelled.is_set() or not self._put(item):
                    break
        except BaseException as exc:  # handed to the consumer, who decides
            if not self._cancelled.is_set():
                error = exc
        self._put(_End(error))

    async def __aenter__(self) -> BlockingStream[T]:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Leaving an ``async for`` early does not close its generator until garbage collection;
        # ``async with stream:`` stops the reader thread at once instead.
        self.cancel()

    async def __aiter__(self) -> AsyncIterator[T]:
        self.start()
        assert self._queue is not None
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                if self._cancelled.is_set():
                    return
                yield item
        finally:
            self.cancel()
