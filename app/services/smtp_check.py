"""The staged SMTP test of a delivery server ("Test" tab, ``postroom servers test``).

The check walks the session a send engine would open, one timed stage at a time, and
stops at the first failure with a one-sentence hint saying what to change:

    resolve -> connect -> [tls] -> banner -> ehlo -> [starttls -> ehlo] -> [auth]
            -> mail_from -> [rcpt -> data] -> quit

``tls`` is the handshake of encryption "ssl" (TLS from the first byte), ``starttls`` the
upgrade of encryption "tls"; either one includes the certificate check. Every stage is
bounded by the server's timeout, so no stage can hang longer than that.

It is Qt-free and async: the GUI awaits it on the Qt loop (showing stages live through
``progress``) and the CLI runs it with ``asyncio.run``. What is tested and reported is in
smtp_report, the sockets and certificates in smtp_link, the hints in smtp_hints.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TypeVar

from aiosmtplib import SMTP, SMTPResponse
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import DeliveryServer, Encryption, TestStatus
from app.models.base import utcnow
from app.services import audit, validation
from app.services.errors import VaultKeyError
from app.services.servers import PasswordCipher, decrypt_password, get_server
from app.services.smtp_hints import ALLOW_UNVERIFIED, HintContext, diagnose, reply_text
from app.services.smtp_link import (
    NETWORK_FAILURES,
    AddressInfo,
    HandshakeWatch,
    SmtpLink,
    connect_any,
    default_local_hostname,
    unverified_context,
    verifying_context,
)
from app.services.smtp_report import (
    AUTH,
    BANNER,
    CONNECT,
    DATA,
    EHLO,
    MAIL_FROM,
    QUIT,
    RCPT,
    RESOLVE,
    STARTTLS,
    TLS,
    PasswordRedactor,
    SmtpCheckReport,
    SmtpTarget,
    StageResult,
    TlsInfo,
)

# Stage names and report types live in smtp_report; import them from there.
__all__ = [
    "TEST_LOCAL_PART",
    "TEST_SUBJECT",
    "record_result",
    "run_smtp_check",
    "target_for_server",
]

log = logging.getLogger(__name__)

TEST_SUBJECT = "Postroom SMTP test"
TEST_LOCAL_PART = "postroom-test"

# Preferred AUTH mechanisms. Only one is tried per test: trying every offered mechanism
# after a 535 (as aiosmtplib's login() does) counts several failures against the account
# and can trip the provider's lock-out. Over a clear connection CRAM-MD5 comes first
# because it does not send the password itself.
_MECHANISMS_TLS = ("plain", "login", "cram-md5")
_MECHANISMS_CLEAR = ("cram-md5", "plain", "login")

T = TypeVar("T")
Progress = Callable[[StageResult], None]
Diagnose = Callable[[str, BaseException], Awaitable[tuple[str, str]]]


class _Failed(Exception):
    def __init__(self, stage: str, hint: str) -> None:
        super().__init__(stage)
        self.stage = stage
        self.hint = hint


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- stages


class _StageLog:
    """The stages of one test as they end: timed, redacted, logged and reported live."""

    def __init__(self, target: SmtpTarget, progress: Progress | None, explain: Diagnose) -> None:
        self.target = target
        self.progress = progress
        self.explain = explain
        self.redact = PasswordRedactor(target.username, target.password)
        self.results: list[StageResult] = []
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def finish(self, name: str, ok: bool, detail: str, *, ms: float | None = None) -> None:
        elapsed = ms if ms is not None else (time.perf_counter() - self.started) * 1000
        result = StageResult(name, ok, round(elapsed, 1), self.redact(detail))
        self.results.append(result)
        log.info("SMTP test %s:%s %s %s", self.target.host, self.target.port, name, result.detail)
        if self.progress is not None:
            self.progress(result)

    def fail(self, name: str, detail: str, hint: str) -> _Failed:
        self.finish(name, False, detail)
        return _Failed(name, self.redact(hint))

    async def failed(self, name: str, exc: BaseException, *, ms: float) -> _Failed:
        """Write down the failure ``exc`` of a stage that took ``ms``, with its hint."""
        detail, hint = await self.explain(name, exc)
        self.finish(name, False, detail, ms=ms)
        return _Failed(name, self.redact(hint))

    async def attempt(self, name: str, operation: Awaitable[T]) -> T:
        """Run one stage's operation under the timeout; a failure ends the check.

        aiosmtplib bounds each of its reads by the same timeout; this bounds the stage as a
        whole (DNS, connecting to several addresses, STARTTLS's command plus handshake).
        """
        self.start()
        try:
            async with asyncio.timeout(self.target.timeout):
                return await operation
        except NETWORK_FAILURES as exc:
            elapsed = (time.perf_counter() - self.started) * 1000
            raise await self.failed(name, exc, ms=elapsed) from exc


# --------------------------------------------------------------------------- the session


class _Session:
    """One SMTP session with the server under test, stage by stage."""

    def __init__(
        self,
        target: SmtpTarget,
        mail_from: str | None,
        rcpt: str | None,
        progress: Progress | None,
    ) -> None:
        self.target = target
        self.rcpt = rcpt
        self.local_hostname = target.local_hostname or default_local_hostname()
        self.sender = mail_from or f"{TEST_LOCAL_PART}@{self._sender_domain()}"
        self.stages = _StageLog(target, progress, self._diagnose)
        self.tls: TlsInfo | None = None
        self.mechanisms: list[str] = []
        self.infos: Sequence[AddressInfo] = []
        self.link = SmtpLink()

    def _sender_domain(self) -> str:
        if self.target.mail_from_domain:
            return self.target.mail_from_domain
        # Without a Mail From domain the host's own name is the least surprising sender.
        name = self.target.tls_name
        return name if not _is_ip(name) else "localhost"

    async def _diagnose(self, stage: str, exc: BaseException) -> tuple[str, str]:
        context = HintContext(self.target, self.sender, self.rcpt, self.infos, self.local_hostname)
        return await diagnose(context, stage, exc)

    async def run(self) -> SmtpCheckReport:
        failure: _Failed | None = None
        try:
            smtp = await self._open()
            await self._hello(smtp)
            await self._envelope(smtp)
        except _Failed as exc:
            failure = exc
            await self._goodbye()
        finally:
            await self.link.close(grace=min(1.0, self.target.timeout))
        return SmtpCheckReport(
            ok=failure is None,
            failed_stage=failure.stage if failure else None,
            hint=failure.hint if failure else None,
            stages=list(self.stages.results),
            tls=self.tls,
            auth_mechanisms=list(self.mechanisms),
        )

    async def _goodbye(self) -> None:
        """After a refused command the session is still up: end it with QUIT, as a client
        should, so the server logs a finished session rather than a lost connection."""
        smtp = self.link.smtp
        if smtp is None or not smtp.is_connected:
            return
        try:
            async with asyncio.timeout(min(1.0, self.target.timeout)):
                await smtp.quit()
        except NETWORK_FAILURES:
            pass  # the check has already failed; this was only politeness

    # -- resolve, connect, [tls], banner

    async def _open(self) -> SMTP:
        target, stages = self.target, self.stages
        loop = asyncio.get_running_loop()
        self.infos = await stages.attempt(
            RESOLVE, loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in self.infos))
        stages.finish(RESOLVE, True, f"{target.host} -> {', '.join(addresses)}")

        sock, address = await stages.attempt(CONNECT, connect_any(self.infos))
        self.link.sock = sock
        stages.finish(CONNECT, True, f"connected to {address} port {target.port}")

        smtp = SMTP(
            hostname=target.tls_name,
            sock=sock,
            use_tls=target.mode == Encryption.SSL,
            start_tls=False,  # STARTTLS is a stage of its own
            timeout=target.timeout,
            local_hostname=self.local_hostname,
        )
        self.link.smtp = smtp
        if target.mode == Encryption.SSL:
            banner = await self._tls_then_banner(smtp)
        else:
            self.link.handed_over = True
            banner = await stages.attempt(BANNER, smtp.connect())
        self.link.track()
        stages.finish(BANNER, True, reply_text(banner))
        return smtp

    async def _tls_then_banner(self, smtp: SMTP) -> SMTPResponse:
        """Encryption "ssl": connect() does the handshake and reads the greeting at once."""
        stages = self.stages
        stages.start()
        started = stages.started
        watch = HandshakeWatch()
        try:
            context = await self._context()
            watch.install(context)
            smtp.tls_context = context
            self.link.handed_over = True
            # Each half has aiosmtplib's own timeout; this only backs both up.
            async with asyncio.timeout(2 * self.target.timeout):
                banner = await smtp.connect()
        except NETWORK_FAILURES as exc:
            failed_at = time.perf_counter()
            if watch.done_at is None:
                raise await stages.failed(TLS, exc, ms=(failed_at - started) * 1000) from exc
            self._tls_done(watch, TLS, "", ms=(watch.done_at - started) * 1000)
            raise await stages.failed(BANNER, exc, ms=(failed_at - watch.done_at) * 1000) from exc
        assert watch.done_at is not None  # connect() returned, so the handshake finished
        self._tls_done(watch, TLS, "", ms=(watch.done_at - started) * 1000)
        stages.started = watch.done_at  # the banner stage is what came after the handshake
        return banner

    def _tls_done(self, watch: HandshakeWatch, stage: str, reply: str, *, ms: float) -> None:
        target = self.target
        self.tls = watch.info(verified=not target.insecure, insecure=target.insecure)
        if target.insecure:
            trust = f"certificate NOT verified ({ALLOW_UNVERIFIED} is on)"
        else:
            trust = f"certificate verified for {target.tls_name}"
        parts = [reply, f"{self.tls.version} {self.tls.cipher}", trust]
        if self.tls.subject:
            parts.append(f"subject {self.tls.subject}, valid until {self.tls.not_after}")
        self.stages.finish(stage, True, "; ".join(p for p in parts if p), ms=ms)

    async def _context(self) -> ssl.SSLContext:
        # Loading the CA store reads files: keep it off the (GUI) event loop thread.
        if self.target.insecure:
            return await asyncio.to_thread(unverified_context)
        return await asyncio.to_thread(verifying_context, self.target.cafile)

    # -- ehlo, [starttls, ehlo], [auth]

    async def _hello(self, smtp: SMTP) -> None:
        await self._ehlo(smtp)
        if self.target.mode == Encryption.TLS:
            await self._starttls(smtp)
            await self._ehlo(smtp)
        if self.target.username:
            await self._auth(smtp)

    async def _ehlo(self, smtp: SMTP) -> None:
        reply = await self.stages.attempt(EHLO, smtp.ehlo())
        self.mechanisms = [m.upper() for m in smtp.server_auth_methods]
        self.stages.finish(EHLO, True, reply_text(reply))

    async def _starttls(self, smtp: SMTP) -> None:
        stages = self.stages
        stages.start()
        if not smtp.supports_extension("starttls"):
            raise stages.fail(
                STARTTLS,
                "STARTTLS is not in the server's EHLO reply",
                f"The server does not offer STARTTLS on port {self.target.port}: use its "
                "submission port (usually 587) for TLS, or Encryption SSL if it speaks TLS "
                "from the first byte (usually port 465).",
            )
        watch = HandshakeWatch()

        async def upgrade() -> SMTPResponse:
            context = await self._context()
            watch.install(context)
            return await smtp.starttls(server_hostname=self.target.tls_name, tls_context=context)

        reply = await stages.attempt(STARTTLS, upgrade())
        self.link.track()
        elapsed = (time.perf_counter() - stages.started) * 1000
        self._tls_done(watch, STARTTLS, reply_text(reply), ms=elapsed)

    async def _auth(self, smtp: SMTP) -> None:
        target, stages = self.target, self.stages
        stages.start()
        offered = " ".join(self.mechanisms) or "none"
        if not smtp.supports_extension("auth"):
            if target.mode == Encryption.NONE:
                hint = (
                    "The server offers no AUTH on this unencrypted connection: set Encryption "
                    "to TLS (or SSL), since most servers allow AUTH only after TLS."
                )
            else:
                hint = (
                    "The server offers no AUTH here: turn Authentication off if it relays for "
                    "this IP without login, or use its submission port (587 or 465)."
                )
            raise stages.fail(AUTH, "AUTH is not in the server's EHLO reply", hint)
        preference = _MECHANISMS_CLEAR if target.mode == Encryption.NONE else _MECHANISMS_TLS
        usable = [m for m in preference if m in smtp.server_auth_methods]
        if not usable:
            raise stages.fail(
                AUTH,
                f"no AUTH mechanism in common (server offers {offered})",
                f"The server offers only {offered}, which Postroom cannot use: enable PLAIN or "
                "LOGIN on the server for this account.",
            )
        mechanism = usable[0]
        method = {
            "plain": smtp.auth_plain,
            "login": smtp.auth_login,
            "cram-md5": smtp.auth_crammd5,
        }[mechanism]
        reply = await stages.attempt(AUTH, method(target.username or "", target.password or ""))
        stages.finish(AUTH, True, f"{reply_text(reply)} ({mechanism.upper()}; offered: {offered})")

    # -- mail_from, [rcpt, data], quit

    async def _envelope(self, smtp: SMTP) -> None:
        stages = self.stages
        reply = await stages.attempt(MAIL_FROM, smtp.mail(self.sender))
        stages.finish(MAIL_FROM, True, reply_text(reply))
        if self.rcpt:
            reply = await stages.attempt(RCPT, smtp.rcpt(self.rcpt))
            stages.finish(RCPT, True, reply_text(reply))
            reply = await stages.attempt(DATA, smtp.data(self._message(self.rcpt)))
            stages.finish(DATA, True, reply_text(reply))
        reply = await stages.attempt(QUIT, smtp.quit())
        stages.finish(QUIT, True, reply_text(reply))

    def _message(self, rcpt: str) -> bytes:
        domain = self.sender.rpartition("@")[2] or "localhost"
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = rcpt
        message["Subject"] = TEST_SUBJECT
        message["Date"] = formatdate(usegmt=True)
        # An explicit domain: make_msgid's default looks up this host's FQDN (slow DNS).
        message["Message-ID"] = make_msgid(TEST_LOCAL_PART, domain=domain)
        message.set_content(
            "This message was sent by Postroom to test the delivery server "
            f"{self.target.host}:{self.target.port}. It needs no action and can be deleted.\n"
        )
        return message.as_bytes()


async def run_smtp_check(
    target: SmtpTarget,
    *,
    mail_from: str | None = None,
    rcpt: str | None = None,
    progress: Callable[[StageResult], None] | None = None,
) -> SmtpCheckReport:
    """Test ``target`` stage by stage; never raises for a failure of the server or network.

    A ``mail_from`` or ``rcpt`` holding a line break or other control character raises
    ``ValidationError`` before anything is sent.

    With ``rcpt`` a short real message is sent (RCPT and DATA stages); without it the
    session ends after MAIL FROM. ``progress`` is called as each stage completes.
    """
    # Refused before connecting: CR or LF would end the command and start another.
    if mail_from:
        mail_from = validation.envelope_address(mail_from, "Mail From")
    if rcpt:
        rcpt = validation.envelope_address(rcpt, "Recipient")
    return await _Session(target, mail_from, rcpt, progress).run()


# --------------------------------------------------------------------------- storage


def target_for_server(server: DeliveryServer, cipher: PasswordCipher | None) -> SmtpTarget:
    """The test target for a stored delivery server (its password decrypted for AUTH only)."""
    username = server.username if server.auth_enabled and server.username else None
    password: str | None = None
    if username is not None and server.password_encrypted is not None:
        if cipher is None:
            raise VaultKeyError(
                f"The password of delivery server {server.name!r} cannot be decrypted without "
                "this database's vault key; unlock the keyring and test again."
            )
        password = decrypt_password(server, cipher)
    return SmtpTarget(
        host=server.host,
        port=server.port,
        encryption=server.encryption,
        timeout=float(server.timeout_seconds),
        username=username,
        password=password,
        insecure=server.allow_unverified_certificate,
        mail_from_domain=server.mail_from_domain,
    )


def record_result(
    session: Session, server_name: str, report: SmtpCheckReport, *, actor: str | None = None
) -> DeliveryServer:
    """Store the outcome on the server (Test tab) and write an audit entry."""
    server = get_server(session, server_name)
    # An ORM bulk UPDATE on purpose: a test result is not an edit, so it must not bump the
    # optimistic-lock version and make an edit form opened before the test fail on save.
    # The default synchronisation also refreshes the loaded ``server`` object.
    session.execute(
        update(DeliveryServer)
        .where(DeliveryServer.id == server.id)
        .values(
            last_test_status=TestStatus.OK if report.ok else TestStatus.FAILED,
            last_test_at=utcnow(),
            last_test_report=report.to_json(),
        )
    )
    audit.record(
        session,
        "test",
        "delivery_server",
        server.name,
        {"ok": report.ok, "failed_stage": report.failed_stage},
        actor=actor,
    )
    return server
