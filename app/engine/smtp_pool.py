"""SMTP delivery for the send engine: reused connections, at most N per delivery server.

One ``ServerPool`` per delivery server for the engine's whole life: a semaphore of the
server's Max Connections bounds what every worker together opens, and an idle list keeps
finished sessions for the next message (a new TLS session and AUTH per message would cost
more than the message). Each message is one MAIL / RCPT / DATA transaction on a session;
a refused transaction is reset with RSET and the session is kept, a broken one is dropped.

Outcomes, as the queue records them:

* ``sent``: the server answered 2xx to DATA, with its reply.
* ``temporary``: 4xx at any step, a timeout, a refused or dropped connection, a TLS
  failure or a refused login (a setting someone can fix; retrying may then succeed).
* ``permanent``: 5xx to MAIL, RCPT or DATA: the server's words say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass, field
from enum import StrEnum

from aiosmtplib import SMTP, SMTPStatus
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from app.models.base import Encryption
from app.services.smtp_link import default_local_hostname, unverified_context, verifying_context

log = logging.getLogger(__name__)

# A server closes a session that sits idle (Postfix after 300 s); one kept longer than this
# is closed by us rather than found dead at the next MAIL.
IDLE_SECONDS = 30.0


class Verdict(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    reply: str


@dataclass(frozen=True)
class ServerSettings:
    """What delivering through one delivery server needs (the password already decrypted)."""

    id: int
    name: str
    host: str
    port: int
    encryption: Encryption
    timeout: float
    max_connections: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certificate: bool = True
    cafile: str | None = None


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


def _network_reply(exc: BaseException, settings: ServerSettings) -> str:
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out after {settings.timeout:g} s talking to {where}"
    if isinstance(exc, SMTPServerDisconnected):
        return f"connection to {where} dropped: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    return f"{type(exc).__name__} with {where}: {exc}"


class _StaleSession(SMTPServerDisconnected):
    """The session was gone before MAIL: nothing of the message reached the server.

    Only then is an immediate second try on a fresh session safe. A connection lost
    later (at RCPT, or after the message data was sent, when the server may already
    have taken it) is an ordinary temporary failure: deferred with backoff.
    """


class ServerPool:
    """Sessions to one delivery server, shared by every worker of the engine."""

    def __init__(self, settings: ServerSettings, local_hostname: str | None = None) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(max(1, settings.max_connections))
        self._idle: list[tuple[SMTP, float]] = []
        self._open = 0
        self._local_hostname = local_hostname or default_local_hostname()
        self._tls_context: ssl.SSLContext | None = None

    @property
    def open_connections(self) -> int:
        return self._open

    def _context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            self._tls_context = (
                verifying_context(self.settings.cafile)
                if self.settings.verify_certificate
                else unverified_context()
            )
        return self._tls_context

    async def _connect(self) -> SMTP:
        settings = self.settings
        smtp = SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.encryption is Encryption.SSL,
            start_tls=settings.encryption is Encryption.TLS,
            tls_context=self._context() if settings.encryption is not Encryption.NONE else None,
            timeout=settings.timeout,
            local_hostname=self._local_hostname,
        )
        await smtp.connect()
        self._open += 1
        try:
            if smtp.last_ehlo_response is None:  # STARTTLS has greeted already
                try:
                    await smtp.ehlo()
                except SMTPHeloError:
                    await smtp.helo()
            if settings.username and settings.password is not None:
                await smtp.login(settings.username, settings.password)
        except BaseException:
            await self._discard(smtp)
            raise
        return smtp

    async def _discard(self, smtp: SMTP) -> None:
        self._open -= 1
        smtp.close()

    def _take_idle(self) -> SMTP | None:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < IDLE_SECONDS:
                return smtp
            self._open -= 1
            smtp.close()
        return None

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        stopping: asyncio.Event | None = None,
    ) -> SendResult | None:
        """Deliver one message to one recipient; never raises for what the server does.

        None when ``stopping`` was set while waiting for a connection: nothing was sent,
        and the item goes back to the queue with the engine's other unsent leases.
        """
        async with self._slots:
            if stopping is not None and stopping.is_set():
                return None
            return await self._attempt(self._take_idle(), envelope_from, recipient, data)

    async def _attempt(
        self, idle: SMTP | None, envelope_from: str, recipient: str, data: bytes
    ) -> SendResult:
        """One delivery on ``idle`` (a kept session) or, when None, on a new session."""
        smtp = idle
        try:
            if smtp is None:
                smtp = await self._connect()
            result, keep = await self._transaction(smtp, envelope_from, recipient, data)
        except SMTPAuthenticationError as exc:
            return SendResult(
                Verdict.TEMPORARY,
                f"{self.settings.name} refused the login: {_reply(exc.code, exc.message)}",
            )
        except (SMTPException, OSError, TimeoutError, ValueError) as exc:
            if smtp is not None:
                await self._discard(smtp)
            if idle is not None and isinstance(exc, _StaleSession):
                # The server closed the idle session; nothing was sent on it: once more
                # on a fresh one before calling it a failure.
                return await self._attempt(None, envelope_from, recipient, data)
            return SendResult(Verdict.TEMPORARY, _network_reply(exc, self.settings))
        if keep:
            self._idle.append((smtp, time.monotonic()))
        else:
            await self._discard(smtp)
        return result

    async def _transaction(
        self, smtp: SMTP, envelope_from: str, recipient: str, data: bytes
    ) -> tuple[SendResult, bool]:
        """MAIL, RCPT, DATA; (result, whether the session can carry the next message)."""
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
            verdict = Verdict.PERMANENT if 500 <= exc.code < 600 else Verdict.TEMPORARY
            return SendResult(verdict, _reply(exc.code, exc.message)), keep
        return SendResult(Verdict.SENT, _reply(response.code, response.message)), True

    async def close(self) -> None:
        """QUIT every idle session (politely, briefly); used at the engine's stop."""
        idle, self._idle = self._idle, []
        for smtp, _since in idle:
            with contextlib.suppress(SMTPException, OSError, TimeoutError):
                await asyncio.wait_for(smtp.quit(), 2)
            smtp.close()
            self._open -= 1
