"""Blocking streams in their own threads: delivery, back-pressure, errors and cancel.

The sources are real blocking reads on a socket pair, the same kind of read a Docker log or
event stream blocks in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Iterator

import pytest

from app.services.streams import BlockingStream, polling_executor


def socket_lines(sock: socket.socket) -> Iterator[str]:
    with sock.makefile("r", encoding="utf-8") as lines:
        for line in lines:
            yield line.rstrip("\n")


def shut(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_RDWR)


async def test_items_arrive_in_order_and_the_stream_ends_with_its_source() -> None:
    reader, writer = socket.socketpair()
    stream = BlockingStream(lambda: socket_lines(reader), name="lines")
    writer.sendall(b"".join(f"line {n}\n".encode() for n in range(500)))
    writer.close()
    received = [item async for item in stream]
    assert received == [f"line {n}" for n in range(500)]
    reader.close()


async def test_cancel_unblocks_a_read_in_progress() -> None:
    reader, writer = socket.socketpair()
    stream = BlockingStream(lambda: socket_lines(reader), lambda: shut(reader), name="follow")
    writer.sendall(b"first\n")
    received: list[str] = []

    async def consume() -> None:
        async for item in stream:
            received.append(item)

    task = asyncio.create_task(consume())
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.01)
    assert received == ["first"]
    # The reader thread now blocks in recv(); only a close from here can end it.
    thread = stream.thread
    assert thread is not None and thread.is_alive()
    stream.cancel()
    await asyncio.wait_for(task, timeout=5)
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
    assert not thread.is_alive()
    writer.close()
    reader.close()


async def test_a_busy_default_executor_does_not_stop_the_stream() -> None:
    """Database reads own the default executor; a stream must not need one of its threads."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    release = threading.Event()
    blocker = loop.run_in_executor(None, release.wait, 10)
    try:
        reader, writer = socket.socketpair()
        writer.sendall(b"a\nb\n")
        writer.close()
        stream = BlockingStream(lambda: socket_lines(reader), name="starved")
        received = await asyncio.wait_for(_collect(stream), timeout=5)
        assert received == ["a", "b"]
        reader.close()
    finally:
        release.set()
        await blocker


async def _collect(stream: BlockingStream[str]) -> list[str]:
    return [item async for item in stream]


async def test_the_buffer_bounds_memory_without_dropping() -> None:
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for n in range(50):
            produced.append(n)
            yield n

    stream = BlockingStream(numbers, name="numbers", buffer=5)
    stream.start()
    await asyncio.sleep(0.3)
    # The consumer has taken nothing: the reader waits once the queue (5) and its hand (1) are full.
    assert len(produced) <= 7
    received = [item async for item in stream]
    assert received == list(range(50))


async def test_an_error_in_the_source_reaches_the_consumer() -> None:
    def failing() -> Iterator[str]:
        yield "ok"
        raise ConnectionResetError("engine went away")

    stream = BlockingStream(failing, name="failing")
    received: list[str] = []
    with pytest.raises(ConnectionResetError, match="engine went away"):
        async for item in stream:
            received.append(item)
    assert received == ["ok"]


async def test_leaving_the_block_early_cancels_the_reader() -> None:
    reader, writer = socket.socketpair()
    stream = BlockingStream(lambda: socket_lines(reader), lambda: shut(reader), name="first")
    writer.sendall(b"one\ntwo\n")
    async with stream:
        async for item in stream:
            assert item == "one"
            break
    assert stream.cancelled
    thread = stream.thread
    assert thread is not None
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
    assert not thread.is_alive()
    writer.close()
    reader.close()


def test_polling_executor_is_shared_and_apart_from_the_default() -> None:
    first = polling_executor()
    assert first is polling_executor()
    assert first.submit(threading.current_thread).result().name.startswith("postroom-poll")


def test_a_buffer_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BlockingStream(lambda: iter(()), buffer=0)
