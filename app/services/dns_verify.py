"""Live DNS checks of sender domains: are the records a domain must publish really there?

Decisions:

* A domain's own records are asked of its *authoritative* name servers (zone found by an
  SOA walk, NS names resolved to addresses), never of a recursive resolver: a resolver may
  still hold the "no such record" answer it cached before the user published the record,
  and the domain would stay pending for that negative TTL. Names outside the domain (CNAME
  targets, SPF includes) are asked of the resolver, as a receiving mail server sees them.
* ``nameserver=(address, port)`` sends every question to that one server instead: for tests
  and split-horizon setups where the console must see an internal view.
* All questions of one run share one UDP socket per address family, matched to answers by
  server, port, query ID and question (app.services.dns_wire: the wire format and that
  transport), plus a per-run answer cache. A bulk check of a
  thousand domains is then bound by the server, not by creating sockets and resolvers.
* A report's ``status`` is the outcome of the check: ``ok`` (every record found as
  expected), ``failed`` (at least one record is definitely wrong) or ``error`` (an answer
  could not be had, so nothing is concluded). Only ``ok`` enables a pending domain, and an
  ``error`` never marks an enabled domain as broken: a local network outage is not the
  customer's fault.
* SPF, DKIM and DMARC are checked beyond the template's records and reported as warnings:
  they are advice about deliverability, and never block enabling a domain. A host whose
  template record already failed gets no warning as well: one problem, one message.
* Storing a check result does not bump the domain's version: a check is not an edit, and a
  background recheck must not make an administrator's open edit form stale. A status
  change (approval pending -> enabled) is an edit and does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.models import DomainStatus, SenderDomain, SenderDomainRecord, TemplateKind
from app.models.base import utcnow
from app.models.database import Database
from app.services import audit, validation
from app.services.dns_settings import EffectiveDnsSettings, dmarc_policy, get_settings
from app.services.dns_templates import (
    RenderedRecord,
    get_template,
    installation_hash_secret,
    random_label,
    render_records,
)
from app.services.dns_wire import (
    MAX_CNAME_HOPS,
    Answer,
    LookupFailed,
    Question,
    Server,
    Transport,
    WireError,
    ip_key,
    merge,
    norm,
    parse,
)
from app.services.errors import NotFoundError, PostroomError, ValidationError
from app.services.sender_domains import ENTITY, get_sender_domain

__all__ = [
    "CheckWarning",
    "Discovery",
    "DomainReport",
    "ExpectedRecord",
    "RecordReport",
    "check_template_adhoc",
    "find_authoritative_servers",
    "recheck_enabled",
    "recheck_enabled_once",
    "render_template_for_check",
    "verify_many",
    "verify_records",
    "verify_sender_domain",
]

logger = logging.getLogger(__name__)

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
ProgressCallback = Callable[[int, int, "DomainReport"], None]

MAX_SPF_LOOKUPS = 10  # RFC 7208 4.6.4
_MAX_SPF_DEPTH = 10  # includes nested deeper than this are not followed
_MAX_SPF_FETCHES = 40  # SPF records fetched per checked record, whatever the nesting
_MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept shorter keys
_WRITE_BATCH = 100  # domains stored per write transaction during a bulk check
_QUERY_CHUNK = 500  # names per IN (...) list, well below every backend's parameter limit
_PROBE_TYPES = ("CNAME", "A", "AAAA", "TXT", "MX")
_TXT_KIND = re.compile(r"\s*(v=[A-Za-z0-9]+)\s*(?:;|\s|$)")


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


@dataclass(frozen=True)
class ExpectedRecord:
    host: str
    type: str
    value: str


@dataclass(frozen=True)
class Discovery:
    """How the authoritative servers are found when no ``nameserver`` override is given.

    ``resolver`` is the recursive (or stub) resolver asked for SOA, NS and addresses, and
    for names outside the domain; None reads the system's resolv.conf. ``port`` is the
    port the authoritative servers are asked on: 53 on the internet, another in tests.
    """

    resolver: Server | None = None
    port: int = 53


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
    # Set when the domain as a whole could not be checked (unknown domain, no name servers).
    error: str | None = None
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
            "records": [r.as_dict() for r in self.records],
            "warnings": [w.as_dict() for w in self.warnings],
        }


# ---------------------------------------------------------------- names and values


def _under(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _expected_text(rtype: str, value: str) -> str:
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


def _txt_kind(text: str) -> str | None:
    """``v=spf1``, ``v=dmarc1``, ... for tagged TXT records: two of one kind conflict."""
    match = _TXT_KIND.match(text)
    return match.group(1).lower() if match else None


def _is_spf(text: str) -> bool:
    return _txt_kind(text) == "v=spf1"


def _relative(host: str, zone: str) -> str:
    return "@" if host == zone else host[: -len(zone) - 1]


# ---------------------------------------------------------------- lookups


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


class _Lookup:
    """The questions of one run: where to ask, the shared sockets, and an answer cache."""

    def __init__(
        self,
        *,
        nameserver: Server | None = None,
        discovery: Discovery | None = None,
        timeout: float = 5.0,
    ) -> None:
        if timeout <= 0:
            raise ValidationError("Timeout", "must be more than 0 seconds.")
        self._override = (nameserver[0], int(nameserver[1])) if nameserver else None
        self._discovery = discovery or Discovery()
        self._timeout = timeout
        self._transport = Transport()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._answers: dict[tuple[str, str, tuple[Server, ...]], asyncio.Future[Answer]] = {}
        self._zones: dict[str, asyncio.Task[tuple[str, tuple[Server, ...]]]] = {}
        self._zone_servers: dict[str, asyncio.Task[tuple[Server, ...]]] = {}

    async def __aenter__(self) -> _Lookup:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for task in (*self._zones.values(), *self._zone_servers.values()):
            task.cancel()
        self._transport.close()

    # -- where to ask

    def _stub_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            given = self._discovery.resolver
            try:
                resolver = dns.asyncresolver.Resolver(configure=given is None)
            except dns.exception.DNSException as exc:
                raise LookupFailed(f"no DNS resolver is configured ({_describe(exc)})") from None
            if given is not None:
                resolver.nameservers = [given[0]]
                resolver.port = int(given[1])
            resolver.lifetime = self._timeout
            resolver.cache = dns.resolver.Cache()
            self._resolver = resolver
        return self._resolver

    def _resolver_servers(self) -> tuple[Server, ...]:
        if self._override is not None:
            return (self._override,)
        resolver = self._stub_resolver()
        servers: list[Server] = []
        for nameserver in resolver.nameservers:
            if isinstance(nameserver, str):
                port = resolver.nameserver_ports.get(nameserver, resolver.port)
                servers.append((nameserver, port))
            elif isinstance(nameserver, dns.nameserver.Do53Nameserver):
                servers.append((nameserver.address, nameserver.port))
        if not servers:
            raise LookupFailed("the system resolver has no plain DNS name server to ask")
        return tuple(servers)

    async def zone_of(self, name: str) -> tuple[str, tuple[Server, ...]]:
        """The zone holding ``name`` and its authoritative servers (the override, if set)."""
        if self._override is not None:
            return "", (self._override,)
        task = self._zones.get(name)
        if task is None:
            task = self._zones[name] = asyncio.ensure_future(self._discover(name))
        return await asyncio.shield(task)

    async def _discover(self, name: str) -> tuple[str, tuple[Server, ...]]:
        resolver = self._stub_resolver()
        try:
            zone_name = await dns.asyncresolver.zone_for_name(
                name, resolver=resolver, lifetime=self._timeout
            )
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"could not find the DNS zone of {name}: {_describe(exc)}") from None
        zone = norm(zone_name)
        task = self._zone_servers.get(zone)
        if task is None:
            task = self._zone_servers[zone] = asyncio.ensure_future(self._zone_ns(zone))
        return zone, await asyncio.shield(task)

    async def _zone_ns(self, zone: str) -> tuple[Server, ...]:
        resolver = self._stub_resolver()
        try:
            ns_answer = await resolver.resolve(zone + ".", "NS", lifetime=self._timeout)
        except dns.exception.DNSException as exc:
            raise LookupFailed(
                f"could not read the NS records of {zone}: {_describe(exc)}"
            ) from None
        hosts = sorted({norm(rdata.target) for rdata in ns_answer})

        async def addresses(host: str, rdtype: str) -> list[str]:
            try:
                answer = await resolver.resolve(
                    host + ".", rdtype, lifetime=self._timeout, raise_on_no_answer=False
                )
            except dns.exception.DNSException:
                return []  # one unresolvable NS name is not fatal while others resolve
            return [ip_key(rdata.address) for rdata in answer]

        found = await asyncio.gather(
            *(addresses(host, rdtype) for rdtype in ("A", "AAAA") for host in hosts)
        )
        # IPv4 first: many workstations have no IPv6 route, and a silent v6 server would
        # cost its whole timeout before the next one is tried.
        ordered = list(dict.fromkeys(address for group in found for address in group))
        port = self._discovery.port
        servers = tuple((address, port) for address in ordered)
        if not servers:
            raise LookupFailed(
                f"none of the name servers of {zone} ({', '.join(hosts) or 'none listed'}) "
                "has an address"
            )
        return servers

    # -- asking

    async def ask(self, name: str, rdtype: str, servers: tuple[Server, ...]) -> Answer:
        """One question (no CNAME following beyond what the response holds), cached per run."""
        key = (name, rdtype, servers)
        shared = self._answers.get(key)
        if shared is not None:
            # Shielded: a waiter being cancelled must not cancel the answer others wait for.
            return await asyncio.shield(shared)
        shared = self._answers[key] = asyncio.get_running_loop().create_future()
        try:
            answer = await self._ask(name, rdtype, servers)
        except BaseException:
            del self._answers[key]  # a later question asks again
            shared.cancel()
            raise
        shared.set_result(answer)
        return answer

    async def _ask(self, name: str, rdtype: str, servers: tuple[Server, ...]) -> Answer:
        try:
            question = Question.make(name, rdtype)
        except dns.exception.DNSException as exc:
            return Answer(name, dns.rcode.FORMERR, error=f"{name} is not a valid name ({exc})")
        tried = servers[:3]
        budget = self._timeout / len(tried)
        problems: list[str] = []
        for server in tried:
            try:
                response = await self._transport.exchange(question, server, budget)
                if response.rcode == dns.rcode.FORMERR:
                    # A server from before EDNS (RFC 6891 7): ask again without it.
                    response = await self._transport.exchange(question, server, budget, edns=False)
            except (OSError, dns.exception.DNSException, WireError) as exc:
                problems.append(f"{server[0]} port {server[1]}: {_describe(exc)}")
                continue
            answer = parse(response, question)
            if answer.error is None:
                return answer
            problems.append(f"{server[0]} port {server[1]}: {answer.error}")
        return Answer(question.name, dns.rcode.SERVFAIL, error="; ".join(problems))

    async def query(self, domain: str, name: str, rdtype: str, *, follow: bool = True) -> Answer:
        """Ask the authoritative servers of ``domain`` (or of ``name``, outside it)."""
        try:
            _zone, servers = await self.zone_of(domain if _under(name, domain) else name)
            answer = await self.ask(name, rdtype, servers)
            if answer.referral:
                # ``name`` sits in a zone delegated below the domain's own zone.
                if self._override is not None:
                    return Answer(name, dns.rcode.SERVFAIL, error=self._not_authoritative(name))
                _zone, servers = await self.zone_of(name)
                answer = await self.ask(name, rdtype, servers)
        except LookupFailed as exc:
            return Answer(name, dns.rcode.SERVFAIL, error=str(exc))
        if follow and not answer.complete and answer.error is None:
            answer = merge(answer, await self.resolve(answer.chain[-1], rdtype))
        return answer

    def _not_authoritative(self, name: str) -> str:
        assert self._override is not None
        address, port = self._override
        return f"{address} port {port} is not authoritative for {name} (it sent a referral)"

    async def resolve(self, name: str, rdtype: str) -> Answer:
        """Ask the resolver about a name outside the checked domain, following CNAMEs."""
        try:
            servers = self._resolver_servers()
        except LookupFailed as exc:
            return Answer(name, dns.rcode.SERVFAIL, error=str(exc))
        answer = await self.ask(name, rdtype, servers)
        for _ in range(MAX_CNAME_HOPS):
            if answer.complete or answer.error is not None:
                return answer
            answer = merge(answer, await self.ask(answer.chain[-1], rdtype, servers))
        return Answer(name, dns.rcode.SERVFAIL, error=f"the CNAME chain from {name} is too long")


async def find_authoritative_servers(
    domain: str, *, discovery: Discovery | None = None, timeout: float = 5.0
) -> tuple[str, list[Server]]:
    """The zone holding ``domain`` and the (address, port) of its authoritative servers."""
    name = validation.domain(domain, "Sender domain")
    async with _Lookup(discovery=discovery, timeout=timeout) as lookup:
        try:
            zone, servers = await lookup.zone_of(name)
        except LookupFailed as exc:
            raise ValidationError(
                "Sender domain", f"{exc}; check the domain's delegation."
            ) from None
    return zone, list(servers)


# ---------------------------------------------------------------- one record


@dataclass(frozen=True)
class _Check:
    """One record being checked: its names and values, and how a verdict is written down."""

    record: RecordLike
    host: str
    rtype: str
    wanted: str  # the expected value spelled as found values are
    shown: str  # the expected value as the user must enter it

    @classmethod
    def of(cls, record: RecordLike) -> _Check:
        rtype = record.type.strip().upper()
        return cls(
            record,
            norm(record.host),
            rtype,
            _expected_text(rtype, record.value),
            record.value.strip(),
        )

    def verdict(self, found: Sequence[str], problem: Problem | None, detail: str) -> RecordReport:
        return RecordReport(
            host=self.host,
            type=self.rtype,
            expected=self.record.value,
            found=list(found),
            ok=problem is None,
            problem=problem,
            detail=detail,
        )


async def _check_record(lookup: _Lookup, domain: str, record: RecordLike) -> RecordReport:
    check = _Check.of(record)
    host, rtype, shown = check.host, check.rtype, check.shown
    answer = await lookup.query(domain, host, rtype, follow=rtype != "CNAME")
    if answer.error is not None:
        detail = (
            f"Could not check {host} {rtype} ({answer.error}); check that the domain's name "
            "servers answer, then verify again."
        )
        return check.verdict([], "lookup_failed", detail)
    if answer.values:
        return _compare(check, list(answer.values))
    if answer.chain:
        detail = (
            f"{host} is a CNAME to {answer.chain[0]}, which has no {rtype} record; delete the "
            f"CNAME and add {rtype} {host} with the value {shown}."
        )
        return check.verdict([f"CNAME {answer.chain[0]}"], "wrong_type", detail)
    if not answer.nxdomain:
        others = await _records_at(lookup, domain, host, exclude=rtype)
        if rtype == "CNAME" and ("A" in others or "AAAA" in others):
            return await _flattened(lookup, check, others)
        if others:
            found = [f"{kind} {value}" for kind, values in others.items() for value in values]
            detail = (
                f"{host} has a {' and '.join(others)} record where a {rtype} record is needed; "
                f"delete it and add {rtype} {host} with the value {shown}."
            )
            return check.verdict(found, "wrong_type", detail)
    appended = await _find_appended(lookup, domain, host, rtype, answer.zone)
    if appended is not None:
        where, zone, found = appended
        state = "with the right value" if check.wanted in found else "with another value"
        detail = (
            f"The record exists {state} at {where} because your DNS provider appended {zone} "
            f"to the host; enter the host as {_relative(host, zone)} (or {host}. with a final "
            "dot)."
        )
        return check.verdict(found, "zone_appended", detail)
    detail = (
        f"No {rtype} record exists at {host}; add {rtype} {host} with the value {shown} at your "
        "DNS provider (new records can take up to 48 hours to appear)."
    )
    return check.verdict([], "missing", detail)


def _compare(check: _Check, found: list[str]) -> RecordReport:
    host, rtype, wanted = check.host, check.rtype, check.wanted
    if rtype == "TXT":
        kind = _txt_kind(wanted)
        same_kind = [value for value in found if kind is not None and _txt_kind(value) == kind]
        if len(same_kind) > 1:
            # Receivers read one SPF/DMARC/DKIM record per name; two make it a permanent error.
            detail = (
                f"{host} has {len(same_kind)} conflicting {kind} TXT records; keep only "
                f"{check.shown!r} and delete the others."
            )
            return check.verdict(found, "multiple", detail)
        if wanted in found:
            return check.verdict(found, None, f"{host} TXT is published.")
        detail = f"The TXT record at {host} holds another value; replace it with {check.shown!r}."
        return check.verdict(found, "mismatch", detail)
    if wanted in found:
        return check.verdict(found, None, f"{host} {rtype} is published.")
    what = "points to" if rtype in ("CNAME", "MX") else "holds"
    detail = f"{host} {rtype} {what} {', '.join(found)} instead of {wanted}; change it to {wanted}."
    return check.verdict(found, "mismatch", detail)


async def _records_at(
    lookup: _Lookup, domain: str, host: str, *, exclude: str
) -> dict[str, list[str]]:
    """What else is published at ``host`` (types a template can ask for), type by type."""
    kinds = [kind for kind in _PROBE_TYPES if kind != exclude]
    answers = await asyncio.gather(
        *(lookup.query(domain, host, kind, follow=False) for kind in kinds)
    )
    found: dict[str, list[str]] = {}
    for kind, answer in zip(kinds, answers, strict=True):
        # Only records owned by the host itself: a CNAME's target data is not "at" the host.
        if answer.error is None and answer.values and not answer.chain:
            found[kind] = list(answer.values)
    return found


async def _flattened(lookup: _Lookup, check: _Check, others: dict[str, list[str]]) -> RecordReport:
    host, target = check.host, check.wanted
    published = set(others.get("A", []) + others.get("AAAA", []))
    found = [f"{kind} {value}" for kind in ("A", "AAAA") for value in others.get(kind, [])]
    answers = await asyncio.gather(lookup.resolve(target, "A"), lookup.resolve(target, "AAAA"))
    if any(answer.error is not None for answer in answers):
        comparison = f"whether they match {target} could not be checked"
    elif published == {value for answer in answers for value in answer.values}:
        comparison = f"they match {target}'s addresses today, but will not follow its changes"
    else:
        comparison = f"they differ from {target}'s addresses"
    detail = (
        f"{host} has address records instead of a CNAME (your DNS provider flattened it) and "
        f"{comparison}; replace them with CNAME {host} pointing to {target}."
    )
    return check.verdict(found, "flattened", detail)


async def _find_appended(
    lookup: _Lookup, domain: str, host: str, rtype: str, zone_hint: str | None
) -> tuple[str, str, list[str]] | None:
    """Is the record at ``host.<zone>``, the registrar having appended the zone again?"""
    zones: list[str] = []
    known_zone = None
    with contextlib.suppress(LookupFailed):
        known_zone = (await lookup.zone_of(domain))[0] or None
    for zone in (zone_hint, known_zone, domain):
        if zone and zone not in zones and _under(host, zone):
            zones.append(zone)
    candidates = [(f"{host}.{zone}", zone) for zone in zones]
    answers = await asyncio.gather(
        *(lookup.query(domain, name, rtype, follow=False) for name, _ in candidates)
    )
    for (name, zone), answer in zip(candidates, answers, strict=True):
        if answer.error is None and (answer.values or answer.chain):
            found = list(answer.values) or [f"CNAME {answer.chain[0]}"]
            return name, zone, found
    return None


# ---------------------------------------------------------------- SPF, DKIM, DMARC


async def _txt(lookup: _Lookup, domain: str, host: str, via: str | None) -> Answer:
    """TXT values at ``host``; ``via`` is its CNAME target, already checked by a record."""
    if via is not None:
        return await lookup.resolve(via, "TXT")
    if _under(host, domain):
        return await lookup.query(domain, host, "TXT")
    return await lookup.resolve(host, "TXT")


def _spf_term_key(term: str) -> str:
    # "+" is the default qualifier, so include:x and +include:x are the same term.
    return term.lower().removeprefix("+")


@dataclass
class _SpfWalk:
    """The state of counting one SPF record's DNS lookups through its includes."""

    lookup: _Lookup
    fetches_left: int = _MAX_SPF_FETCHES
    seen: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    truncated: bool = False

    async def count(self, record: str, depth: int) -> int:
        total = 0
        nested: list[str] = []
        for term in record.split()[1:]:
            body = term.lstrip("+-~?").lower()
            mechanism = re.split(r"[:/=]", body, maxsplit=1)[0]
            if mechanism in ("include", "redirect"):
                total += 1
                target = norm(body.partition("=" if mechanism == "redirect" else ":")[2])
                # Macros (%{i}...) expand per message and can't be followed here.
                if target and "%" not in target:
                    nested.append(target)
            elif mechanism in ("a", "mx", "ptr", "exists"):
                total += 1
        # A name reached twice (a loop, or two includes sharing one) is followed once, so
        # the count is a lower bound: a "too many lookups" warning is never a false alarm.
        followable = [t for t in dict.fromkeys(nested) if t not in self.seen]
        if depth >= _MAX_SPF_DEPTH:
            self.truncated = self.truncated or bool(followable)
            followable = []
        if len(followable) > self.fetches_left:
            self.truncated = True
            followable = followable[: self.fetches_left]
        if not followable:
            return total
        self.seen.update(followable)
        self.fetches_left -= len(followable)
        if len(followable) == 1:  # the usual case, awaited without a task of its own
            return total + await self._nested(followable[0], depth)
        counts = await asyncio.gather(*(self._nested(target, depth) for target in followable))
        return total + sum(counts)

    async def _nested(self, target: str, depth: int) -> int:
        answer = await self.lookup.resolve(target, "TXT")
        if answer.error is not None:
            self.notes.append(f"the SPF record of {target} could not be read ({answer.error})")
            return 0
        records = [value for value in answer.values if _is_spf(value)]
        if len(records) != 1:
            state = "has no SPF record" if not records else f"has {len(records)} SPF records"
            self.notes.append(f"{target} {state}, so SPF fails with a permanent error")
            return 0
        return await self.count(records[0], depth + 1)


async def _check_spf(
    lookup: _Lookup, domain: str, host: str, via: str | None, settings: DnsExpectations | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "spf", host)
    answer = await _txt(lookup, domain, host, via)
    if answer.error is not None:
        return [_lookup_warning("spf", host, "SPF", answer.error)]
    records = [value for value in answer.values if _is_spf(value)]
    include = settings.spf_include.strip() if settings is not None else ""
    if not records:
        example = f"v=spf1 {include} ~all" if include else "v=spf1 ... ~all"
        detail = (
            f"{host} publishes no SPF record; add TXT {host} {example!r} so receivers accept "
            "mail sent for it."
        )
        return [warn("missing", detail)]
    if len(records) > 1:
        detail = (
            f"{host} has {len(records)} SPF records, which receivers treat as a permanent "
            "error; merge them into one v=spf1 record."
        )
        return [warn("multiple", detail)]
    warnings: list[CheckWarning] = []
    present = {_spf_term_key(term) for term in records[0].split()[1:]}
    absent = [term for term in include.split() if _spf_term_key(term) not in present]
    if absent:
        detail = (
            f"The SPF record of {host} lacks {' '.join(absent)}; add it before the final all "
            "so the delivery servers may send for the domain."
        )
        warnings.append(warn("no_include", detail))
    walk = _SpfWalk(lookup, seen={host})
    lookups = await walk.count(records[0], 0)
    if lookups > MAX_SPF_LOOKUPS:
        amount = f"at least {lookups}" if walk.truncated else str(lookups)
        detail = (
            f"The SPF record of {host} needs {amount} DNS lookups, more than the limit of "
            f"{MAX_SPF_LOOKUPS}, so receivers fail SPF; replace includes with ip4:/ip6: ranges "
            "or drop unused ones."
        )
        warnings.append(warn("too_many_lookups", detail))
    for note in walk.notes:
        detail = f"In the SPF record of {host}, {note}; fix or remove that include."
        warnings.append(warn("broken_include", detail))
    return warnings


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip().lower()] = value.strip()
    return tags


def _dkim_key_problem(text: str) -> tuple[str, str] | None:
    """(problem, what is wrong) for a DKIM key record, or None when the key is usable."""
    tags = _tags(text)
    if "v" in tags and tags["v"] != "DKIM1":
        return "bad_key", f"has v={tags['v']} where v=DKIM1 is required"
    if "p" not in tags:
        return "bad_key", "has no p= tag holding the public key"
    key_text = "".join(tags["p"].split())
    if not key_text:
        return "revoked", "has an empty p=, which revokes the key"
    try:
        raw = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        return "bad_key", "has a p= value that is not Base64"
    key_type = tags.get("k", "rsa").lower()
    if key_type == "ed25519":
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            return "bad_key", "has a p= value that is not a 32-byte Ed25519 public key"
        return None
    if key_type != "rsa":
        return "bad_key", f"has the unknown key type k={key_type}"
    try:
        key = load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        return "bad_key", "has a p= value that does not decode to an RSA public key"
    if not isinstance(key, rsa.RSAPublicKey):
        return "bad_key", "has a p= value that is not an RSA key although k=rsa"
    if key.key_size < _MIN_RSA_BITS:
        return "weak_key", f"holds a {key.key_size}-bit RSA key, which receivers reject"
    return None


def _key_of(text: str) -> str:
    """The Base64 key of a DKIM record or of a bare key (the DNS settings accept both)."""
    tags = _tags(text)
    return "".join(tags.get("p", text).split())


async def _check_dkim(
    lookup: _Lookup, domain: str, host: str, via: str | None, settings: DnsExpectations | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "dkim", host)
    answer = await _txt(lookup, domain, host, via)
    if answer.error is not None:
        return [_lookup_warning("dkim", host, "DKIM", answer.error)]
    keys = [v for v in answer.values if _txt_kind(v) == "v=dkim1" or "p" in _tags(v)]
    if not keys:
        detail = (
            f"No DKIM key is published at {host}; publish the delivery servers' key there so "
            "receivers can verify signatures."
        )
        return [warn("missing", detail)]
    if len(keys) > 1:
        detail = (
            f"{host} has {len(keys)} DKIM records, so verification is unpredictable; keep only "
            "the current key."
        )
        return [warn("multiple", detail)]
    problem = _dkim_key_problem(keys[0])
    if problem is not None:
        code, what = problem
        detail = (
            f"The DKIM record at {host} {what}; publish the key as v=DKIM1; k=rsa; p=<Base64 "
            "public key>."
        )
        return [warn(code, detail)]
    configured = settings.dkim_public_key.strip() if settings is not None else ""
    if configured and _key_of(configured) != _key_of(keys[0]):
        detail = (
            f"The DKIM key at {host} is not the key in the DNS settings; publish the settings' "
            "key or update the settings to the key in use."
        )
        return [warn("key_differs", detail)]
    return []


async def _check_dmarc(
    lookup: _Lookup, domain: str, host: str, via: str | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "dmarc", host)
    answer = await _txt(lookup, domain, host, via)
    if answer.error is not None:
        return [_lookup_warning("dmarc", host, "DMARC", answer.error)]
    records = [value for value in answer.values if _txt_kind(value) == "v=dmarc1"]
    if not records:
        detail = (
            f"No DMARC record is published at {host}; add TXT {host} 'v=DMARC1; p=none;' so "
            "receivers know the domain's policy."
        )
        return [warn("missing", detail)]
    if len(records) > 1:
        detail = (
            f"{host} has {len(records)} DMARC records, so receivers ignore them all; keep only one."
        )
        return [warn("multiple", detail)]
    try:
        dmarc_policy(records[0], "DMARC record")  # the rules the DNS settings' value obeys
    except ValidationError as exc:
        detail = (
            f"The DMARC record at {host} is not valid ({exc.reason.rstrip('.')}); publish e.g. "
            "'v=DMARC1; p=none;'."
        )
        return [warn("invalid", detail)]
    return []


def _lookup_warning(check: str, host: str, label: str, error: str) -> CheckWarning:
    return CheckWarning(
        check,
        host,
        "lookup_failed",
        f"The {label} record at {host} could not be read ({error}); verify again later.",
    )


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


async def _auth_warnings(
    lookup: _Lookup,
    domain: str,
    records: Sequence[RecordLike],
    reports: Sequence[RecordReport],
    settings: DnsExpectations | None,
) -> list[CheckWarning]:
    hosts = [norm(record.host) for record in records]
    failed = {report.host for report in reports if not report.ok}
    # A host the template points elsewhere with a CNAME that checked out: read the target
    # directly (shared by every domain of a bulk check, so asked once).
    via = {
        report.host: norm(report.expected)
        for report in reports
        if report.ok and report.type == "CNAME"
    }
    spf_hosts = _unique(
        host
        for host, record in zip(hosts, records, strict=True)
        if record.type.strip().upper() == "TXT" and _is_spf(_expected_text("TXT", record.value))
    ) or [domain]
    dkim_hosts = _unique(host for host in hosts if "_domainkey" in host.split("."))
    if not dkim_hosts and settings is not None and settings.dkim_selector:
        dkim_hosts = [f"{settings.dkim_selector.lower()}._domainkey.{domain}"]
    dmarc_hosts = _unique(host for host in hosts if host.split(".")[0] == "_dmarc") or [
        f"_dmarc.{domain}"
    ]

    checks: list[Coroutine[Any, Any, list[CheckWarning]]] = []
    checks += [
        _check_spf(lookup, domain, h, via.get(h), settings) for h in spf_hosts if h not in failed
    ]
    checks += [
        _check_dkim(lookup, domain, h, via.get(h), settings) for h in dkim_hosts if h not in failed
    ]
    checks += [_check_dmarc(lookup, domain, h, via.get(h)) for h in dmarc_hosts if h not in failed]
    results = await asyncio.gather(*checks)
    return [warning for warnings in results for warning in warnings]


# ---------------------------------------------------------------- one domain


async def _verify(
    lookup: _Lookup,
    domain: str,
    records: Sequence[RecordLike],
    settings: DnsExpectations | None,
) -> DomainReport:
    try:
        _zone, servers = await lookup.zone_of(domain)
    except LookupFailed as exc:
        reason = f"{exc}; check that the domain is registered and delegated, then verify again"
        detail = reason[0].upper() + reason[1:] + "."
        return DomainReport(
            domain=domain,
            records=[_Check.of(r).verdict([], "lookup_failed", detail) for r in records],
            error=str(exc),
        )
    reports = list(await asyncio.gather(*(_check_record(lookup, domain, r) for r in records)))
    unanswered = bool(reports) and all(r.problem == "lookup_failed" for r in reports)
    # Servers that answered nothing would not answer the SPF/DKIM/DMARC questions either:
    # asking would only make the user wait for more timeouts.
    warnings = (
        [] if unanswered else await _auth_warnings(lookup, domain, records, reports, settings)
    )
    return DomainReport(
        domain=domain, records=reports, warnings=warnings, nameservers=list(servers)
    )


async def verify_records(
    domain: str,
    records: Sequence[RecordLike],
    *,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    settings: DnsExpectations | None = None,
    timeout: float = 5.0,
) -> DomainReport:
    """Check that each record is published for ``domain``, plus SPF/DKIM/DMARC advice.

    ``nameserver`` asks that one server everything; otherwise the domain's authoritative
    servers are found through ``discovery`` (default: the system resolver, port 53).
    ``settings`` (the DNS settings) enable the SPF include and DKIM key comparisons.
    """
    name = validation.domain(domain, "Sender domain")
    for number, record in enumerate(records, start=1):
        validation.record_type(record.type, f"Record {number} type")  # one we can ask for
    async with _Lookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:
        return await _verify(lookup, name, records, settings)


async def check_template_adhoc(
    domain: str,
    records: Sequence[RecordLike],
    nameserver: Server | None = None,
    *,
    discovery: Discovery | None = None,
    settings: DnsExpectations | None = None,
    timeout: float = 5.0,
) -> DomainReport:
    """Check a template's rendered records for a domain that need not be stored
    (``postroom dns-check DOMAIN --template NAME``); nothing is written anywhere."""
    return await verify_records(
        domain,
        records,
        nameserver=nameserver,
        discovery=discovery,
        settings=settings,
        timeout=timeout,
    )


def render_template_for_check(
    session: Session,
    domain: str,
    template_name: str,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
) -> tuple[list[RenderedRecord], EffectiveDnsSettings]:
    """A template's records for ``domain`` as an ad-hoc check needs them, with the settings.

    A registered domain keeps its own random label, so its ownership TXT record can be
    found; for any other domain a fresh label is used and that one record will show as
    missing, since nobody could have published it yet.
    """
    template = get_template(session, kind, template_name)
    settings = get_settings(session)
    name = validation.domain(domain, "Sender domain")
    try:
        token = get_sender_domain(session, name, template.kind).random_token
    except NotFoundError:
        token = random_label()
    rendered = render_records(
        [(r.host, r.type, r.value) for r in template.records],
        domain=name,
        kind=template.kind,
        settings=settings,
        hash_secret=installation_hash_secret(session),
        random_token=token,
    )
    return rendered, settings


# ---------------------------------------------------------------- stored domains


@dataclass(frozen=True)
class _Snapshot:
    """What a check needs of a stored domain, read in one short session."""

    id: int
    domain: str
    kind: TemplateKind
    status: DomainStatus
    record_ids: tuple[int, ...]
    records: tuple[ExpectedRecord, ...]


def _snapshots(session: Session, condition: ColumnElement[bool]) -> list[_Snapshot]:
    """The domains matching ``condition``, with their records, read as plain rows.

    Two Core queries instead of ORM objects: a bulk check loads thousands of domains, and
    building mapped objects for them cost more than checking them.
    """
    domains = session.execute(
        select(SenderDomain.id, SenderDomain.domain, SenderDomain.kind, SenderDomain.status)
        .where(condition)
        .order_by(SenderDomain.domain, SenderDomain.kind)
    ).all()
    ids = [row.id for row in domains]
    records: dict[int, list[Any]] = {domain_id: [] for domain_id in ids}
    for start in range(0, len(ids), _QUERY_CHUNK):
        query = (
            select(
                SenderDomainRecord.sender_domain_id,
                SenderDomainRecord.id,
                SenderDomainRecord.host,
                SenderDomainRecord.type,
                SenderDomainRecord.value,
            )
            .where(SenderDomainRecord.sender_domain_id.in_(ids[start : start + _QUERY_CHUNK]))
            .order_by(SenderDomainRecord.position, SenderDomainRecord.id)
        )
        for row in session.execute(query):
            records[row.sender_domain_id].append(row)
    return [
        _Snapshot(
            id=row.id,
            domain=row.domain,
            kind=row.kind,
            status=row.status,
            record_ids=tuple(r.id for r in records[row.id]),
            records=tuple(ExpectedRecord(r.host, r.type, r.value) for r in records[row.id]),
        )
        for row in domains
    ]


def _load_one(
    db: Database, domain: str, kind: TemplateKind | str
) -> tuple[_Snapshot, EffectiveDnsSettings]:
    with db.session() as session:
        found = get_sender_domain(session, domain, kind)  # NotFoundError names the domain
        (snapshot,) = _snapshots(session, SenderDomain.id == found.id)
        return snapshot, get_settings(session)


def _load_many(
    db: Database, names: Sequence[str]
) -> tuple[dict[tuple[str, TemplateKind], _Snapshot], EffectiveDnsSettings]:
    found: dict[tuple[str, TemplateKind], _Snapshot] = {}
    with db.session() as session:
        for start in range(0, len(names), _QUERY_CHUNK):
            chunk = names[start : start + _QUERY_CHUNK]
            for snapshot in _snapshots(session, SenderDomain.domain.in_(chunk)):
                found[(snapshot.domain, snapshot.kind)] = snapshot
        return found, get_settings(session)


def _load_enabled(db: Database) -> tuple[list[_Snapshot], EffectiveDnsSettings]:
    with db.session() as session:
        enabled = _snapshots(session, SenderDomain.status == DomainStatus.ENABLED)
        # A domain without records (empty template) has nothing that could break.
        return [s for s in enabled if s.records], get_settings(session)


def _was_broken(stored_report: str | None) -> bool:
    if not stored_report:
        return False
    try:
        previous = json.loads(stored_report)
    except ValueError:
        return False
    return isinstance(previous, dict) and previous.get("broken") is True


def _store(
    db: Database,
    results: Sequence[tuple[_Snapshot, DomainReport]],
    *,
    audit_all: bool,
    actor: str | None,
) -> None:
    """Record check results; enable pending domains whose records all pass; flag broken ones.

    ``audit_all=False`` (the periodic recheck) writes an audit entry only when something
    changed (status, or broken/not broken), so a schedule doesn't flood the log.

    Rows are read and written with Core statements, one executemany per kind of change:
    ORM objects and per-row UPDATEs made storing a bulk check slower than checking it.
    """
    now = utcnow()
    domains = SenderDomain.metadata.tables[SenderDomain.__tablename__]
    records = SenderDomainRecord.metadata.tables[SenderDomainRecord.__tablename__]
    with db.transaction() as session:
        # Locked (PostgreSQL/MariaDB; SQLite's write transaction is exclusive anyway), so
        # no edit lands between reading a status and moving it.
        current = {
            row.id: row
            for row in session.execute(
                select(domains.c.id, domains.c.status, domains.c.last_check_report)
                .where(domains.c.id.in_([snapshot.id for snapshot, _ in results]))
                .with_for_update()
            )
        }
        checks: list[dict[str, Any]] = []
        enabled: list[dict[str, Any]] = []
        outcomes: list[dict[str, Any]] = []
        for snapshot, report in results:
            row = current.get(snapshot.id)
            if row is None:
                continue  # deleted while it was being checked: nothing left to update
            old_status = DomainStatus(row.status)
            new_status = old_status
            if report.status == "ok" and old_status is DomainStatus.APPROVAL_PENDING:
                new_status = DomainStatus.ENABLED
                enabled.append({"b_id": snapshot.id})
            report.broken = old_status is DomainStatus.ENABLED and report.status == "failed"
            stored = {**report.as_dict(), "broken": report.broken, "checked_at": now.isoformat()}
            checks.append(
                {"b_id": snapshot.id, "b_at": now, "b_report": json.dumps(stored, sort_keys=True)}
            )
            outcomes.extend(
                {"b_id": record_id, "b_ok": result.ok}
                for record_id, result in zip(snapshot.record_ids, report.records, strict=True)
                # An unanswered question says nothing about the record: keep the last result.
                if result.problem != "lookup_failed"
            )
            changed = new_status is not old_status
            if audit_all or changed or report.broken != _was_broken(row.last_check_report):
                details: dict[str, Any] = {
                    "kind": snapshot.kind.value,
                    "result": report.status,
                    "failed": [r.host for r in report.records if not r.ok],
                    "broken": report.broken,
                }
                if changed:
                    details["status"] = [old_status.value, new_status.value]
                audit.record(session, "verify", ENTITY, snapshot.domain, details, actor=actor)
        if checks:
            # Leaves version and updated_at alone: a check is not an edit.
            session.execute(
                update(domains)
                .where(domains.c.id == bindparam("b_id"))
                .values(
                    last_check_at=bindparam("b_at"),
                    last_check_report=bindparam("b_report"),
                    updated_at=domains.c.updated_at,
                ),
                checks,
            )
        if enabled:
            # A status change is an edit: it bumps the version as the ORM would, so a form
            # opened before it is refused on save (VersionedMixin).
            session.execute(
                update(domains)
                .where(domains.c.id == bindparam("b_id"))
                .values(
                    status=DomainStatus.ENABLED,
                    verified_at=now,
                    updated_at=now,
                    version=domains.c.version + 1,
                ),
                enabled,
            )
        if outcomes:
            session.execute(
                update(records)
                .where(records.c.id == bindparam("b_id"))
                .values(last_ok=bindparam("b_ok")),
                outcomes,
            )


async def _verify_snapshot(
    lookup: _Lookup, snapshot: _Snapshot, settings: DnsExpectations
) -> DomainReport:
    report = await _verify(lookup, snapshot.domain, snapshot.records, settings)
    report.kind = snapshot.kind.value
    # Provisional until stored, where the row's current status decides.
    report.broken = snapshot.status is DomainStatus.ENABLED and report.status == "failed"
    return report


async def verify_sender_domain(
    db: Database,
    domain: str,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    *,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    timeout: float = 5.0,
    actor: str | None = None,
) -> DomainReport:
    """Check a stored domain's records and store the result (the "Verify DNS Records" button).

    All records passing moves approval_pending to enabled; an enabled domain that fails
    stays enabled with ``broken`` set; every check writes an audit entry.
    """
    loop = asyncio.get_running_loop()
    snapshot, settings = await loop.run_in_executor(None, _load_one, db, domain, kind)
    async with _Lookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:
        report = await _verify_snapshot(lookup, snapshot, settings)
    store = functools.partial(_store, db, [(snapshot, report)], audit_all=True, actor=actor)
    await loop.run_in_executor(None, store)
    return report


class _ResultWriter:
    """Stores bulk results in batches while the checks go on, one transaction at a time."""

    def __init__(self, db: Database, *, audit_all: bool, actor: str | None) -> None:
        self._db = db
        self._audit_all = audit_all
        self._actor = actor
        self._pending: list[tuple[_Snapshot, DomainReport]] = []
        self._lock = asyncio.Lock()
        self._writes: list[asyncio.Task[None]] = []

    def add(self, snapshot: _Snapshot, report: DomainReport) -> None:
        self._pending.append((snapshot, report))
        if len(self._pending) >= _WRITE_BATCH:
            self._spawn()

    def _spawn(self) -> None:
        batch, self._pending = self._pending, []
        self._writes.append(asyncio.ensure_future(self._write(batch)))

    async def _write(self, batch: list[tuple[_Snapshot, DomainReport]]) -> None:
        store = functools.partial(
            _store, self._db, batch, audit_all=self._audit_all, actor=self._actor
        )
        async with self._lock:  # FIFO: batches commit in the order they were finished
            await asyncio.get_running_loop().run_in_executor(None, store)

    async def close(self) -> None:
        if self._pending:
            self._spawn()
        await asyncio.gather(*self._writes)

    def abandon(self) -> None:
        for write in self._writes:
            write.cancel()


def _not_found_report(domain: str, kind: str, message: str) -> DomainReport:
    return DomainReport(
        domain=domain,
        kind=kind,
        error=message,
        warnings=[CheckWarning("domain", domain, "not_found", message)],
    )


async def _run_bulk(
    db: Database,
    items: Sequence[tuple[str, str, _Snapshot | None, str]],
    settings: DnsExpectations,
    *,
    concurrency: int,
    progress: ProgressCallback | None,
    nameserver: Server | None,
    discovery: Discovery | None,
    cancel: asyncio.Event | None,
    timeout: float,
    audit_all: bool,
    actor: str | None,
) -> list[DomainReport]:
    if concurrency < 1:
        raise ValidationError("Concurrency", "must be at least 1.")
    total = len(items)
    results: list[DomainReport | None] = [None] * total
    done = 0
    semaphore = asyncio.Semaphore(concurrency)
    writer = _ResultWriter(db, audit_all=audit_all, actor=actor)

    async with _Lookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:

        async def check(
            index: int, name: str, kind: str, snapshot: _Snapshot | None, why: str
        ) -> None:
            nonlocal done
            async with semaphore:
                if cancel is not None and cancel.is_set():
                    return  # cancelled: domains not started yet are left out of the result
                if snapshot is None:
                    report = _not_found_report(name, kind, why)
                else:
                    report = await _verify_snapshot(lookup, snapshot, settings)
                    writer.add(snapshot, report)
            results[index] = report
            done += 1
            if progress is not None:
                progress(done, total, report)

        tasks = [asyncio.ensure_future(check(index, *item)) for index, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A failing progress callback or a cancelled caller: stop the rest, and let the
            # caller see the original exception rather than a group of them.
            for task in tasks:
                task.cancel()
            writer.abandon()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    await writer.close()
    return [report for report in results if report is not None]


async def verify_many(
    db: Database,
    domains: Sequence[str | tuple[str, TemplateKind | str]],
    *,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    concurrency: int = 50,
    progress: ProgressCallback | None = None,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float = 5.0,
    actor: str | None = None,
) -> list[DomainReport]:
    """Verify many stored domains, at most ``concurrency`` at a time, storing as they finish.

    ``domains`` are names (of ``kind``) or (name, kind) pairs. ``progress(done, total,
    report)`` is called on the event loop after each domain. Setting ``cancel`` stops
    starting new domains; the reports of those finished are stored and returned, in
    input order. An unknown domain gets a report with status ``error``.
    """
    wanted: list[tuple[str, str, str | None, str]] = []  # shown, kind, name, why unknown
    for item in domains:
        shown, item_kind = (item, kind) if isinstance(item, str) else item
        domain_kind = validation.choice(item_kind, "Domain kind", TemplateKind).value
        try:
            name: str | None = validation.domain(shown, "Sender domain")
            why = (
                f"No {domain_kind} sender domain named {name!r} exists; check the name with "
                "the list command."
            )
        except ValidationError as exc:
            name, why = None, str(exc)
        wanted.append((shown, domain_kind, name, why))
    names = sorted({name for _, _, name, _ in wanted if name is not None})
    loop = asyncio.get_running_loop()
    snapshots, settings = await loop.run_in_executor(None, _load_many, db, names)
    items = [
        (
            name or shown,
            domain_kind,
            snapshots.get((name, TemplateKind(domain_kind))) if name else None,
            why,
        )
        for shown, domain_kind, name, why in wanted
    ]
    return await _run_bulk(
        db,
        items,
        settings,
        concurrency=concurrency,
        progress=progress,
        nameserver=nameserver,
        discovery=discovery,
        cancel=cancel,
        timeout=timeout,
        audit_all=True,
        actor=actor,
    )


async def recheck_enabled_once(
    db: Database,
    *,
    concurrency: int = 50,
    progress: ProgressCallback | None = None,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float = 5.0,
    actor: str | None = None,
) -> list[DomainReport]:
    """Re-verify every enabled domain once; returns the reports of those whose records broke."""
    loop = asyncio.get_running_loop()
    snapshots, settings = await loop.run_in_executor(None, _load_enabled, db)
    reports = await _run_bulk(
        db,
        [(s.domain, s.kind.value, s, "") for s in snapshots],
        settings,
        concurrency=concurrency,
        progress=progress,
        nameserver=nameserver,
        discovery=discovery,
        cancel=cancel,
        timeout=timeout,
        audit_all=False,
        actor=actor,
    )
    return [report for report in reports if report.broken]


async def recheck_enabled(
    db: Database,
    *,
    interval_seconds: float,
    stop: asyncio.Event | None = None,
    on_broken: Callable[[list[DomainReport]], None] | None = None,
    concurrency: int = 50,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    timeout: float = 5.0,
    actor: str | None = None,
) -> None:
    """Run :func:`recheck_enabled_once` every ``interval_seconds`` until ``stop`` is set."""
    if interval_seconds <= 0:
        raise ValidationError("Recheck interval", "must be more than 0 seconds.")
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            broken = await recheck_enabled_once(
                db,
                concurrency=concurrency,
                nameserver=nameserver,
                discovery=discovery,
                cancel=stop,
                timeout=timeout,
                actor=actor,
            )
        except PostroomError as exc:
            logger.warning("DNS recheck pass failed: %s", exc)
        except Exception:
            # A schedule must outlive one bad pass (database briefly unreachable, ...); the
            # failure goes to the log and the next pass tries again.
            logger.exception("DNS recheck pass failed")
        else:
            if broken and on_broken is not None:
                on_broken(broken)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
