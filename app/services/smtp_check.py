"""The staged SMTP test of a delivery server ("Test" tab, ``postroom servers test``).

The check walks the session a send engine would open, one timed stage at a time, and
stops at the first failure with a one-sentence hint saying what to change:

    resolve -> connect -> [tls] -> banner -> ehlo -> [starttls -> ehlo] -> [auth]
            -> mail_from -> [rcpt -> data] -> quit

``tls`` is the handshake of encryption "ssl" (TLS from the first byte), ``starttls`` the
upgrade of encryption "tls"; either one includes the certificate check. Every stage is
bounded by the server's timeout, so no stage can hang longer than that.

It is Qt-free and async: the GUI awaits it on the Qt loop (showing stages live through
``progress``) and the CLI runs it with ``asyncio.run``. The password is used for AUTH
only; it never appears in a report, a stage detail, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, TypeVar

from aiosmtplib import SMTP, SMTPResponse
from aiosmtplib.errors import (
    SMTPException,
    SMTPResponseException,
)
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import DeliveryServer, Encryption, TestStatus
from app.models.base import utcnow
from app.services import audit
from app.services.errors import SmtpStageFailed, VaultKeyError
from app.services.servers import PasswordCipher, decrypt_password, get_server

__all__ = [
    "STAGES",
    "SmtpCheckReport",
    "SmtpTarget",
    "StageResult",
    "TlsInfo",
    "record_result",
    "run_smtp_check",
    "target_for_server",
]

log = logging.getLogger(__name__)

RESOLVE = "resolve"
CONNECT = "connect"
BANNER = "banner"
EHLO = "ehlo"
STARTTLS = "starttls"
TLS = "tls"
AUTH = "auth"
MAIL_FROM = "mail_from"
RCPT = "rcpt"
DATA = "data"
QUIT = "quit"
STAGES = (RESOLVE, CONNECT, BANNER, EHLO, STARTTLS, TLS, AUTH, MAIL_FROM, RCPT, DATA, QUIT)

TEST_SUBJECT = "Postroom SMTP test"
TEST_LOCAL_PART = "postroom-test"
ALLOW_UNVERIFIED = '"Allow unverified certificate"'

# Failures of the network or of the peer. Anything else escaping a stage is a bug in
# Postroom and goes to the one crash report instead of being dressed up as a hint.
_EXPECTED = (OSError, SMTPException, TimeoutError, ValueError)

# OpenSSL verification codes that get a hint of their own.
_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10
_X509_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21, 27})
_X509_NAME_MISMATCH = frozenset({62, 64})
# What OpenSSL says when plain-text SMTP arrives where a TLS record was expected.
_PLAINTEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
# Preferred AUTH mechanisms. Only one is tried per test: trying every offered mechanism
# after a 535 (as aiosmtplib's login() does) counts several failures against the account
# and can trip the provider's lock-out. Over a clear connection CRAM-MD5 comes first
# because it does not send the password itself.
_MECHANISMS_TLS = ("plain", "login", "cram-md5")
_MECHANISMS_CLEAR = ("cram-md5", "plain", "login")

# The unverified second session (certificate details, TLS-on-connect probe) runs after a
# failure: a server that answers at all does so within one round trip, so it gets at most
# this long, keeping a failed check close to the configured timeout.
_SECOND_LOOK_LIMIT = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class SmtpTarget:
    """What to test: the connection settings of one delivery server.

    ``server_hostname`` overrides the name used for SNI and certificate verification (the
    TCP connection still goes to ``host``); ``cafile`` trusts that CA bundle instead of the
    system's; ``local_hostname`` is the EHLO name (default: this machine's host name).
    """

    host: str
    port: int
    encryption: Encryption | str = Encryption.TLS
    timeout: float = 10.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure: bool = False
    mail_from_domain: str | None = None
    server_hostname: str | None = None
    cafile: str | None = None
    local_hostname: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "encryption", Encryption(self.encryption))
        if not self.timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")

    @property
    def mode(self) -> Encryption:
        return Encryption(self.encryption)

    @property
    def tls_name(self) -> str:
        """The name the certificate must be valid for."""
        return self.server_hostname or self.host


@dataclass(frozen=True)
class StageResult:
    name: str
    ok: bool
    ms: float
    detail: str  # the server's reply ("250 ...") or what went wrong

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "ms": self.ms, "detail": self.detail}


@dataclass(frozen=True)
class TlsInfo:
    version: str | None
    cipher: str | None
    subject: str | None
    issuer: str | None
    not_after: str | None  # ISO 8601, UTC
    verified: bool  # chain and host name were checked and passed
    insecure_used: bool  # "Allow unverified certificate" was on: nothing was checked

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cipher": self.cipher,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after,
            "verified": self.verified,
            "insecure_used": self.insecure_used,
        }


@dataclass(frozen=True)
class SmtpCheckReport:
    ok: bool
    failed_stage: str | None
    hint: str | None
    stages: list[StageResult]
    tls: TlsInfo | None
    auth_mechanisms: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed_stage": self.failed_stage,
            "hint": self.hint,
            "stages": [stage.as_dict() for stage in self.stages],
            "tls": self.tls.as_dict() if self.tls else None,
            "auth_mechanisms": list(self.auth_mechanisms),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def stage(self, name: str) -> StageResult | None:
        """The last stage of that name (``ehlo`` runs twice around STARTTLS)."""
        for result in reversed(self.stages):
            if result.name == name:
                return result
        return None

    def raise_for_failure(self) -> None:
        """For callers that treat a failed test as an error (the CLI's exit status)."""
        if not self.ok:
            stage = self.failed_stage or "unknown"
            raise SmtpStageFailed(stage, self.hint or f"The SMTP test failed at {stage}.")


# --------------------------------------------------------------------------- helpers


class _Redactor:
    """Removes the password, in every form an AUTH exchange could echo it, from text.

    A short password is also a likely substring of ordinary words ("p" in "port"), so
    below ``_SHORT_SECRET`` characters it is removed only where it stands alone.
    """

    _SHORT_SECRET = 8

    def __init__(self, username: str | None, password: str | None) -> None:
        forms: set[str] = set()
        if password:
            secret = password.encode()
            forms.add(password)
            forms.add(base64.b64encode(secret).decode())
            user = (username or "").encode()
            forms.add(base64.b64encode(b"\0" + user + b"\0" + secret).decode())
        # Longest first, so a form containing another is replaced whole.
        patterns = []
        for form in sorted(forms, key=len, reverse=True):
            escaped = re.escape(form)
            if len(form) < self._SHORT_SECRET:
                escaped = rf"(?<![\w+/=]){escaped}(?![\w+/=])"
            patterns.append(escaped)
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        # Again until nothing changes: the mask next to leftover characters could spell a
        # password made of asterisks once more.
        for _ in range(8):
            masked = self._pattern.sub("********", text)
            if masked == text:
                break
            text = masked
        return text


def _reply(response: SMTPResponse | SMTPResponseException) -> str:
    """``250 text`` on one line (a multi-line reply's lines joined with ", ")."""
    message = ", ".join(line.strip() for line in response.message.splitlines() if line.strip())
    return f"{response.code} {message}".rstrip()


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: aiosmtplib hides socket and TLS errors in its own."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _find(exc: BaseException, kind: type[T]) -> T | None:
    for item in _causes(exc):
        if isinstance(item, kind):
            return item
    return None


def _is_timeout(exc: BaseException) -> bool:
    for item in _causes(exc):
        if isinstance(item, TimeoutError):
            return True
        # asyncio's own TLS handshake timeout surfaces as ConnectionAbortedError.
        if isinstance(item, ConnectionAbortedError) and "longer than" in str(item):
            return True
    return False


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, SMTPResponseException):
        return _reply(exc)
    innermost = _causes(exc)[-1]
    if isinstance(innermost, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {innermost.verify_message}"
    text = str(innermost) or str(exc) or type(innermost).__name__
    return text


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _default_local_hostname() -> str:
    # gethostname() does no DNS lookup; aiosmtplib's default (getfqdn) can block for
    # seconds on a workstation with broken reverse DNS, before the first stage even runs.
    name = socket.gethostname()
    return name if name and name.isascii() else "localhost"


@dataclass(frozen=True)
class _CertFacts:
    subject: str
    issuer: str
    not_after: datetime
    not_before: datetime
    names: list[str]
    self_signed: bool


def _cert_facts(der: bytes) -> _CertFacts | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    if not names:
        names = [
            str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return _CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        not_before=cert.not_valid_before_utc,
        names=names,
        self_signed=cert.issuer == cert.subject,
    )


class _HandshakeWatch:
    """Sees a TLS handshake from inside asyncio: when it finished and what was agreed.

    ``SSLContext.sslobject_class`` is the documented hook for the object asyncio drives
    the handshake with. Through it the check times the TLS stage on its own even where
    aiosmtplib's connect() does handshake and greeting in one call, and reads the peer
    certificate even when a later step fails.
    """

    def __init__(self) -> None:
        self.done_at: float | None = None
        self.version: str | None = None
        self.cipher: str | None = None
        self.der: bytes | None = None

    def install(self, context: ssl.SSLContext) -> None:
        watch = self

        class _WatchedSSLObject(ssl.SSLObject):
            def do_handshake(self) -> None:
                super().do_handshake()
                # Reached only once the handshake, verification included, has succeeded.
                watch.done_at = time.perf_counter()
                watch.version = self.version()
                cipher = self.cipher()
                watch.cipher = cipher[0] if cipher else None
                watch.der = self.getpeercert(binary_form=True)

        context.sslobject_class = _WatchedSSLObject

    def info(self, *, verified: bool, insecure: bool) -> TlsInfo:
        facts = _cert_facts(self.der) if self.der else None
        return TlsInfo(
            version=self.version,
            cipher=self.cipher,
            subject=facts.subject if facts else None,
            issuer=facts.issuer if facts else None,
            not_after=facts.not_after.isoformat() if facts else None,
            verified=verified,
            insecure_used=insecure,
        )


def _verifying_context(cafile: str | None) -> ssl.SSLContext:
    # create_default_context checks the chain and the host name; with cafile it trusts
    # exactly that bundle (a private CA) instead of the system store.
    return ssl.create_default_context(cafile=cafile)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Link:
    """One TCP connection and the aiosmtplib client on it, closed for sure at the end."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.smtp: SMTP | None = None
        self.handed_over = False  # the socket now belongs to an asyncio transport
        self._transports: list[asyncio.BaseTransport] = []

    def track(self) -> None:
        """Remember the current transport: aiosmtplib forgets it when it gives up."""
        if self.smtp is not None and self.smtp.transport is not None:
            self._transports.append(self.smtp.transport)

    async def close(self, grace: float) -> None:
        """Close politely, wait until the socket is really closed, then abort if need be.

        asyncio closes transports in later callbacks (a TLS one only after the close_notify
        exchange); waiting here means no transport outlives the check to be reported as
        unclosed, and the server sees a finished session rather than a dangling one.
        """
        if self.smtp is not None:
            self.track()
            self.smtp.close()
        sock = self.sock
        if sock is None:
            return
        if not self.handed_over:
            sock.close()
            return
        if not await _until_closed(sock, grace):
            for transport in self._transports:
                # The peer never finished the TLS shutdown: drop the connection.
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
                else:
                    transport.close()
            await _until_closed(sock, grace)
        sock.close()  # no-op when the transport already closed it


async def _until_closed(sock: socket.socket, grace: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    delay = 0.0
    while sock.fileno() != -1:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(0.01, delay + 0.002)
    return True


async def _connect_any(infos: Sequence[tuple[Any, ...]]) -> tuple[socket.socket, str]:
    """A connected non-blocking socket to the first address that accepts."""
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for family, kind, proto, _canon, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:  # cancelled by the stage's timeout: don't leak the socket
            sock.close()
            raise
        return sock, str(sockaddr[0])
    raise last_error or OSError("no address to connect to")


class _Failed(Exception):
    def __init__(self, stage: str, hint: str) -> None:
        super().__init__(stage)
        self.stage = stage
        self.hint = hint


# --------------------------------------------------------------------------- the check


class _Check:
    def __init__(
        self,
        target: SmtpTarget,
        mail_from: str | None,
        rcpt: str | None,
        progress: Callable[[StageResult], None] | None,
    ) -> None:
        self.t = target
        self.rcpt = rcpt
        self.progress = progress
        self.redact = _Redactor(target.username, target.password)
        self.local_hostname = target.local_hostname or _default_local_hostname()
        self.sender = mail_from or f"{TEST_LOCAL_PART}@{self._sender_domain()}"
        self.stages: list[StageResult] = []
        self.tls: TlsInfo | None = None
        self.mechanisms: list[str] = []
        self.infos: list[tuple[Any, ...]] = []
        self.link = _Link()
        self._started = 0.0

    def _sender_domain(self) -> str:
        if self.t.mail_from_domain:
            return self.t.mail_from_domain
        # Without a Mail From domain the host's own name is the least surprising sender.
        return self.t.tls_name if not _is_ip(self.t.tls_name) else "localhost"

    # -- stage bookkeeping

    def _finish(self, name: str, ok: bool, detail: str, *, ms: float | None = None) -> None:
        elapsed = ms if ms is not None else (time.perf_counter() - self._started) * 1000
        result = StageResult(name, ok, round(elapsed, 1), self.redact(detail))
        self.stages.append(result)
        log.info("SMTP test %s:%s %s %s", self.t.host, self.t.port, name, result.detail)
        if self.progress is not None:
            self.progress(result)

    def _fail(self, name: str, detail: str, hint: str) -> _Failed:
        self._finish(name, False, detail)
        return _Failed(name, self.redact(hint))

    async def _attempt(self, name: str, operation: Awaitable[T]) -> T:
        """Run one stage's operation under the timeout; a failure ends the check.

        aiosmtplib bounds each of its reads by the same timeout; this bounds the stage as a
        whole (DNS, connecting to several addresses, STARTTLS's command plus handshake).
        """
        self._started = time.perf_counter()
        try:
            async with asyncio.timeout(self.t.timeout):
                return await operation
        except _EXPECTED as exc:
            elapsed = (time.perf_counter() - self._started) * 1000
            detail, hint = await self._diagnose(name, exc)
            self._finish(name, False, detail, ms=elapsed)
            raise _Failed(name, self.redact(hint)) from exc

    # -- the session

    async def run(self) -> SmtpCheckReport:
        failure: _Failed | None = None
        try:
            await self._session()
        except _Failed as exc:
            failure = exc
            await self._goodbye()
        finally:
            await self.link.close(grace=min(1.0, self.t.timeout))
        return SmtpCheckReport(
            ok=failure is None,
            failed_stage=failure.stage if failure else None,
            hint=failure.hint if failure else None,
            stages=list(self.stages),
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
            async with asyncio.timeout(min(1.0, self.t.timeout)):
                await smtp.quit()
        except _EXPECTED:
            pass  # the check has already failed; this was only politeness

    async def _session(self) -> None:
        t = self.t
        loop = asyncio.get_running_loop()

        self.infos = await self._attempt(
            RESOLVE, loop.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in self.infos))
        self._finish(RESOLVE, True, f"{t.host} -> {', '.join(addresses)}")

        sock, address = await self._attempt(CONNECT, _connect_any(self.infos))
        self.link.sock = sock
        self._finish(CONNECT, True, f"connected to {address} port {t.port}")

        smtp = SMTP(
            hostname=t.tls_name,
            sock=sock,
            use_tls=t.mode == Encryption.SSL,
            start_tls=False,  # STARTTLS is a stage of its own, below
            timeout=t.timeout,
            local_hostname=self.local_hostname,
        )
        self.link.smtp = smtp
        if t.mode == Encryption.SSL:
            banner = await self._tls_then_banner(smtp)
        else:
            self.link.handed_over = True
            banner = await self._attempt(BANNER, smtp.connect())
        self.link.track()
        self._finish(BANNER, True, _reply(banner))

        await self._ehlo(smtp)
        if t.mode == Encryption.TLS:
            await self._starttls(smtp)
            await self._ehlo(smtp)

        if t.username:
            await self._auth(smtp)

        reply = await self._attempt(MAIL_FROM, smtp.mail(self.sender))
        self._finish(MAIL_FROM, True, _reply(reply))

        if self.rcpt:
            reply = await self._attempt(RCPT, smtp.rcpt(self.rcpt))
            self._finish(RCPT, True, _reply(reply))
            reply = await self._attempt(DATA, smtp.data(self._message(self.rcpt)))
            self._finish(DATA, True, _reply(reply))

        reply = await self._attempt(QUIT, smtp.quit())
        self._finish(QUIT, True, _reply(reply))

    async def _tls_then_banner(self, smtp: SMTP) -> SMTPResponse:
        """Encryption "ssl": connect() does the handshake and reads the greeting at once."""
        self._started = time.perf_counter()
        watch = _HandshakeWatch()
        try:
            context = await self._context()
            watch.install(context)
            smtp.tls_context = context
            self.link.handed_over = True
            # Each half has aiosmtplib's own timeout; this only backs both up.
            async with asyncio.timeout(2 * self.t.timeout):
                banner = await smtp.connect()
        except _EXPECTED as exc:
            failed_at = time.perf_counter()
            if watch.done_at is None:
                detail, hint = await self._diagnose(TLS, exc)
                self._finish(TLS, False, detail, ms=(failed_at - self._started) * 1000)
                raise _Failed(TLS, self.redact(hint)) from exc
            self._tls_done(watch, TLS, "", ms=(watch.done_at - self._started) * 1000)
            detail, hint = await self._diagnose(BANNER, exc)
            self._finish(BANNER, False, detail, ms=(failed_at - watch.done_at) * 1000)
            raise _Failed(BANNER, self.redact(hint)) from exc
        assert watch.done_at is not None  # connect() returned, so the handshake finished
        self._tls_done(watch, TLS, "", ms=(watch.done_at - self._started) * 1000)
        self._started = watch.done_at  # the banner stage is what came after the handshake
        return banner

    def _tls_done(self, watch: _HandshakeWatch, stage: str, reply: str, *, ms: float) -> None:
        self.tls = watch.info(verified=not self.t.insecure, insecure=self.t.insecure)
        if self.t.insecure:
            trust = f"certificate NOT verified ({ALLOW_UNVERIFIED} is on)"
        else:
            trust = f"certificate verified for {self.t.tls_name}"
        parts = [reply, f"{self.tls.version} {self.tls.cipher}", trust]
        if self.tls.subject:
            parts.append(f"subject {self.tls.subject}, valid until {self.tls.not_after}")
        self._finish(stage, True, "; ".join(p for p in parts if p), ms=ms)

    async def _context(self) -> ssl.SSLContext:
        # Loading the CA store reads files: keep it off the (GUI) event loop thread.
        if self.t.insecure:
            return await asyncio.to_thread(_unverified_context)
        return await asyncio.to_thread(_verifying_context, self.t.cafile)

    async def _ehlo(self, smtp: SMTP) -> None:
        reply = await self._attempt(EHLO, smtp.ehlo())
        self.mechanisms = [m.upper() for m in smtp.server_auth_methods]
        self._finish(EHLO, True, _reply(reply))

    async def _starttls(self, smtp: SMTP) -> None:
        self._started = time.perf_counter()
        if not smtp.supports_extension("starttls"):
            raise self._fail(
                STARTTLS,
                "STARTTLS is not in the server's EHLO reply",
                f"The server does not offer STARTTLS on port {self.t.port}: use its submission "
                "port (usually 587) for TLS, or Encryption SSL if it speaks TLS from the first "
                "byte (usually port 465).",
            )
        watch = _HandshakeWatch()

        async def upgrade() -> SMTPResponse:
            context = await self._context()
            watch.install(context)
            return await smtp.starttls(server_hostname=self.t.tls_name, tls_context=context)

        reply = await self._attempt(STARTTLS, upgrade())
        self.link.track()
        self._tls_done(
            watch, STARTTLS, _reply(reply), ms=(time.perf_counter() - self._started) * 1000
        )

    async def _auth(self, smtp: SMTP) -> None:
        t = self.t
        self._started = time.perf_counter()
        offered = " ".join(self.mechanisms) or "none"
        if not smtp.supports_extension("auth"):
            if t.mode == Encryption.NONE:
                hint = (
                    "The server offers no AUTH on this unencrypted connection: set Encryption "
                    "to TLS (or SSL), since most servers allow AUTH only after TLS."
                )
            else:
                hint = (
                    "The server offers no AUTH here: turn Authentication off if it relays for "
                    "this IP without login, or use its submission port (587 or 465)."
                )
            raise self._fail(AUTH, "AUTH is not in the server's EHLO reply", hint)
        preference = _MECHANISMS_CLEAR if t.mode == Encryption.NONE else _MECHANISMS_TLS
        usable = [m for m in preference if m in smtp.server_auth_methods]
        if not usable:
            raise self._fail(
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
        reply = await self._attempt(AUTH, method(t.username or "", t.password or ""))
        self._finish(AUTH, True, f"{_reply(reply)} ({mechanism.upper()}; offered: {offered})")

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
            f"{self.t.host}:{self.t.port}. It needs no action and can be deleted.\n"
        )
        return message.as_bytes()

    # -- hints

    async def _diagnose(self, stage: str, exc: BaseException) -> tuple[str, str]:
        """The stage detail and the one-sentence hint for a failure."""
        t = self.t
        detail = _error_text(exc)
        if _is_timeout(exc):
            detail = f"no answer within {t.timeout:g} s"
        verify = _find(exc, ssl.SSLCertVerificationError)
        if verify is not None:
            return await self._certificate_failure(verify)
        if stage == BANNER and _is_timeout(exc) and t.mode != Encryption.SSL:
            # The classic mistake: a port that speaks TLS from the first byte (465) set up
            # as STARTTLS or none. Such a server stays silent, waiting for our handshake;
            # one probe tells that apart from a server that is merely slow or filtering.
            probe = await self._unverified_session(tls_on_connect=True)
            if probe.done_at is not None:
                mode = "TLS (STARTTLS)" if t.mode == Encryption.TLS else "none"
                return detail, (
                    f"The server on port {t.port} speaks TLS from the first byte (as port 465 "
                    f"usually does) and sends no greeting in clear: set Encryption to SSL "
                    f"instead of {mode}."
                )
        handler = {
            RESOLVE: self._resolve_hint,
            CONNECT: self._connect_hint,
            BANNER: self._banner_hint,
            TLS: self._tls_hint,
            STARTTLS: self._tls_hint,
            AUTH: self._auth_hint,
            MAIL_FROM: self._envelope_hint,
            RCPT: self._envelope_hint,
            DATA: self._data_hint,
        }.get(stage)
        hint = handler(stage, exc) if handler else None
        return detail, hint or self._generic_hint(stage, exc)

    def _generic_hint(self, stage: str, exc: BaseException) -> str:
        t = self.t
        if stage == QUIT:
            return (
                "The server did not end the session cleanly after QUIT; every earlier stage "
                "passed, so this is usually harmless."
            )
        if _is_timeout(exc):
            return (
                f"The server stopped answering during {stage} (timeout {t.timeout:g} s): raise "
                "the timeout if the server is slow or far away, or check what is in between."
            )
        if _find(exc, ConnectionError) is not None:
            return (
                f"The server closed the connection during {stage}: check its log; it may be "
                "rejecting this workstation's IP address or host name."
            )
        if isinstance(exc, SMTPResponseException):
            return (
                f"The server refused {stage} with {exc.code}: read its reply above and adjust "
                "the delivery server's settings accordingly."
            )
        return f"The {stage} stage failed: {_error_text(exc)}."

    def _resolve_hint(self, stage: str, exc: BaseException) -> str:
        t = self.t
        if _is_timeout(exc):
            return (
                f"Looking up {t.host} took longer than {t.timeout:g} s: check this "
                "workstation's DNS resolver, or enter the server's IP address."
            )
        return (
            f"The host name {t.host} could not be resolved (DNS): check its spelling in "
            "SMTP Host and that this workstation's DNS works."
        )

    def _connect_hint(self, stage: str, exc: BaseException) -> str:
        t = self.t
        where = f"{t.host} port {t.port}"
        if _is_timeout(exc):
            return (
                f"No answer from {where} within {t.timeout:g} s: a firewall or the provider's "
                "IP allow-list is probably dropping this workstation's connection; allow its "
                "IP there, or raise the timeout if the network is slow."
            )
        if _find(exc, ConnectionRefusedError) is not None:
            return (
                f"Connection to {where} was refused (nothing listens there): check the port "
                "and that the SMTP service is running on that host."
            )
        return (
            f"{where} cannot be reached ({_error_text(exc)}): check the network route and "
            "any firewall between this workstation and the server."
        )

    def _banner_hint(self, stage: str, exc: BaseException) -> str | None:
        t = self.t
        if isinstance(exc, SMTPResponseException):
            if exc.code == 421:
                return (
                    "The server is busy or refusing this client (421 greeting): try again "
                    "later, and check that this workstation's IP is not blocked or rate-limited."
                )
            if exc.code < 0:
                return (
                    f"Port {t.port} did not answer like an SMTP server: check the port, and "
                    "set Encryption to SSL if it expects TLS from the first byte."
                )
            return (
                f"The server refused the session in its greeting ({exc.code}): ask its "
                "administrator to allow this workstation's IP address."
            )
        expects_plain = t.mode != Encryption.SSL
        if _is_timeout(exc) and expects_plain:
            if t.port == 465:
                return (
                    "Port 465 speaks TLS from the first byte and so sends no greeting in "
                    "clear: set Encryption to SSL instead of "
                    f"{'TLS (STARTTLS)' if t.mode == Encryption.TLS else 'none'}."
                )
            return (
                f"The server sent no greeting within {t.timeout:g} s: if it expects TLS from "
                "the first byte set Encryption to SSL, otherwise it is overloaded or filtering "
                "this IP (raise the timeout, check its allow-list)."
            )
        if _is_timeout(exc):
            return (
                f"The TLS connection was made but no greeting came within {t.timeout:g} s: "
                "the server is overloaded or filtering this IP; raise the timeout or check "
                "its allow-list."
            )
        if _find(exc, ConnectionError) is not None:
            return (
                "The server closed the connection before greeting: it is probably blocking "
                "this workstation's IP address, or expects TLS from the first byte "
                "(Encryption SSL)."
            )
        return None

    def _tls_hint(self, stage: str, exc: BaseException) -> str | None:
        t = self.t
        if isinstance(exc, SMTPResponseException) and stage == STARTTLS:
            return (
                f"The server refused STARTTLS ({exc.code}) although it offers it: its TLS "
                "setup is broken; ask its administrator, or use its SSL port (usually 465)."
            )
        ssl_error = _find(exc, ssl.SSLError)
        if ssl_error is not None and ssl_error.reason in _PLAINTEXT_REASONS:
            if stage == TLS:
                return (
                    f"The server on port {t.port} answered in plain text, not TLS: set "
                    "Encryption to TLS (STARTTLS) for this port, or use its SSL port "
                    "(usually 465)."
                )
            return (
                "The server's STARTTLS reply was not followed by TLS: a proxy or firewall "
                "may be interfering with SMTP on this network."
            )
        if _is_timeout(exc):
            return (
                f"The TLS handshake did not finish within {t.timeout:g} s: raise the timeout, "
                "or check for a firewall or proxy that intercepts TLS."
            )
        if ssl_error is not None:
            return (
                f"TLS could not be agreed with the server ({ssl_error.reason or ssl_error}): "
                "its TLS versions or ciphers are probably outdated; ask its administrator."
            )
        if _find(exc, ConnectionError) is not None:
            return (
                "The server closed the connection during the TLS handshake: it may not "
                "support a TLS version in common with this workstation, or blocks this IP."
            )
        return None

    async def _certificate_failure(self, error: ssl.SSLCertVerificationError) -> tuple[str, str]:
        t = self.t
        facts = await self._fetch_certificate()
        detail = f"certificate verification failed: {error.verify_message}"
        if facts is not None:
            detail += (
                f"; certificate subject {facts.subject}, issuer {facts.issuer}, "
                f"valid until {facts.not_after.isoformat()}"
            )
        code = error.verify_code
        knowingly = f"or, only if you trust this network, turn on {ALLOW_UNVERIFIED} knowingly"
        if code == _X509_EXPIRED:
            when = f" on {facts.not_after:%Y-%m-%d}" if facts else ""
            return detail, (
                f"The server's certificate expired{when}: renew it on the server, {knowingly}."
            )
        if code == _X509_NOT_YET_VALID:
            when = f" before {facts.not_before:%Y-%m-%d %H:%M} UTC" if facts else " yet"
            return detail, (
                f"The server's certificate is not valid{when}: check the clock of this "
                "workstation and of the server."
            )
        if code in _X509_NAME_MISMATCH:
            names = ", ".join(facts.names) if facts and facts.names else "another name"
            return detail, (
                f"The server's certificate is issued for {names}, not {t.tls_name}: enter "
                f"the name it is issued for as SMTP Host, or install a certificate for "
                f"{t.tls_name} on the server."
            )
        if code in _X509_UNKNOWN_ISSUER:
            expired = (
                f" (and expired on {facts.not_after:%Y-%m-%d})"
                if facts and facts.not_after < datetime.now(UTC)
                else ""
            )
            if facts is not None and facts.self_signed:
                what = f"self-signed ({facts.subject}){expired}"
                trust = "that certificate"
            elif facts is not None:
                what = f"issued by an unknown CA ({facts.issuer}){expired}"
                trust = "that CA's certificate"
            else:
                what = "self-signed or issued by an unknown CA"
                trust = "its CA's certificate"
            return detail, (
                f"The server's certificate is {what}: install {trust} as trusted on this "
                f"workstation, {knowingly}."
            )
        return detail, (
            f"The server's certificate failed verification ({error.verify_message}): fix the "
            f"certificate on the server, {knowingly}."
        )

    async def _unverified_session(self, *, tls_on_connect: bool) -> _HandshakeWatch:
        """A second, unverified TLS session, to learn what the first one could not.

        A failed verification gives no access to the peer certificate, yet the hint should
        name its expiry date or the names it is issued for; and a server that stays silent
        may be waiting for a TLS handshake. Nothing is sent but EHLO, STARTTLS and QUIT,
        and the attempt is bounded like any stage (and by ``_SECOND_LOOK_LIMIT``).
        """
        t = self.t
        watch = _HandshakeWatch()
        link = _Link()
        try:
            async with asyncio.timeout(min(t.timeout, _SECOND_LOOK_LIMIT)):
                context = await asyncio.to_thread(_unverified_context)
                watch.install(context)
                link.sock, _address = await _connect_any(self.infos)
                link.smtp = SMTP(
                    hostname=t.tls_name,
                    sock=link.sock,
                    use_tls=tls_on_connect,
                    start_tls=False,
                    tls_context=context,
                    timeout=t.timeout,
                    local_hostname=self.local_hostname,
                )
                link.handed_over = True
                await link.smtp.connect()
                link.track()
                if not tls_on_connect:
                    await link.smtp.ehlo()
                    await link.smtp.starttls(server_hostname=t.tls_name, tls_context=context)
                    link.track()
                await link.smtp.quit()
        except _EXPECTED:
            pass  # what was learnt before the failure is all there is to learn
        finally:
            await link.close(grace=min(1.0, t.timeout))
        return watch

    async def _fetch_certificate(self) -> _CertFacts | None:
        watch = await self._unverified_session(tls_on_connect=self.t.mode == Encryption.SSL)
        return _cert_facts(watch.der) if watch.der else None

    def _auth_hint(self, stage: str, exc: BaseException) -> str | None:
        if not isinstance(exc, SMTPResponseException):
            return None
        code = exc.code
        if code == 535:
            missing = " (no password is stored)" if not self.t.password else ""
            return (
                f"The server rejected the username or password (535){missing}: re-enter "
                "them; some providers also need an app password or SMTP access enabled for "
                "the account."
            )
        if code == 534:
            return (
                "The server wants a stronger login for this account (534): create an app "
                "password, or allow SMTP login in the provider's account settings."
            )
        if code in (530, 538):
            return f"The server allows AUTH only over TLS ({code}): set Encryption to TLS or SSL."
        if 400 <= code < 500:
            return (
                f"Authentication failed temporarily ({code}): try the test again in a few minutes."
            )
        return None

    def _envelope_hint(self, stage: str, exc: BaseException) -> str | None:
        if not isinstance(exc, SMTPResponseException):
            return None
        code = exc.code
        command = "MAIL FROM" if stage == MAIL_FROM else "RCPT TO"
        if code == 530:
            if self.t.username:
                return (
                    "The server still requires authentication (530) after login: check that "
                    "this account may send through it."
                )
            return (
                "AUTH required but not configured: the server requires authentication (530); "
                "turn on Authentication and enter the username and password."
            )
        if 400 <= code < 500:
            return (
                f"The server deferred {command} with {code}, typical of greylisting or rate "
                "limiting: try the test again later (usually after a few minutes)."
            )
        if stage == MAIL_FROM:
            domain = self.sender.rpartition("@")[2]
            return (
                f"The server refuses the sender {self.sender} ({code}): the sender domain "
                f"{domain} is not allowed for this account or relay; set a Mail From domain "
                "the server accepts (or have it allowed there)."
            )
        return (
            f"The server refuses the recipient {self.rcpt} ({code}): it relays only for "
            "authenticated users or its own domains; check authentication and the address."
        )

    def _data_hint(self, stage: str, exc: BaseException) -> str | None:
        if not isinstance(exc, SMTPResponseException):
            return None
        if 400 <= exc.code < 500:
            return f"The server deferred the message ({exc.code}): try the test again later."
        return (
            f"The server rejected the test message ({exc.code}): its reply names the policy "
            "(spam filter, sender rules) to look at."
        )


async def run_smtp_check(
    target: SmtpTarget,
    *,
    mail_from: str | None = None,
    rcpt: str | None = None,
    progress: Callable[[StageResult], None] | None = None,
) -> SmtpCheckReport:
    """Test ``target`` stage by stage; never raises for a failure of the server or network.

    With ``rcpt`` a short real message is sent (RCPT and DATA stages); without it the
    session ends after MAIL FROM. ``progress`` is called as each stage completes.
    """
    return await _Check(target, mail_from, rcpt, progress).run()


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
