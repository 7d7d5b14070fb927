"""Why a stage of the SMTP test failed, in one sentence saying what to change.

Each stage has its hints: the server's reply code, a timeout, a refused or closed
connection, TLS spoken where plain text was expected (or the reverse), a certificate that
failed verification. Two cases are told apart by a second, unverified look at the server
(app.services.smtp_link): a certificate's details, and a port that waits silently for a
TLS handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from aiosmtplib import SMTPResponse
from aiosmtplib.errors import SMTPResponseException

from app.models import Encryption
from app.services.smtp_link import AddressInfo, CertFacts, cert_facts, second_look
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
    SmtpTarget,
)

__all__ = [
    "ALLOW_UNVERIFIED",
    "HintContext",
    "diagnose",
    "error_text",
    "is_timeout",
    "reply_text",
]

ALLOW_UNVERIFIED = '"Allow unverified certificate"'

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

T = TypeVar("T")

# The SMTP command of a stage, as a hint names it.
_COMMANDS = {
    EHLO: "EHLO",
    STARTTLS: "STARTTLS",
    AUTH: "AUTH",
    MAIL_FROM: "MAIL FROM",
    RCPT: "RCPT TO",
    DATA: "DATA",
    QUIT: "QUIT",
}


@dataclass(frozen=True)
class HintContext:
    """What the hints need to know of the test that failed."""

    target: SmtpTarget
    sender: str  # the MAIL FROM address
    rcpt: str | None
    infos: Sequence[AddressInfo]  # the resolved addresses, for the second look
    local_hostname: str


# --------------------------------------------------------------------------- errors


def reply_text(response: SMTPResponse | SMTPResponseException) -> str:
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


def find_cause(exc: BaseException, kind: type[T]) -> T | None:
    for item in _causes(exc):
        if isinstance(item, kind):
            return item
    return None


def is_timeout(exc: BaseException) -> bool:
    for item in _causes(exc):
        if isinstance(item, TimeoutError):
            return True
        # asyncio's own TLS handshake timeout surfaces as ConnectionAbortedError.
        if isinstance(item, ConnectionAbortedError) and "longer than" in str(item):
            return True
    return False


def error_text(exc: BaseException) -> str:
    if isinstance(exc, SMTPResponseException):
        return reply_text(exc)
    innermost = _causes(exc)[-1]
    if isinstance(innermost, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {innermost.verify_message}"
    text = str(innermost) or str(exc) or type(innermost).__name__
    return text


# --------------------------------------------------------------------------- hints


async def diagnose(ctx: HintContext, stage: str, exc: BaseException) -> tuple[str, str]:
    """The stage detail and the one-sentence hint for a failure."""
    t = ctx.target
    detail = error_text(exc)
    if is_timeout(exc):
        detail = f"no answer within {t.timeout:g} s"
    verify = find_cause(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        return await _certificate_failure(ctx, verify)
    if stage == BANNER and is_timeout(exc) and t.mode != Encryption.SSL:
        # The classic mistake: a port that speaks TLS from the first byte (465) set up
        # as STARTTLS or none. Such a server stays silent, waiting for our handshake;
        # one probe tells that apart from a server that is merely slow or filtering.
        probe = await second_look(t, ctx.infos, ctx.local_hostname, tls_on_connect=True)
        if probe.done_at is not None:
            mode = "TLS (STARTTLS)" if t.mode == Encryption.TLS else "none"
            return detail, (
                f"The server on port {t.port} speaks TLS from the first byte (as port 465 "
                f"usually does) and sends no greeting in clear: set Encryption to SSL "
                f"instead of {mode}."
            )
    unreadable = find_cause(exc, SMTPResponseException)
    if stage != BANNER and unreadable is not None and unreadable.code < 0:
        return detail, _unreadable_reply_hint(ctx, stage, unreadable)
    handler = {
        RESOLVE: _resolve_hint,
        CONNECT: _connect_hint,
        BANNER: _banner_hint,
        TLS: _tls_hint,
        STARTTLS: _tls_hint,
        AUTH: _auth_hint,
        MAIL_FROM: _envelope_hint,
        RCPT: _envelope_hint,
        DATA: _data_hint,
    }.get(stage)
    hint = handler(ctx, stage, exc) if handler else None
    return detail, hint or _generic_hint(ctx, stage, exc)


def _unreadable_reply_hint(ctx: HintContext, stage: str, exc: SMTPResponseException) -> str:
    """aiosmtplib's code -1: a reply it could not read, which is not a refusal by the server.

    It gives up on a reply longer than 32 KiB or with a line over 8 KiB ("Response too
    long"), and on a line that does not start with a reply code ("Malformed ...").
    """
    command = _COMMANDS.get(stage, stage.upper())
    if "too long" in exc.message.lower():
        what = "was too long to be an SMTP reply (more than 32 KiB, or a line over 8 KiB)"
    else:
        what = "was malformed (a line without a three-digit reply code)"
    return (
        f"The server's reply to {command} {what}, so the test stopped reading it: check what "
        f"listens on port {ctx.target.port} and the server's configuration."
    )


def _generic_hint(ctx: HintContext, stage: str, exc: BaseException) -> str:
    t = ctx.target
    if stage == QUIT:
        return (
            "The server did not end the session cleanly after QUIT; every earlier stage "
            "passed, so this is usually harmless."
        )
    if is_timeout(exc):
        return (
            f"The server stopped answering during {stage} (timeout {t.timeout:g} s): raise "
            "the timeout if the server is slow or far away, or check what is in between."
        )
    if find_cause(exc, ConnectionError) is not None:
        return (
            f"The server closed the connection during {stage}: check its log; it may be "
            "rejecting this workstation's IP address or host name."
        )
    if isinstance(exc, SMTPResponseException):
        return (
            f"The server refused {stage} with {exc.code}: read its reply above and adjust "
            "the delivery server's settings accordingly."
        )
    return f"The {stage} stage failed: {error_text(exc)}."


def _resolve_hint(ctx: HintContext, stage: str, exc: BaseException) -> str:
    t = ctx.target
    if is_timeout(exc):
        return (
            f"Looking up {t.host} took longer than {t.timeout:g} s: check this "
            "workstation's DNS resolver, or enter the server's IP address."
        )
    return (
        f"The host name {t.host} could not be resolved (DNS): check its spelling in "
        "SMTP Host and that this workstation's DNS works."
    )


def _connect_hint(ctx: HintContext, stage: str, exc: BaseException) -> str:
    t = ctx.target
    where = f"{t.host} port {t.port}"
    if is_timeout(exc):
        return (
            f"No answer from {where} within {t.timeout:g} s: a firewall or the provider's "
            "IP allow-list is probably dropping this workstation's connection; allow its "
            "IP there, or raise the timeout if the network is slow."
        )
    if find_cause(exc, ConnectionRefusedError) is not None:
        return (
            f"Connection to {where} was refused (nothing listens there): check the port "
            "and that the SMTP service is running on that host."
        )
    return (
        f"{where} cannot be reached ({error_text(exc)}): check the network route and "
        "any firewall between this workstation and the server."
    )


def _banner_hint(ctx: HintContext, stage: str, exc: BaseException) -> str | None:
    t = ctx.target
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
    if is_timeout(exc) and expects_plain:
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
    if is_timeout(exc):
        return (
            f"The TLS connection was made but no greeting came within {t.timeout:g} s: "
            "the server is overloaded or filtering this IP; raise the timeout or check "
            "its allow-list."
        )
    if find_cause(exc, ConnectionError) is not None:
        return (
            "The server closed the connection before greeting: it is probably blocking "
            "this workstation's IP address, or expects TLS from the first byte "
            "(Encryption SSL)."
        )
    return None


def _tls_hint(ctx: HintContext, stage: str, exc: BaseException) -> str | None:
    t = ctx.target
    if isinstance(exc, SMTPResponseException) and stage == STARTTLS:
        return (
            f"The server refused STARTTLS ({exc.code}) although it offers it: its TLS "
            "setup is broken; ask its administrator, or use its SSL port (usually 465)."
        )
    ssl_error = find_cause(exc, ssl.SSLError)
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
    if is_timeout(exc):
        return (
            f"The TLS handshake did not finish within {t.timeout:g} s: raise the timeout, "
            "or check for a firewall or proxy that intercepts TLS."
        )
    if ssl_error is not None:
        return (
            f"TLS could not be agreed with the server ({ssl_error.reason or ssl_error}): "
            "its TLS versions or ciphers are probably outdated; ask its administrator."
        )
    if find_cause(exc, ConnectionError) is not None:
        return (
            "The server closed the connection during the TLS handshake: it may not "
            "support a TLS version in common with this workstation, or blocks this IP."
        )
    return None


async def _certificate_failure(
    ctx: HintContext, error: ssl.SSLCertVerificationError
) -> tuple[str, str]:
    t = ctx.target
    facts = await _fetch_certificate(ctx)
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


async def _fetch_certificate(ctx: HintContext) -> CertFacts | None:
    watch = await second_look(
        ctx.target,
        ctx.infos,
        ctx.local_hostname,
        tls_on_connect=ctx.target.mode == Encryption.SSL,
    )
    return cert_facts(watch.der) if watch.der else None


def _auth_hint(ctx: HintContext, stage: str, exc: BaseException) -> str | None:
    if not isinstance(exc, SMTPResponseException):
        return None
    code = exc.code
    if code == 535:
        missing = " (no password is stored)" if not ctx.target.password else ""
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
        return f"Authentication failed temporarily ({code}): try the test again in a few minutes."
    return None


def _envelope_hint(ctx: HintContext, stage: str, exc: BaseException) -> str | None:
    if not isinstance(exc, SMTPResponseException):
        return None
    code = exc.code
    command = "MAIL FROM" if stage == MAIL_FROM else "RCPT TO"
    if code == 530:
        if ctx.target.username:
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
        domain = ctx.sender.rpartition("@")[2]
        return (
            f"The server refuses the sender {ctx.sender} ({code}): the sender domain "
            f"{domain} is not allowed for this account or relay; set a Mail From domain "
            "the server accepts (or have it allowed there)."
        )
    return (
        f"The server refuses the recipient {ctx.rcpt} ({code}): it relays only for "
        "authenticated users or its own domains; check authentication and the address."
    )


def _data_hint(ctx: HintContext, stage: str, exc: BaseException) -> str | None:
    if not isinstance(exc, SMTPResponseException):
        return None
    if 400 <= exc.code < 500:
        return f"The server deferred the message ({exc.code}): try the test again later."
    return (
        f"The server rejected the test message ({exc.code}): its reply names the policy "
        "(spam filter, sender rules) to look at."
    )
