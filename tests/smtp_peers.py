"""Real SMTP peers for the staged SMTP test: certificates made here, servers on 127.0.0.1.

Every server runs on the test's own event loop on a random port (``port=0``), so there
are no threads to join and no fixed ports to collide on. aiosmtpd provides the SMTP
dialogue (plain, STARTTLS, TLS on connect, AUTH); a few raw asyncio servers misbehave on
purpose (a 421 greeting, no greeting at all). Certificates are made with ``cryptography``:
a private CA the tests trust through ``SmtpTarget.cafile``, and leaves that are good,
expired, issued for another name, or self-signed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCALHOST = "127.0.0.1"
SERVER_NAME = "mail.postroom.test"  # the name the good certificates are issued for
OTHER_NAME = "other.example.net"  # the name of the wrong-host certificate
EXPIRED_ON = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
CLOSE_GRACE = 2.0  # seconds a peer waits for its connections to finish closing

# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Files of a private CA and the server certificates the tests use."""

    ca: Path  # the CA certificate, to trust via SmtpTarget.cafile
    good: CertFiles  # for SERVER_NAME, signed by the CA
    expired: CertFiles  # for SERVER_NAME, signed by the CA, expired on EXPIRED_ON
    wrong_name: CertFiles  # for OTHER_NAME only, signed by the CA
    self_signed: CertFiles  # for SERVER_NAME, its own issuer


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postroom Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    # EC keys: generated in microseconds, where RSA would slow every test run down.
    return ec.generate_private_key(ec.SECP256R1())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Any) -> CertFiles:
    files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def make_ca(common_name: str = "Postroom Test CA") -> tuple[x509.Certificate, Any]:
    key = _key()
    now = datetime.now(UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    names: Iterable[str],
    *,
    issuer: tuple[x509.Certificate, Any] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    client: bool = False,
) -> tuple[x509.Certificate, Any]:
    """A server certificate for ``names``, signed by ``issuer`` (self-signed without one);
    with ``client`` one for a client to prove itself with (TLS client authentication)."""
    names = list(names)
    key = _key()
    now = datetime.now(UTC)
    subject = _name(names[0])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca_path,
        good=_write(directory, "good", *make_leaf([SERVER_NAME, "localhost"], issuer=ca)),
        expired=_write(
            directory,
            "expired",
            *make_leaf(
                [SERVER_NAME],
                issuer=ca,
                not_before=EXPIRED_ON - timedelta(days=90),
                not_after=EXPIRED_ON,
            ),
        ),
        wrong_name=_write(directory, "wrong-name", *make_leaf([OTHER_NAME], issuer=ca)),
        self_signed=_write(directory, "self-signed", *make_leaf([SERVER_NAME])),
    )


def server_context(files: CertFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    return context


# --------------------------------------------------------------------------- servers


@dataclass
class Connection:
    """A server-side connection: its transport and the socket underneath it."""

    transport: asyncio.BaseTransport
    sock: Any  # asyncio's TransportSocket; fileno() is -1 once really closed

    @classmethod
    def of(cls, transport: asyncio.BaseTransport) -> Connection:
        return cls(transport, transport.get_extra_info("socket"))

    @property
    def open(self) -> bool:
        return self.sock is not None and self.sock.fileno() != -1


@dataclass
class Peer:
    """A server listening on 127.0.0.1:port until ``stop()``."""

    port: int
    server: asyncio.Server
    connections: list[Connection] = field(default_factory=list)
    host: str = LOCALHOST

    async def stop(self) -> None:
        self.server.close()
        for conn in self.connections:
            if not conn.transport.is_closing():
                conn.transport.close()
        await self.server.wait_closed()
        # Transports finish closing in later loop callbacks; a bounded poll lets them, so
        # none is left for the garbage collector to report as unclosed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        while loop.time() < deadline and any(conn.open for conn in self.connections):
            await asyncio.sleep(0.005)
        for conn in self.connections:
            if conn.open and isinstance(conn.transport, asyncio.Transport):
                conn.transport.abort()
        await asyncio.sleep(0)


class RecordingHandler:
    """Accepts everything and keeps the messages; MAIL/RCPT replies can be overridden."""

    def __init__(self, *, mail_reply: str | None = None, rcpt_reply: str | None = None) -> None:
        self.mail_reply = mail_reply
        self.rcpt_reply = rcpt_reply
        self.envelopes: list[Envelope] = []

    @property
    def messages(self) -> list[Message]:
        return [message_from_bytes(bytes(e.original_content or b"")) for e in self.envelopes]

    async def handle_MAIL(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Message accepted for delivery"


def offer_pipelining(session: Session, hostname: str, responses: list[str]) -> list[str]:
    """For a handler's ``handle_EHLO``: aiosmtpd's EHLO reply with PIPELINING added, as
    Postfix and most MTAs offer it (aiosmtpd reads pipelined commands in order anyway)."""
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class Accounts:
    """An aiosmtpd authenticator with one account; it remembers what it was offered."""

    def __init__(self, username: str, password: str, *, echo: bool = False) -> None:
        self.username = username.encode()
        self.password = password.encode()
        self.echo = echo  # a careless server quoting the offered password in its 535
        self.attempts: list[str] = []

    def __call__(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        self.attempts.append(mechanism)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username
            and auth_data.password == self.password
        )
        message = None
        if not ok and self.echo and isinstance(auth_data, LoginPassword):
            message = f"535 5.7.8 Bad password {auth_data.password.decode()!r}"
        # handled=False: aiosmtpd itself answers (235, or 535 / our message on failure).
        return AuthResult(success=ok, handled=False, message=message)


async def start_smtp(
    handler: object,
    *,
    starttls: ssl.SSLContext | None = None,
    tls_on_connect: ssl.SSLContext | None = None,
    authenticator: Accounts | None = None,
    auth_exclude: Iterable[str] = (),
) -> Peer:
    """An aiosmtpd server: plain, with STARTTLS (``starttls``) or TLS on connect.

    With an ``authenticator`` AUTH is required before MAIL, and offered only after
    STARTTLS (aiosmtpd's default ``auth_require_tls``), as real submission servers do.
    """
    loop = asyncio.get_running_loop()
    connections: list[Connection] = []

    def protocol() -> SmtpProtocol:
        smtp = _TrackedSmtp(
            connections,
            handler,
            hostname=SERVER_NAME,  # else aiosmtpd looks up this host's FQDN (slow DNS)
            tls_context=starttls,
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_exclude_mechanism=list(auth_exclude),
            loop=loop,
        )
        return smtp

    server = await loop.create_server(protocol, LOCALHOST, 0, ssl=tls_on_connect)
    port = server.sockets[0].getsockname()[1]
    return Peer(port=port, server=server, connections=connections)


class _TrackedSmtp(SmtpProtocol):
    """aiosmtpd's protocol, remembering its transport so the peer can close it for sure."""

    def __init__(self, connections: list[Connection], *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again with the TLS transport after STARTTLS: same socket, tracked too.
        self._connections.append(Connection.of(transport))
        super().connection_made(transport)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_raw(behaviour: Behaviour) -> Peer:
    """A TCP server whose every connection runs ``behaviour`` (then is closed)."""
    connections: list[Connection] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(Connection.of(writer.transport))
        try:
            await behaviour(reader, writer)
        except ConnectionError:
            pass  # the client went away first: fine for a misbehaving test server
        finally:
            writer.close()

    server = await asyncio.start_server(serve, LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    return Peer(port=port, server=server, connections=connections)


async def greet_421(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"421 4.3.2 mail.postroom.test Service not available, closing channel\r\n")
    await writer.drain()


async def stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, never greet, and wait for the client to give up."""
    await reader.read()


EHLO_FLOOD_LINES = 100_000


async def flood_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet, then answer EHLO with a 100,000-line reply, as a broken or hostile server.

    Written in chunks with drain(), so the peer stops as soon as the client closes (drain
    raises ConnectionError, which ``start_raw`` expects) instead of buffering megabytes.
    """
    writer.write(b"220 mail.postroom.test ESMTP flood\r\n")
    await writer.drain()
    if not await reader.readline():  # EHLO; an empty read means the client left
        return
    chunk = b"250-" + b"X" * 60 + b"\r\n"
    for _ in range(EHLO_FLOOD_LINES // 1000):
        writer.write(chunk * 1000)
        await writer.drain()
    writer.write(b"250 OK\r\n")
    await writer.drain()
    await reader.read()  # until the client closes the connection
