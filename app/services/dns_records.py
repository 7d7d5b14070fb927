"""What a DNS check is given to look for, and what it reports back.

A report's ``status`` is the outcome of the check: ``ok`` (every record found as expected),
``failed`` (at least one record is definitely wrong) or ``error`` (an answer could not be
had, so nothing is concluded).

Expected values are respelled here the way the wire reader spells what is found, so the
record checks and the SPF/DKIM/DMARC checks compare like with like.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from app.services.dns_wire import Server, ip_key, norm

__all__ = [
    "CheckWarning",
    "DnsExpectations",
    "DomainReport",
    "ExpectedRecord",
    "Problem",
    "RecordLike",
    "RecordReport",
    "Status",
    "expected_text",
    "is_spf",
    "record_dicts",
    "record_triples",
    "txt_kind",
]

Problem = Literal[
    "missing",
    "mismatch",
    "wrong_type",
    "zone_appended",
    "flattened",
    "multiple",
    "lookup_failed",
]
Status = Literal["ok", "failed", "error"]

_TAGGED_TXT = re.compile(r"\s*(v=[A-Za-z0-9]+)\s*(?:;|\s|$)")


# ---------------------------------------------------------------- inputs and reports


class RecordLike(Protocol):
    """A record to find: ``ExpectedRecord``, a rendered template record or a snapshot row."""

    @property
    def host(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def value(self) -> str: ...


class DnsExpectations(Protocol):
    """The DNS settings the extra SPF/DKIM/DMARC checks compare with (``EffectiveDnsSettings``)."""

    @property
    def spf_include(self) -> str: ...

    @property
    def dkim_selector(self) -> str: ...

    @property
    def dkim_public_key(self) -> str: ...


def record_triples(records: Iterable[RecordLike]) -> list[tuple[str, str, str]]:
    """Records as the ``(host, type, value)`` triples templates are compared and rendered in."""
    return [(r.host, r.type, r.value) for r in records]


def record_dicts(records: Iterable[RecordLike]) -> list[dict[str, str]]:
    """Records as shown and exported: ``{"host", "type", "value"}`` each."""
    return [{"host": r.host, "type": r.type, "value": r.value} for r in records]


@dataclass(frozen=True)
class ExpectedRecord:
    host: str
    type: str
    value: str


@dataclass
class RecordReport:
    host: str
    type: str
    expected: str
    found: list[str]
    ok: bool
    problem: Problem | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "type": self.type,
            "expected": self.expected,
            "found": list(self.found),
            "ok": self.ok,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CheckWarning:
    """Advice beyond the template's records; ``check`` is spf, dkim, dmarc or domain."""

    check: str
    host: str
    problem: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "host": self.host,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass
class DomainReport:
    domain: str
    records: list[RecordReport] = field(default_factory=list)
    warnings: list[CheckWarning] = field(default_factory=list)
    # Set when the domain as a whole could not be checked (unknown domain, no name servers):
    # the one sentence shown above the records, which then only say "see above".
    error: str | None = None
    # Why, as a code (app.services.dns_verdicts.Verdict), for scripts and tests.
    verdict: str | None = None
    # An enabled domain whose records no longer pass: it stays enabled, but is flagged.
    broken: bool = False
    kind: str | None = None
    nameservers: list[Server] = field(default_factory=list)

    @property
    def status(self) -> Status:
        problems = [r.problem for r in self.records if not r.ok]
        if any(p != "lookup_failed" for p in problems):
            return "failed"
        if self.error is not None or problems:
            return "error"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": self.status,
            "verdict": self.verdict,
            "message": self.error,
            "records": [r.as_dict() for r in self.records],
            "warnings": [w.as_dict() for w in self.warnings],
        }


# ---------------------------------------------------------------- values


def expected_text(rtype: str, value: str) -> str:
    """The expected value spelled as the wire reader spells what is found."""
    text = value.strip()
    if rtype == "CNAME":
        return norm(text)
    if rtype in ("A", "AAAA"):
        return ip_key(text)
    if rtype == "MX":
        preference, _, exchange = text.partition(" ")
        return f"{preference.strip()} {norm(exchange)}" if preference.isdigit() else text
    if rtype == "TXT" and text.startswith('"') and text.endswith('"') and len(text) > 1:
        # A value pasted in zone-file form ("part one" "part two") means the joined text.
        with contextlib.suppress(dns.exception.DNSException, UnicodeError):
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
            strings: tuple[bytes, ...] = rdata.strings  # type: ignore[attr-defined]
            return b"".join(strings).decode("utf-8", "replace")
    return value if rtype == "TXT" else text


def txt_kind(text: str) -> str | None:
    """``v=spf1``, ``v=dmarc1``, ... for tagged TXT records: two of one kind conflict."""
    match = _TAGGED_TXT.match(text)
    return match.group(1).lower() if match else None


def is_spf(text: str) -> bool:
    return txt_kind(text) == "v=spf1"
