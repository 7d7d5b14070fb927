"""The connections of the staged SMTP test: sockets, TLS contexts and certificates.

As dns_wire does for the DNS checks, this holds what the SMTP test needs below the SMTP
dialogue: connecting to the first address that accepts, closing for sure (no transport
outlives a test), seeing a TLS handshake from inside asyncio, reading a certificate, and
the unverified second look a failed test takes to explain itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiosmtplib import SMTP
from aiosmtplib.errors import SMTPException
from cryptography import x509
from cryptography.x509.oid import NameOID

from app.services.smtp_report import SmtpTarget, TlsInfo

__all__ = [
    "NETWORK_FAILURES",
    "AddressInfo",
    "CertFacts",
    "HandshakeWatch",
    "SmtpLink",
    "cert_facts",
    "connect_any",
    "default_local_hostname",
    "second_look",
    "unverified_context",
    "verifying_context",
]

# Failures of the network or of the peer. Anything else escaping a stage is a bug in
# Postroom and goes to the one crash report instead of being dressed up as a hint.
NETWORK_FAILURES = (OSError, SMTPException, TimeoutError, ValueError)

# The unverified second session (certificate details, TLS-on-connect probe) runs after a
# failure: a server that answers at all does so within one round trip, so it gets at most
# this long, keeping a failed check close to the configured timeout.
_SECOND_LOOK_LIMIT = 2.0

# One getaddrinfo() entry: family, type, proto, canonical name, socket address.
AddressInfo = tuple[Any, ...]


def default_local_hostname() -> str:
    # gethostname() does no DNS lookup; aiosmtplib's default (getfqdn) can block for
    # seconds on a workstation with broken reverse DNS, before the first stage even runs.
    name = socket.gethostname()
    return name if name and name.isascii() else "localhost"


@dataclass(frozen=True)
class CertFacts:
    subject: str
    issuer: str
    not_after: datetime
    not_before: datetime
    names: list[str]
    self_signed: bool


def cert_facts(der: bytes) -> CertFacts | None:
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
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        not_before=cert.not_valid_before_utc,
        names=names,
        self_signed=cert.issuer == cert.subject,
    )


class HandshakeWatch:
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
        facts = cert_facts(self.der) if self.der else None
        return TlsInfo(
            version=self.version,
            cipher=self.cipher,
            subject=facts.subject if facts else None,
            issuer=facts.issuer if facts else None,
            not_after=facts.not_after.isoformat() if facts else None,
            verified=verified,
            insecure_used=insecure,
        )


def verifying_context(cafile: str | None) -> ssl.SSLContext:
    # create_default_context checks the chain and the host name; with cafile it trusts
    # exactly that bundle (a private CA) instead of the system store.
    return ssl.create_default_context(cafile=cafile)


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SmtpLink:
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


async def connect_any(infos: Sequence[AddressInfo]) -> tuple[socket.socket, str]:
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


async def second_look(
    target: SmtpTarget,
    infos: Sequence[AddressInfo],
    local_hostname: str,
    *,
    tls_on_connect: bool,
) -> HandshakeWatch:
    """A second, unverified TLS session, to learn what the first one could not.

    A failed verification gives no access to the peer certificate, yet the hint should
    name its expiry date or the names it is issued for; and a server that stays silent
    may be waiting for a TLS handshake. Nothing is sent but EHLO, STARTTLS and QUIT,
    and the attempt is bounded like any stage (and by ``_SECOND_LOOK_LIMIT``).
    """
    watch = HandshakeWatch()
    link = SmtpLink()
    try:
        async with asyncio.timeout(min(target.timeout, _SECOND_LOOK_LIMIT)):
            context = await asyncio.to_thread(unverified_context)
            watch.install(context)
            link.sock, _address = await connect_any(infos)
            link.smtp = SMTP(
                hostname=target.tls_name,
                sock=link.sock,
                use_tls=tls_on_connect,
                start_tls=False,
                tls_context=context,
                timeout=target.timeout,
                local_hostname=local_hostname,
            )
            link.handed_over = True
            await link.smtp.connect()
            link.track()
            if not tls_on_connect:
                await link.smtp.ehlo()
                await link.smtp.starttls(server_hostname=target.tls_name, tls_context=context)
                link.track()
            await link.smtp.quit()
    except NETWORK_FAILURES:
        pass  # what was learnt before the failure is all there is to learn
    finally:
        await link.close(grace=min(1.0, target.timeout))
    return watch
