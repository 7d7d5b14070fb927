"""One SMTP session of the send engine and the transaction it carries per message.

aiosmtplib opens every session: the connection, implicit TLS or STARTTLS with the server's
certificate policy, EHLO (HELO as a fallback) and AUTH. What runs on the session afterwards
depends on the server:

* ``PipelinedSession`` when the server offers PIPELINING (RFC 2920; Postfix and most MTAs
  do): MAIL, RCPT and DATA go out in one write and their three replies come back together,
  then the message and its final reply. aiosmtplib answers one command at a time (its
  protocol keeps a single reply slot and drops a reply nobody waits for yet), and those four
  round trips cost more CPU than everything else the engine does per message
  (docs/PERFORMANCE.md: about three times the messages per second on one core). The session
  takes over aiosmtplib's transport (``set_protocol``), TLS included, with a reader of its
  own that keeps every reply in order.
* ``LockstepSession`` otherwise: the same transaction through aiosmtplib, command by command.

Both end a transaction the same way: a ``SendResult`` and whether the session can carry the
next message. A refused transaction is reset with RSET; a broken session raises (the pool
drops it): ``SMTPServerDisconnected``, ``TimeoutError`` or ``OSError``; ``_StaleSession``
when nothing of the message can have reached the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from aiosmtplib import SMTP, SMTPStatus
from aiosmtplib.errors import (
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

# A reply longer than this is not SMTP (RFC 5321 allows 512 bytes a line); the session ends.
MAX_REPLY_BYTES = 64 * 1024
QUIT_TIMEOUT_S = 2.0


class Verdict(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    reply: str


def reply_text(code: int, message: str) -> str:
    """A reply as the queue keeps it: the code and the server's words on one line."""
    return f"{code} {' '.join(message.split())}"


def refused(code: int, message: str) -> SendResult:
    verdict = Verdict.PERMANENT if 500 <= code < 600 else Verdict.TEMPORARY
    return SendResult(verdict, reply_text(code, message))


class _StaleSession(SMTPServerDisconnected):
    """The session was gone before MAIL: nothing of the message reached the server.

    Only then is an immediate second try on a fresh session safe. A connection lost
    later (at RCPT, or after the message data was sent, when the server may already
    have taken it) is an ordinary temporary failure: deferred with backoff.
    """


class Session(Protocol):
    @property
    def is_connected(self) -> bool: ...

    async def transaction(
        self, envelope_from: str, recipient: str, data: bytes
    ) -> tuple[SendResult, bool]: ...

    async def quit(self) -> None: ...

    def close(self) -> None: ...


def message_data(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, leading dots doubled, the end mark.

    Messages the engine builds already end their lines with CRLF; for them plain byte
    replacements do what aiosmtplib's regular expressions do, four times as fast (per
    message, every message). Anything else takes aiosmtplib's way.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    body = data if data.endswith(b"\r\n") else data + b"\r\n"
    body = body.replace(b"\r\n.", b"\r\n..")
    return (b"." + body if body.startswith(b".") else body) + b".\r\n"


# ---------------------------------------------------------------- command by command


class LockstepSession:
    """A transaction through aiosmtplib, one command and one reply at a time."""

    def __init__(self, smtp: SMTP) -> None:
        self.smtp = smtp

    @property
    def is_connected(self) -> bool:
        return bool(self.smtp.is_connected)

    async def transaction(
        self, envelope_from: str, recipient: str, data: bytes
    ) -> tuple[SendResult, bool]:
        smtp = self.smtp
        try:
            # MAIL and RCPT as plain commands: the addresses were checked when the message
            # was built, and aiosmtplib's own mail()/rcpt() parse each one again, a cost
            # a busy engine pays thousands of times a second.
            try:
                mail = await smtp.execute_command(
                    b"MAIL", b"FROM:<" + envelope_from.encode() + b">"
                )
            except SMTPServerDisconnected as exc:
                raise _StaleSession(str(exc)) from exc
            if mail.code != SMTPStatus.completed:
                raise SMTPSenderRefused(mail.code, mail.message, envelope_from)
            rcpt = await smtp.execute_command(b"RCPT", b"TO:<" + recipient.encode() + b">")
            if rcpt.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                raise SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
            response = await smtp.data(data)
        except SMTPResponseException as exc:
            if exc.code == -1 or isinstance(exc, SMTPServerDisconnected):
                raise
            keep = True
            try:
                await smtp.rset()
            except (SMTPException, OSError, TimeoutError):
                keep = False
            return refused(exc.code, exc.message), keep
        return SendResult(Verdict.SENT, reply_text(response.code, response.message)), True

    async def quit(self) -> None:
        with contextlib.suppress(SMTPException, OSError, TimeoutError):
            await asyncio.wait_for(self.smtp.quit(), QUIT_TIMEOUT_S)
        self.smtp.close()

    def close(self) -> None:
        self.smtp.close()


# ---------------------------------------------------------------- pipelined


class ReplyReader(asyncio.Protocol):
    """Every reply the server sends, parsed and kept in order until someone reads it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # of the multi-line reply being received
        self._replies: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self.lost: SMTPServerDisconnected | None = None

    # asyncio's callbacks

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._lines.append(line)
            if line[3:4] != b"-":
                self._finish_reply()
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._end(SMTPServerDisconnected("the server's reply is too long to be SMTP"))
        self._wake()

    def eof_received(self) -> bool:
        self._end(SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._end(SMTPServerDisconnected(f"Connection lost{detail}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # what the session uses

    async def read(self, count: int, timeout: float) -> list[tuple[int, str]]:
        """The next ``count`` replies, waiting at most ``timeout`` for each to come."""
        while len(self._replies) < count:
            if self.lost is not None:
                raise self.lost
            self._waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            finally:
                self._waiter = None
        return [self._replies.popleft() for _ in range(count)]

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._paused and self.lost is None:
            self._drained = self._loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def _finish_reply(self) -> None:
        lines, self._lines = self._lines, []
        try:
            code = int(lines[0][:3])
        except ValueError:
            self._end(SMTPServerDisconnected(f"not an SMTP reply: {lines[0][:80]!r}"))
            return
        text = "\n".join(
            line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape") for line in lines
        )
        self._replies.append((code, text))

    def _end(self, reason: SMTPServerDisconnected) -> None:
        if self.lost is None:
            self.lost = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class PipelinedSession:
    """A transaction in two round trips (RFC 2920) on a session aiosmtplib opened."""

    def __init__(self, transport: asyncio.Transport, reader: ReplyReader, timeout: float):
        self.transport = transport
        self.reader = reader
        self.timeout = timeout

    @classmethod
    def take_over(cls, smtp: SMTP, timeout: float) -> PipelinedSession:
        """The session of ``smtp`` (connected, greeted, logged in), read by us from now on;
        ``smtp`` itself is not used again."""
        transport = cast(asyncio.Transport, smtp.transport)
        reader = ReplyReader(asyncio.get_running_loop())
        transport.set_protocol(reader)
        return cls(transport, reader, timeout)

    @property
    def is_connected(self) -> bool:
        return self.reader.lost is None and not self.transport.is_closing()

    async def transaction(
        self, envelope_from: str, recipient: str, data: bytes
    ) -> tuple[SendResult, bool]:
        if not self.is_connected:
            raise _StaleSession(str(self.reader.lost or "the session was closed"))
        read, timeout = self.reader.read, self.timeout
        self.transport.write(
            b"MAIL FROM:<%b>\r\nRCPT TO:<%b>\r\nDATA\r\n"
            % (envelope_from.encode(), recipient.encode())
        )
        try:
            [mail] = await read(1, timeout)
        except SMTPServerDisconnected as exc:
            # Not even MAIL was answered: no message can have been taken.
            raise _StaleSession(str(exc)) from exc
        rcpt, start = await read(2, timeout)
        refusal = next(
            (
                reply
                for reply, wanted in ((mail, (250,)), (rcpt, (250, 251)), (start, (354,)))
                if reply[0] not in wanted
            ),
            None,
        )
        if refusal is not None:
            if start[0] == 354:
                # DATA was taken although MAIL or RCPT was not: an empty message ends it,
                # which the server then refuses for want of a recipient.
                self.transport.write(b".\r\n")
                await read(1, timeout)
            return refused(*refusal), await self._reset()
        self.transport.write(message_data(data))
        await self.reader.drain()
        [(code, text)] = await read(1, timeout)
        if 200 <= code < 300:
            return SendResult(Verdict.SENT, reply_text(code, text)), True
        return refused(code, text), True

    async def _reset(self) -> bool:
        """RSET after a refused transaction; whether the session is still good."""
        self.transport.write(b"RSET\r\n")
        try:
            [(code, _text)] = await self.reader.read(1, self.timeout)
        except (SMTPServerDisconnected, TimeoutError):
            return False
        return code == 250

    async def quit(self) -> None:
        if self.is_connected:
            self.transport.write(b"QUIT\r\n")
            with contextlib.suppress(SMTPServerDisconnected, TimeoutError):
                await self.reader.read(1, QUIT_TIMEOUT_S)
        self.close()

    def close(self) -> None:
        self.transport.close()
