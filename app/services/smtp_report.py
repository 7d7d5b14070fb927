"""The vocabulary of the staged SMTP test: its stages, what is tested, what it reports.

The password is used for AUTH only; ``PasswordRedactor`` keeps it out of every stage
detail and hint, so it never appears in a report, a log line or an exception.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from app.models import Encryption
from app.services import validation
from app.services.errors import SmtpStageFailed

__all__ = [
    "AUTH",
    "BANNER",
    "CONNECT",
    "DATA",
    "EHLO",
    "MAIL_FROM",
    "QUIT",
    "RCPT",
    "RESOLVE",
    "STAGES",
    "STARTTLS",
    "TLS",
    "PasswordRedactor",
    "SmtpCheckReport",
    "SmtpTarget",
    "StageResult",
    "TlsInfo",
]

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
        # The range stored servers allow: an infinite or huge timeout would let a silent
        # server hold the test forever, and asyncio refuses NaN and overflowing deadlines.
        object.__setattr__(self, "timeout", validation.smtp_timeout(self.timeout, "Timeout"))

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


class PasswordRedactor:
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
