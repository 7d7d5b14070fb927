"""SMTP delivery for the send engine: reused connections, at most N per delivery server.

One ``ServerPool`` per delivery server for the engine's whole life: a semaphore of the
server's Max Connections bounds what every worker together opens, and an idle list keeps
finished sessions for the next message (a new TLS session and AUTH per message would cost
more than the message). Each message is one MAIL / RCPT / DATA transaction on a session
(``app.engine.smtp_session``: pipelined where the server offers it); a refused transaction
is reset with RSET and the session is kept, a broken one is dropped.

Outcomes, as the queue records them:

* ``sent``: the server answered 2xx to DATA, with its reply.
* ``temporary``: 4xx at any step, a timeout, a refused or dropped connection, a TLS
  failure or a refused login (a setting someone can fix; retrying may then succeed).
* ``permanent``: 5xx to MAIL, RCPT or DATA: the server's words say why.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field

from aiosmtplib import SMTP
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPHeloError,
    SMTPServerDisconnected,
)

from app.engine.smtp_session import (
    LockstepSession,
    PipelinedSession,
    SendResult,
    Session,
    Verdict,
    _StaleSession,
    reply_text,
)
from app.models.base import Encryption
from app.services.smtp_link import default_local_hostname, unverified_context, verifying_context

__all__ = ["SendResult", "ServerPool", "ServerSettings", "Verdict"]

log = logging.getLogger(__name__)

# A server closes a session that sits idle (Postfix after 300 s); one kept longer than this
# is closed by us rather than found dead at the next MAIL.
IDLE_SECONDS = 30.0


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
    # Off: every transaction command by command, even where the server offers PIPELINING.
    pipelining: bool = True


def _network_reply(exc: BaseException, settings: ServerSettings) -> str:
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out after {settings.timeout:g} s talking to {where}"
    if isinstance(exc, SMTPServerDisconnected):
        return f"connection to {where} dropped: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    return f"{type(exc).__name__} with {where}: {exc}"


class ServerPool:
    """Sessions to one delivery server, shared by every worker of the engine."""

    def __init__(self, settings: ServerSettings, local_hostname: str | None = None) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(max(1, settings.max_connections))
        self._idle: list[tuple[Session, float]] = []
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

    async def _connect(self) -> Session:
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
            self._open -= 1
            smtp.close()
            raise
        if settings.pipelining and smtp.supports_extension("pipelining"):
            return PipelinedSession.take_over(smtp, settings.timeout)
        return LockstepSession(smtp)

    def _discard(self, session: Session) -> None:
        self._open -= 1
        session.close()

    def _take_idle(self) -> Session | None:
        now = time.monotonic()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_connected and now - since < IDLE_SECONDS:
                return session
            self._discard(session)
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
        self, idle: Session | None, envelope_from: str, recipient: str, data: bytes
    ) -> SendResult:
        """One delivery on ``idle`` (a kept session) or, when None, on a new session."""
        session = idle
        try:
            if session is None:
                session = await self._connect()
            result, keep = await session.transaction(envelope_from, recipient, data)
        except SMTPAuthenticationError as exc:
            return SendResult(
                Verdict.TEMPORARY,
                f"{self.settings.name} refused the login: {reply_text(exc.code, exc.message)}",
            )
        except (SMTPException, OSError, TimeoutError, ValueError) as exc:
            if session is not None:
                self._discard(session)
            if idle is not None and isinstance(exc, _StaleSession):
                # The server closed the idle session; nothing was sent on it: once more
                # on a fresh one before calling it a failure.
                return await self._attempt(None, envelope_from, recipient, data)
            return SendResult(Verdict.TEMPORARY, _network_reply(exc, self.settings))
        if keep:
            self._idle.append((session, time.monotonic()))
        else:
            self._discard(session)
        return result

    async def close(self) -> None:
        """QUIT every idle session (politely, briefly); used at the engine's stop."""
        idle, self._idle = self._idle, []
        for session, _since in idle:
            await session.quit()
            self._open -= 1
