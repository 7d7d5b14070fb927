"""Is each record a sender domain must publish really there, as the user must enter it?

A record that is not found is explained: published under another type, flattened from a
CNAME to addresses, or at ``host.<zone>`` because the DNS provider appended the zone to a
host entered in full. Only records of the domain's own zone are asked of its authoritative
servers (app.services.dns_lookup); the SPF/DKIM/DMARC advice comes from dns_auth_checks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.models import TemplateKind
from app.services import validation
from app.services.dns_auth_checks import auth_warnings
from app.services.dns_lookup import DEFAULT_TIMEOUT, Discovery, DnsLookup
from app.services.dns_records import (
    DnsExpectations,
    DomainReport,
    Problem,
    RecordLike,
    RecordReport,
    expected_text,
    record_triples,
    txt_kind,
)
from app.services.dns_settings import EffectiveDnsSettings, get_settings
from app.services.dns_templates import (
    RenderedRecord,
    get_template,
    installation_hash_secret,
    random_label,
    render_records,
)
from app.services.dns_verdicts import NOT_CHECKED, Verdict, explain
from app.services.dns_wire import LookupFailed, Server, is_under, norm
from app.services.errors import NotFoundError
from app.services.sender_domains import get_sender_domain

__all__ = [
    "check_domain",
    "check_template_adhoc",
    "render_template_for_check",
    "verify_records",
]

_PROBE_TYPES = ("CNAME", "A", "AAAA", "TXT", "MX")


def _relative(host: str, zone: str) -> str:
    return "@" if host == zone else host[: -len(zone) - 1]


# ---------------------------------------------------------------- one record


@dataclass(frozen=True)
class _RecordCheck:
    """One record being checked: its names and values, and how a verdict is written down."""

    record: RecordLike
    host: str
    rtype: str
    wanted: str  # the expected value spelled as found values are
    shown: str  # the expected value as the user must enter it

    @classmethod
    def of(cls, record: RecordLike) -> _RecordCheck:
        rtype = record.type.strip().upper()
        return cls(
            record,
            norm(record.host),
            rtype,
            expected_text(rtype, record.value),
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


async def _check_record(lookup: DnsLookup, domain: str, record: RecordLike) -> RecordReport:
    check = _RecordCheck.of(record)
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


def _compare(check: _RecordCheck, found: list[str]) -> RecordReport:
    host, rtype, wanted = check.host, check.rtype, check.wanted
    if rtype == "TXT":
        kind = txt_kind(wanted)
        same_kind = [value for value in found if kind is not None and txt_kind(value) == kind]
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
    lookup: DnsLookup, domain: str, host: str, *, exclude: str
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


async def _flattened(
    lookup: DnsLookup, check: _RecordCheck, others: dict[str, list[str]]
) -> RecordReport:
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
    lookup: DnsLookup, domain: str, host: str, rtype: str, zone_hint: str | None
) -> tuple[str, str, list[str]] | None:
    """Is the record at ``host.<zone>``, the registrar having appended the zone again?"""
    zones: list[str] = []
    known_zone = None
    with contextlib.suppress(LookupFailed):
        known_zone = (await lookup.zone_of(domain))[0] or None
    for zone in (zone_hint, known_zone, domain):
        if zone and zone not in zones and is_under(host, zone):
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


# ---------------------------------------------------------------- one domain


async def check_domain(
    lookup: DnsLookup,
    domain: str,
    records: Sequence[RecordLike],
    settings: DnsExpectations | None,
) -> DomainReport:
    """Check ``records`` of the validated ``domain`` with the questions of ``lookup``."""
    try:
        zone, servers = await lookup.zone_of(domain)
    except LookupFailed as exc:
        return _not_checked(domain, records, exc.verdict, servers=exc.servers)
    reports = list(await asyncio.gather(*(_check_record(lookup, domain, r) for r in records)))
    if reports and all(r.problem == "lookup_failed" for r in reports):
        # Servers that answered nothing would not answer the SPF/DKIM/DMARC questions
        # either: asking would only make the user wait for more timeouts. Why nothing was
        # answered is said once, for the domain.
        override = lookup.override
        if override is None:
            verdict: Verdict = "servers_silent"
            shown = tuple(a if p == 53 else f"{a} port {p}" for a, p in servers)
        else:
            replied = lookup.has_replied(override)
            verdict = "override_refused" if replied else "override_silent"
            shown = ()
        report = _not_checked(domain, records, verdict, servers=shown, override=override)
        report.nameservers = list(servers)
        return report
    warnings = await auth_warnings(lookup, domain, records, reports, settings)
    report = DomainReport(
        domain=domain, records=reports, warnings=warnings, nameservers=list(servers)
    )
    if zone and zone != domain and all(r.problem == "missing" for r in reports):
        # Nothing at all is published: is it because the domain itself does not exist?
        answer = await lookup.ask(domain, "SOA", servers)
        if answer.error is None and answer.nxdomain:
            report.verdict = "not_in_dns"
            report.error = explain("not_in_dns", domain)
    return report


def _not_checked(
    domain: str,
    records: Sequence[RecordLike],
    verdict: Verdict,
    *,
    servers: Sequence[str] = (),
    override: Server | None = None,
) -> DomainReport:
    """A domain none of whose records could be asked about: the why once, at the top."""
    return DomainReport(
        domain=domain,
        records=[_RecordCheck.of(r).verdict([], "lookup_failed", NOT_CHECKED) for r in records],
        error=explain(verdict, domain, servers=servers, override=override),
        verdict=verdict,
    )


async def verify_records(
    domain: str,
    records: Sequence[RecordLike],
    *,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    settings: DnsExpectations | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DomainReport:
    """Check that each record is published for ``domain``, plus SPF/DKIM/DMARC advice.

    ``nameserver`` asks that one server everything; otherwise the domain's authoritative
    servers are found through ``discovery`` (default: the system resolver, port 53).
    ``settings`` (the DNS settings) enable the SPF include and DKIM key comparisons.
    """
    name = validation.domain(domain, "Sender domain")
    for number, record in enumerate(records, start=1):
        validation.record_type(record.type, f"Record {number} type")  # one we can ask for
    async with DnsLookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:
        return await check_domain(lookup, name, records, settings)


async def check_template_adhoc(
    domain: str,
    records: Sequence[RecordLike],
    nameserver: Server | None = None,
    *,
    discovery: Discovery | None = None,
    settings: DnsExpectations | None = None,
    timeout: float = DEFAULT_TIMEOUT,
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
        record_triples(template.records),
        domain=name,
        kind=template.kind,
        settings=settings,
        hash_secret=installation_hash_secret(session),
        random_token=token,
    )
    return rendered, settings
