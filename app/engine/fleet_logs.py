"""The engines' logs as one stream of lines, from one container or many at once.

Each container's log stream is read by a thread of its own (Docker sends them separately);
lines meet in a queue, so following ten containers shows each line as it comes. ``close()``
may be called from any thread (a dashboard's stop button, Ctrl-C's handler): it closes the
HTTP streams, which ends the reading threads, and ends the iteration.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LogLine:
    container: str
    text: str


_END = object()


class LogStream:
    """Iterate for ``LogLine``s; ``close()`` to stop early (also a context manager)."""

    def __init__(
        self, containers: list[tuple[str, Any]], *, follow: bool, lines: int | None
    ) -> None:
        self._lines: queue.Queue[object] = queue.Queue(maxsize=10_000)
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pending = len(containers)
        self._threads = [
            threading.Thread(
                target=self._read,
                args=(name, container, follow, lines),
                name=f"logs-{name}",
                daemon=True,
            )
            for name, container in containers
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, container: Any, follow: bool, lines: int | None) -> None:
        try:
            stream = container.logs(
                stream=True, follow=follow, tail="all" if lines is None else lines
            )
            with self._lock:
                if self._closed.is_set():
                    stream.close()
                    return
                self._streams.append(stream)
            partial = b""
            for chunk in stream:
                partial += chunk
                *complete, partial = partial.split(b"\n")
                for line in complete:
                    self._put(LogLine(name, line.decode("utf-8", "replace")))
            if partial:
                self._put(LogLine(name, partial.decode("utf-8", "replace")))
        except Exception:  # a closed stream ends its read with whatever the socket raises
            if not self._closed.is_set():
                self._put(LogLine(name, "(the log stream of this container ended early)"))
        finally:
            self._put(_END)

    def _put(self, item: object) -> None:
        while not self._closed.is_set():
            try:
                self._lines.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[LogLine]:
        while self._pending and not self._closed.is_set():
            try:
                item = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _END:
                self._pending -= 1
            elif isinstance(item, LogLine):
                yield item

    def close(self) -> None:
        """End the streams and the iteration; safe from any thread, more than once."""
        with self._lock:
            self._closed.set()
            streams, self._streams = self._streams, []
        for stream in streams:
            # a stream its reader already closed may complain; it is closed either way
            with contextlib.suppress(Exception):
                stream.close()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
