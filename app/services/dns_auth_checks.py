"""SPF, DKIM and DMARC advice for a sender domain, beyond its template's records.

They are reported as warnings: advice about deliverability, which never blocks enabling a
domain. A host whose template record already failed gets no warning as well: one problem,
one message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from app.services.dns_lookup import DnsLookup
from app.services.dns_records import (
    CheckWarning,
    DnsExpectations,
    RecordLike,
    RecordReport,
    expected_text,
    is_spf,
    txt_kind,
)
from app.services.dns_settings import dmarc_policy
from app.services.dns_wire import Answer, is_under, norm
from app.services.errors import ValidationError

__all__ = ["MAX_SPF_LOOKUPS", "auth_warnings"]

MAX_SPF_LOOKUPS = 10  # RFC 7208 4.6.4
_MAX_SPF_DEPTH = 10  # includes nested deeper than this are not followed
_MAX_SPF_FETCHES = 40  # SPF records fetched per checked record, whatever the nesting
_MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept shorter keys


async def _txt(lookup: DnsLookup, domain: str, host: str, via: str | None) -> Answer:
    """TXT values at ``host``; ``via`` is its CNAME target, already checked by a record."""
    if via is not None:
        return await lookup.resolve(via, "TXT")
    if is_under(host, domain):
        return await lookup.query(domain, host, "TXT")
    return await lookup.resolve(host, "TXT")


def _spf_term_key(term: str) -> str:
    # "+" is the default qualifier, so include:x and +include:x are the same term.
    return term.lower().removeprefix("+")


@dataclass
class _SpfWalk:
    """The state of counting one SPF record's DNS lookups through its includes."""

    lookup: DnsLookup
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
        records = [value for value in answer.values if is_spf(value)]
        if len(records) != 1:
            state = "has no SPF record" if not records else f"has {len(records)} SPF records"
            self.notes.append(f"{target} {state}, so SPF fails with a permanent error")
            return 0
        return await self.count(records[0], depth + 1)


async def _one_record(
    lookup: DnsLookup,
    domain: str,
    host: str,
    via: str | None,
    check: str,
    is_kind: Callable[[str], bool],
    *,
    missing: str,
    multiple: Callable[[int], str],
) -> str | CheckWarning:
    """The one record of its kind at ``host``, or why there is not exactly one: each check
    wants one record, and reports an unreadable, missing or repeated one alike."""
    answer = await _txt(lookup, domain, host, via)
    if answer.error is not None:
        detail = (
            f"The {check.upper()} record at {host} could not be read ({answer.error}); "
            "verify again later."
        )
        return CheckWarning(check, host, "lookup_failed", detail)
    records = [value for value in answer.values if is_kind(value)]
    if not records:
        return CheckWarning(check, host, "missing", missing)
    if len(records) > 1:
        return CheckWarning(check, host, "multiple", multiple(len(records)))
    return records[0]


async def _check_spf(
    lookup: DnsLookup, domain: str, host: str, via: str | None, settings: DnsExpectations | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "spf", host)
    include = settings.spf_include.strip() if settings is not None else ""
    example = f"v=spf1 {include} ~all" if include else "v=spf1 ... ~all"
    record = await _one_record(
        lookup,
        domain,
        host,
        via,
        "spf",
        is_spf,
        missing=f"{host} publishes no SPF record; add TXT {host} {example!r} so receivers "
        "accept mail sent for it.",
        multiple=lambda count: (
            f"{host} has {count} SPF records, which receivers treat as a permanent error; "
            "merge them into one v=spf1 record."
        ),
    )
    if isinstance(record, CheckWarning):
        return [record]
    warnings: list[CheckWarning] = []
    present = {_spf_term_key(term) for term in record.split()[1:]}
    absent = [term for term in include.split() if _spf_term_key(term) not in present]
    if absent:
        detail = (
            f"The SPF record of {host} lacks {' '.join(absent)}; add it before the final all "
            "so the delivery servers may send for the domain."
        )
        warnings.append(warn("no_include", detail))
    walk = _SpfWalk(lookup, seen={host})
    lookups = await walk.count(record, 0)
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
    lookup: DnsLookup, domain: str, host: str, via: str | None, settings: DnsExpectations | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "dkim", host)
    key = await _one_record(
        lookup,
        domain,
        host,
        via,
        "dkim",
        lambda value: txt_kind(value) == "v=dkim1" or "p" in _tags(value),
        missing=f"No DKIM key is published at {host}; publish the delivery servers' key there "
        "so receivers can verify signatures.",
        multiple=lambda count: (
            f"{host} has {count} DKIM records, so verification is unpredictable; keep only "
            "the current key."
        ),
    )
    if isinstance(key, CheckWarning):
        return [key]
    problem = _dkim_key_problem(key)
    if problem is not None:
        code, what = problem
        detail = (
            f"The DKIM record at {host} {what}; publish the key as v=DKIM1; k=rsa; p=<Base64 "
            "public key>."
        )
        return [warn(code, detail)]
    configured = settings.dkim_public_key.strip() if settings is not None else ""
    if configured and _key_of(configured) != _key_of(key):
        detail = (
            f"The DKIM key at {host} is not the key in the DNS settings; publish the settings' "
            "key or update the settings to the key in use."
        )
        return [warn("key_differs", detail)]
    return []


async def _check_dmarc(
    lookup: DnsLookup, domain: str, host: str, via: str | None
) -> list[CheckWarning]:
    warn = functools.partial(CheckWarning, "dmarc", host)
    record = await _one_record(
        lookup,
        domain,
        host,
        via,
        "dmarc",
        lambda value: txt_kind(value) == "v=dmarc1",
        missing=f"No DMARC record is published at {host}; add TXT {host} 'v=DMARC1; p=none;' "
        "so receivers know the domain's policy.",
        multiple=lambda count: (
            f"{host} has {count} DMARC records, so receivers ignore them all; keep only one."
        ),
    )
    if isinstance(record, CheckWarning):
        return [record]
    try:
        dmarc_policy(record, "DMARC record")  # the rules the DNS settings' value obeys
    except ValidationError as exc:
        detail = (
            f"The DMARC record at {host} is not valid ({exc.reason.rstrip('.')}); publish e.g. "
            "'v=DMARC1; p=none;'."
        )
        return [warn("invalid", detail)]
    return []


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


async def auth_warnings(
    lookup: DnsLookup,
    domain: str,
    records: Sequence[RecordLike],
    reports: Sequence[RecordReport],
    settings: DnsExpectations | None,
) -> list[CheckWarning]:
    """SPF, DKIM and DMARC warnings for the hosts the template (or convention) names.

    ``reports`` are the template records' results: a host that failed there is skipped,
    and one whose CNAME checked out is read at its target.
    """
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
        if record.type.strip().upper() == "TXT" and is_spf(expected_text("TXT", record.value))
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
