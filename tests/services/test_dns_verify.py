"""Live DNS verification against a real authoritative server (NSD on 127.0.0.1).

Every zone is written before the server starts (module-scoped), one sender domain per case
under ``verify.test.``. What can be tested here, without internet access:

* every record problem code, TXT joining, case and trailing-dot handling, SPF/DKIM/DMARC
  warnings, TCP fallback on truncation, lookup failures, storing results and status moves;
* authoritative discovery: the zone cut (SOA walk), NS lookup and NS address resolution,
  with NSD itself as the stub resolver, and failover from a dead NS address to a live one.

What can't: a walk from the root through real TLD delegations, the system resolver
(resolv.conf), IPv6 name servers, and a referral to a zone delegated below the domain's
zone (one NSD serving parent and child answers from the child, never with a referral).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import (
    AuditEntry,
    DomainStatus,
    Installation,
    SenderDomain,
    SenderDomainRecord,
    User,
    UserGroup,
)
from app.models.database import Database
from app.services import dns_auth_checks, dns_records, dns_wire, sender_domains
from app.services.dns_lookup import Discovery, find_authoritative_servers
from app.services.dns_record_checks import (
    check_template_adhoc,
    render_template_for_check,
    verify_records,
)
from app.services.dns_records import DomainReport, ExpectedRecord
from app.services.dns_settings import EffectiveDnsSettings, update_settings
from app.services.dns_templates import RenderedRecord, render_records
from app.services.dns_verdicts import NOT_CHECKED
from app.services.dns_verify import (
    recheck_enabled,
    recheck_enabled_once,
    verify_many,
    verify_sender_domain,
)
from app.services.errors import NotFoundError, ValidationError
from app.services.sender_domains import create_sender_domain, set_domain_status
from tests.conftest import peer_missing
from tests.dns_peer import (
    DnsPeer,
    free_port,
    library_text,
    missing_reason,
    quote_txt,
    record_line,
    start_server,
    zone_text,
)

ZONE = "verify.test"
TARGET = f"mailer.{ZONE}"
SECRET = "verify-test-installation-secret"
TOKEN = "tok0123456"
MAILER_V4, MAILER_V6 = "192.0.2.10", "2001:db8::10"

_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DKIM_KEY = base64.b64encode(
    _PRIVATE_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode("ascii")
DKIM_RECORD = f"v=DKIM1; k=rsa; p={DKIM_KEY}"

SETTINGS = EffectiveDnsSettings(
    spf_include=f"include:spf.{ZONE}",
    dkim_selector="key1",
    dkim_public_key=DKIM_RECORD,
    dmarc_policy="v=DMARC1; p=none;",
    sender_domain_target=TARGET,
    link_tracker_target=f"track.{TARGET}",
    open_tracker_target=f"track.{TARGET}",
    campaign_subdomain="sl",
    campaign_track_prefix="track",
    campaign_track_merge="-",
    gateway_subdomain="sl",
    version=1,
)
# The seeded Default campaign template (see the initial migration).
DEFAULT_TEMPLATE = [
    ("_Subdomain_._SenderDomain_", "CNAME", "_SenderTarget_"),
    (
        "_DkimSelector_._domainkey._Subdomain_._SenderDomain_",
        "CNAME",
        "_DkimSelector_._domainkey._SenderTarget_",
    ),
    ("_DMARC._Subdomain_._SenderDomain_", "CNAME", "_DMARC._SenderTarget_"),
    ("_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_", "CNAME", "_LinkTracker_"),
    ("_SenderDomainRandom_._Subdomain_._SenderDomain_", "TXT", "_SenderDomainHash_"),
]
LONG_TOKEN = "postroom-verification=" + "Ab3" * 100  # 322 bytes: two character-strings


def expected(domain: str) -> list[RenderedRecord]:
    """The records the Default template renders for ``domain`` (as create_sender_domain does)."""
    return render_records(
        DEFAULT_TEMPLATE,
        domain=domain,
        kind="campaign",
        settings=SETTINGS,
        hash_secret=SECRET,
        random_token=TOKEN,
    )


def lines(records: list[RenderedRecord], *, spf: bool = True) -> list[str]:
    out = [record_line(r.host, r.type, r.value) for r in records]
    if spf and records:
        domain = records[0].host.split(".", 1)[1]
        out.append(record_line(domain, "TXT", f"v=spf1 include:spf.{ZONE} ~all"))
    return out


def without(records: list[RenderedRecord], index: int) -> list[RenderedRecord]:
    return [r for i, r in enumerate(records) if i != index]


def d(label: str) -> str:
    return f"{label}.{ZONE}"


def _verify_zone() -> str:
    body = [
        record_line(TARGET, "A", MAILER_V4),
        record_line(TARGET, "AAAA", MAILER_V6),
        record_line(TARGET, "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
        record_line(f"key1._domainkey.{TARGET}", "TXT", DKIM_RECORD),
        record_line(f"_dmarc.{TARGET}", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@verify.test"),
        record_line(f"track.{TARGET}", "A", "192.0.2.20"),
        record_line(f"other.{ZONE}", "A", "192.0.2.99"),
        record_line(f"spf.{ZONE}", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    ]
    good = expected(d("good"))
    body += lines(good)
    body += lines(without(expected(d("missing")), 0))
    mismatch = expected(d("mismatch"))
    body += lines([replace(mismatch[0], value=f"other.{ZONE}"), *mismatch[1:]])
    wrong = expected(d("wrongtype"))
    body += lines([replace(wrong[0], type="TXT"), *wrong[1:]])
    body += lines([replace(r, host=f"{r.host}.{ZONE}") for r in expected(d("appended"))], spf=False)
    flat_same = expected(d("flatsame"))
    body += lines(without(flat_same, 0))
    body += [
        record_line(flat_same[0].host, "A", MAILER_V4),
        record_line(flat_same[0].host, "AAAA", MAILER_V6),
    ]
    flat_diff = expected(d("flatdiff"))
    body += lines(without(flat_diff, 0))
    body.append(record_line(flat_diff[0].host, "A", "198.51.100.7"))
    body += [
        record_line(d("multiple"), "TXT", f"v=spf1 include:spf.{ZONE} ~all"),
        record_line(d("multiple"), "TXT", "v=spf1 include:spf.other.example -all"),
        record_line(f"_verify.{d('longtxt')}", "TXT", LONG_TOKEN),
    ]
    # An SPF record of the domain's own, into which our include was merged.
    body += lines(expected(d("merged")), spf=False)
    body.append(
        record_line(d("merged"), "TXT", f"v=spf1 ip4:198.51.100.0/24 include:spf.{ZONE} -all")
    )
    # Upper-case owners and targets, as some providers display and serve them.
    for r in expected(d("upper")):
        value = r.value.upper() + "." if r.type == "CNAME" else r.value
        body.append(record_line(r.host.upper(), r.type, value))
    # 4 includes + a + mx at the top, a + mx in each include: 14 lookups.
    includes = [f"l{i}.{d('spfbig')}" for i in range(1, 5)]
    body.append(
        record_line(
            d("spfbig"),
            "TXT",
            "v=spf1 " + " ".join(f"include:{n}" for n in includes) + " a mx ~all",
        )
    )
    body += [record_line(name, "TXT", "v=spf1 a mx ~all") for name in includes]
    # An include loop must end the count, not recurse forever.
    body += [
        record_line(d("spfloop"), "TXT", f"v=spf1 include:l1.{d('spfloop')} ~all"),
        record_line(f"l1.{d('spfloop')}", "TXT", f"v=spf1 include:l2.{d('spfloop')} ~all"),
        record_line(f"l2.{d('spfloop')}", "TXT", f"v=spf1 include:l1.{d('spfloop')} ~all"),
    ]
    bad_dkim = expected(d("baddkim"))
    body += lines(without(bad_dkim, 1))  # the template below asks for no DKIM record
    body.append(
        record_line(
            f"key1._domainkey.{d('baddkim')}", "TXT", "v=DKIM1; k=rsa; p=bm90IGEga2V5IGF0IGFsbA=="
        )
    )
    no_p = expected(d("nodmarcp"))
    body += lines(without(no_p, 2))  # the template below asks for no DMARC record
    body.append(record_line(f"_dmarc.{d('nodmarcp')}", "TXT", "v=DMARC1; rua=mailto:r@verify.test"))
    # Other record types, and TXT records reached through a CNAME.
    body += [
        record_line(d("mx"), "MX", f"10 mail.{ZONE}"),
        record_line(f"www.{d('mx')}", "A", "192.0.2.80"),
        record_line(f"_dmarc.{d('viacname')}", "CNAME", f"_dmarc.{TARGET}"),
        record_line(f"token.{d('viacname')}", "CNAME", f"track.{TARGET}"),
    ]
    # More TXT data than fits a 1232-byte UDP answer: the server truncates, TCP follows.
    body += [record_line(d("big"), "TXT", f"filler-{i}-" + "x" * 180) for i in range(10)]
    body.append(record_line(d("big"), "TXT", "postroom-big=yes"))
    return zone_text(ZONE, body)


def _silent_zone() -> str:
    # The only name server points at an address nothing listens on.
    servers = {"ns1.silent.test": "127.0.0.2"}
    return zone_text("silent.test", lines(expected("good.silent.test")), servers)


def _failover_zone() -> str:
    # ns1 sorts first and points at an address nothing listens on.
    servers = {"ns1.failover.test": "127.0.0.2", "ns2.failover.test": "127.0.0.1"}
    return zone_text("failover.test", lines(expected("good.failover.test")), servers)


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsPeer]:
    reason = missing_reason()
    if reason:
        peer_missing(reason)
    zone_dir: Path = tmp_path_factory.mktemp("zones")
    peer = start_server(
        zone_dir,
        {
            ZONE: _verify_zone(),
            "failover.test": _failover_zone(),
            "silent.test": _silent_zone(),
        },
    )
    yield peer
    peer.stop()


@pytest.fixture
def ns(dns_server: DnsPeer) -> tuple[str, int]:
    return dns_server.address


async def check(
    ns: tuple[str, int], label: str, records: list[RenderedRecord] | None = None
) -> DomainReport:
    domain = d(label)
    wanted = expected(domain) if records is None else records
    return await verify_records(domain, wanted, nameserver=ns, settings=SETTINGS)


def problems(report: DomainReport) -> list[str | None]:
    return [r.problem for r in report.records]


def warning_codes(report: DomainReport) -> list[tuple[str, str]]:
    return [(w.check, w.problem) for w in report.warnings]


# ---------------------------------------------------------------- record problems


async def test_all_records_good(ns: tuple[str, int]) -> None:
    report = await check(ns, "good")
    assert report.status == "ok"
    assert problems(report) == [None] * 5
    assert report.warnings == []
    assert report.records[0].found == [TARGET]
    assert report.records[4].found == [expected(d("good"))[4].value]
    assert report.nameservers == [ns]


async def test_report_dict_shape(ns: tuple[str, int]) -> None:
    data = (await check(ns, "missing")).as_dict()
    assert list(data) == ["domain", "status", "verdict", "message", "records", "warnings"]
    assert data["verdict"] is None and data["message"] is None
    assert data["domain"] == d("missing") and data["status"] == "failed"
    assert list(data["records"][0]) == [
        "host",
        "type",
        "expected",
        "found",
        "ok",
        "problem",
        "detail",
    ]
    assert data["records"][0]["found"] == [] and data["records"][0]["ok"] is False
    json.dumps(data)  # storable as the last check report


async def test_missing_record(ns: tuple[str, int]) -> None:
    report = await check(ns, "missing")
    assert problems(report) == ["missing", None, None, None, None]
    first = report.records[0]
    assert first.host == f"sl.{d('missing')}" and first.expected == TARGET
    assert "add CNAME sl.missing.verify.test" in first.detail


async def test_mismatched_cname(ns: tuple[str, int]) -> None:
    report = await check(ns, "mismatch")
    assert problems(report) == ["mismatch", None, None, None, None]
    assert report.records[0].found == [f"other.{ZONE}"]
    assert f"change it to {TARGET}" in report.records[0].detail


async def test_txt_where_cname_expected_is_wrong_type(ns: tuple[str, int]) -> None:
    report = await check(ns, "wrongtype")
    assert problems(report) == ["wrong_type", None, None, None, None]
    assert report.records[0].found == [f"TXT {TARGET}"]
    assert "delete it and add CNAME" in report.records[0].detail


async def test_zone_appended_by_registrar(ns: tuple[str, int]) -> None:
    report = await check(ns, "appended")
    assert problems(report) == ["zone_appended"] * 5
    first = report.records[0]
    assert first.found == [TARGET]
    assert f"sl.appended.{ZONE}.{ZONE}" in first.detail
    assert "enter the host as sl.appended" in first.detail
    assert "right value" in first.detail


async def test_flattened_cname_with_same_addresses(ns: tuple[str, int]) -> None:
    report = await check(ns, "flatsame")
    assert problems(report) == ["flattened", None, None, None, None]
    assert sorted(report.records[0].found) == [f"A {MAILER_V4}", f"AAAA {MAILER_V6}"]
    assert "match mailer.verify.test's addresses" in report.records[0].detail


async def test_flattened_cname_with_other_addresses(ns: tuple[str, int]) -> None:
    report = await check(ns, "flatdiff")
    assert problems(report) == ["flattened", None, None, None, None]
    assert report.records[0].found == ["A 198.51.100.7"]
    assert "differ from" in report.records[0].detail


async def test_conflicting_spf_records(ns: tuple[str, int]) -> None:
    record = ExpectedRecord(d("multiple"), "TXT", f"v=spf1 include:spf.{ZONE} ~all")
    report = await verify_records(d("multiple"), [record], nameserver=ns, settings=SETTINGS)
    assert problems(report) == ["multiple"]
    assert len(report.records[0].found) == 2
    # The failing host is reported once, as a record problem, not again as an SPF warning.
    assert not [w for w in report.warnings if w.check == "spf"]


async def test_txt_split_in_255_byte_strings_is_joined(ns: tuple[str, int]) -> None:
    record = ExpectedRecord(f"_verify.{d('longtxt')}", "TXT", LONG_TOKEN)
    report = await verify_records(d("longtxt"), [record], nameserver=ns)
    assert report.status == "ok"
    assert report.records[0].found == [LONG_TOKEN]
    # Pasted in zone-file form, the value means the same joined text.
    quoted = replace(record, value=quote_txt(LONG_TOKEN))
    assert (await verify_records(d("longtxt"), [quoted], nameserver=ns)).status == "ok"


async def test_names_compare_without_case_or_final_dot(ns: tuple[str, int]) -> None:
    records = [
        ExpectedRecord(
            r.host.upper() + ".", r.type, r.value.title() + "." if r.type == "CNAME" else r.value
        )
        for r in expected(d("upper"))
    ]
    report = await verify_records(d("upper").upper() + ".", records, nameserver=ns)
    assert report.status == "ok", report.as_dict()
    assert report.domain == d("upper")


async def test_truncated_answer_is_retried_over_tcp(
    ns: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    over_tcp: list[int] = []
    real_tcp = dns_wire.Transport._tcp

    async def counting_tcp(wire: bytes, address: str, port: int, timeout: float) -> object:
        over_tcp.append(port)
        return await real_tcp(wire, address, port, timeout)

    monkeypatch.setattr(dns_wire.Transport, "_tcp", staticmethod(counting_tcp))
    record = ExpectedRecord(d("big"), "TXT", "postroom-big=yes")
    report = await verify_records(d("big"), [record], nameserver=ns)
    assert over_tcp == [ns[1]]
    assert report.status == "ok"
    assert len(report.records[0].found) == 11


async def test_mx_and_address_records(ns: tuple[str, int]) -> None:
    records = [
        ExpectedRecord(d("mx"), "MX", f"10 MAIL.{ZONE}."),
        ExpectedRecord(f"www.{d('mx')}", "A", "192.0.2.81"),
    ]
    report = await verify_records(d("mx"), records, nameserver=ns)
    assert problems(report) == [None, "mismatch"]
    assert report.records[0].found == [f"10 mail.{ZONE}"]
    assert "192.0.2.80 instead of 192.0.2.81" in report.records[1].detail


async def test_txt_found_through_a_cname(ns: tuple[str, int]) -> None:
    dmarc = "v=DMARC1; p=none; rua=mailto:dmarc@verify.test"
    records = [
        ExpectedRecord(f"_dmarc.{d('viacname')}", "TXT", dmarc),
        ExpectedRecord(f"token.{d('viacname')}", "TXT", "postroom-token"),
    ]
    report = await verify_records(d("viacname"), records, nameserver=ns)
    # A CNAME to the right TXT record serves it as receivers see it: that passes.
    assert problems(report) == [None, "wrong_type"]
    assert report.records[0].found == [dmarc]
    assert report.records[1].found == [f"CNAME track.{TARGET}"]
    assert "which has no TXT record" in report.records[1].detail


# ---------------------------------------------------------------- SPF, DKIM, DMARC


async def test_spf_with_too_many_lookups(ns: tuple[str, int]) -> None:
    report = await check(ns, "spfbig", [])
    assert ("spf", "too_many_lookups") in warning_codes(report)
    (warning,) = [w for w in report.warnings if w.problem == "too_many_lookups"]
    assert "needs 14 DNS lookups" in warning.detail
    # It also lacks the delivery servers' include.
    assert ("spf", "no_include") in warning_codes(report)


async def test_spf_include_loop_ends(ns: tuple[str, int]) -> None:
    report = await asyncio.wait_for(check(ns, "spfloop", []), 10)
    assert ("spf", "too_many_lookups") not in warning_codes(report)


async def test_missing_spf_is_a_warning_not_a_failure(ns: tuple[str, int]) -> None:
    report = await check(ns, "appended")  # its apex has no SPF record
    assert ("spf", "missing") in warning_codes(report)
    assert f"include:spf.{ZONE}" in report.warnings[0].detail


async def test_bad_dkim_key_where_template_asks_for_none(ns: tuple[str, int]) -> None:
    records = without(expected(d("baddkim")), 1)
    report = await check(ns, "baddkim", records)
    assert report.status == "ok"  # a warning never fails the domain
    assert warning_codes(report) == [("dkim", "bad_key")]
    assert f"key1._domainkey.{d('baddkim')}" == report.warnings[0].host


async def test_dmarc_without_policy(ns: tuple[str, int]) -> None:
    records = without(expected(d("nodmarcp")), 2)
    report = await check(ns, "nodmarcp", records)
    assert report.status == "ok"
    assert warning_codes(report) == [("dmarc", "invalid")]
    assert "p=none" in report.warnings[0].detail


def test_dkim_key_forms() -> None:
    ed_key = base64.b64encode(
        ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    ).decode()
    assert dns_auth_checks._dkim_key_problem(f"v=DKIM1; k=ed25519; p={ed_key}") is None
    assert dns_auth_checks._dkim_key_problem(DKIM_RECORD) is None
    assert dns_auth_checks._dkim_key_problem("v=DKIM1; k=rsa; p=")[0] == "revoked"  # type: ignore[index]
    assert dns_auth_checks._dkim_key_problem("v=DKIM1; k=rsa; p=%%%")[0] == "bad_key"  # type: ignore[index]
    assert dns_auth_checks._dkim_key_problem("v=DKIM2; p=" + DKIM_KEY)[0] == "bad_key"  # type: ignore[index]


# ---------------------------------------------------------------- lookups


def assert_said_once(report: DomainReport, sentence: str) -> None:
    """The domain's verdict is at the top; the records only point to it; no library text."""
    assert report.error is not None and sentence in report.error, report.error
    assert "Advanced › Name server" in report.error
    assert all(r.detail == NOT_CHECKED for r in report.records)
    shown = json.dumps(report.as_dict())
    assert library_text(shown) == [], shown
    assert shown.count(sentence) == 1


async def test_unanswered_questions_are_errors_not_failures() -> None:
    silent = ("127.0.0.1", free_port())
    report = await verify_records(d("good"), expected(d("good")), nameserver=silent, timeout=0.5)
    assert report.status == "error"
    assert problems(report) == ["lookup_failed"] * 5
    assert report.verdict == "override_silent"
    assert_said_once(report, f"The name server 127.0.0.1 port {silent[1]} did not answer")


async def test_unreachable_resolver_is_said_once() -> None:
    """Discovery through a resolver address nothing answers on (a closed loopback port)."""
    closed = ("127.0.0.1", free_port())
    discovery = Discovery(resolver=closed, port=closed[1])
    report = await verify_records(d("good"), expected(d("good")), discovery=discovery, timeout=0.5)
    assert report.status == "error" and report.verdict == "unreachable"
    assert_said_once(report, "No name server could be reached from this workstation")
    with pytest.raises(ValidationError) as refused:
        await find_authoritative_servers(d("good"), discovery=discovery, timeout=0.5)
    assert "No name server could be reached" in str(refused.value)
    assert library_text(str(refused.value)) == []


async def test_silent_authoritative_servers_are_said_once(ns: tuple[str, int]) -> None:
    """The zone is found, but its only name server (127.0.0.2) does not answer."""
    discovery = Discovery(resolver=ns, port=ns[1])
    domain = "good.silent.test"
    report = await verify_records(domain, expected(domain), discovery=discovery, timeout=0.5)
    assert report.status == "error" and report.verdict == "servers_silent"
    assert report.nameservers == [("127.0.0.2", ns[1])]
    assert_said_once(report, f"The name servers of {domain} (127.0.0.2 port {ns[1]}) did not")


async def test_name_server_that_does_not_serve_the_domain(ns: tuple[str, int]) -> None:
    """NSD refuses questions about zones it does not hold."""
    report = await verify_records("example.org", expected("example.org"), nameserver=ns)
    assert report.status == "error" and report.verdict == "override_refused"
    assert_said_once(report, f"The name server 127.0.0.1 port {ns[1]} answered, but not for")


async def test_domain_that_does_not_exist_under_its_zone(ns: tuple[str, int]) -> None:
    """The zone's server says NXDOMAIN for the domain itself: nothing can be published."""
    discovery = Discovery(resolver=ns, port=ns[1])
    domain = d("nowhere")
    report = await verify_records(domain, expected(domain), discovery=discovery, timeout=1.0)
    assert report.status == "failed" and report.verdict == "not_in_dns"
    assert problems(report) == ["missing"] * 5
    assert report.error is not None
    assert report.error.startswith(f"{domain} does not exist in public DNS")
    assert "Advanced › Name server" in report.error
    assert library_text(json.dumps(report.as_dict())) == []


async def test_name_unknown_up_to_the_root_does_not_exist() -> None:
    """The system resolver (resolv.conf) asked about a name under the reserved .invalid.

    RFC 6761 has resolvers answer NXDOMAIN for it: dnspython's SOA walk then ends at the
    root ("no SOA RR at the DNS root name"), or at the root zone's own SOA on the internet.
    Both mean the name is not in public DNS. It needs a working resolver, the one peer
    here that is not local; NSD can't stand in for it (it would have to serve the root).
    """
    domain = "mail.acme.invalid"
    report = await verify_records(domain, expected(domain), timeout=3.0)
    if report.verdict == "unreachable":
        pytest.skip("the system DNS resolver does not answer (it is not one of the test peers)")
    assert report.status == "error" and report.verdict == "not_in_dns"
    assert_said_once(report, f"{domain} does not exist in public DNS")


async def test_authoritative_servers_are_discovered(ns: tuple[str, int]) -> None:
    discovery = Discovery(resolver=ns, port=ns[1])
    zone, servers = await find_authoritative_servers(f"sl.{d('good')}", discovery=discovery)
    assert (zone, servers) == (ZONE, [ns])
    report = await verify_records(
        d("good"), expected(d("good")), discovery=discovery, settings=SETTINGS
    )
    assert report.status == "ok" and report.warnings == []
    assert report.nameservers == [ns]
    flattened = await verify_records(d("flatsame"), expected(d("flatsame")), discovery=discovery)
    assert problems(flattened)[0] == "flattened"


async def test_dead_name_server_fails_over_to_the_next(ns: tuple[str, int]) -> None:
    discovery = Discovery(resolver=ns, port=ns[1])
    domain = "good.failover.test"
    report = await verify_records(domain, expected(domain), discovery=discovery, timeout=2.0)
    assert report.nameservers == [("127.0.0.2", ns[1]), ns]
    assert report.status == "ok", report.as_dict()


async def test_domain_outside_any_served_zone(ns: tuple[str, int]) -> None:
    discovery = Discovery(resolver=ns, port=ns[1])
    report = await verify_records(
        "example.org", expected("example.org"), discovery=discovery, timeout=1.0
    )
    assert report.status == "error"
    # NSD, asked as the resolver, refuses a name outside its zones: nobody to ask.
    assert report.verdict == "unreachable"
    assert_said_once(report, "No name server could be reached from this workstation")
    with pytest.raises(ValidationError, match="No name server could be reached"):
        await find_authoritative_servers("example.org", discovery=discovery, timeout=1.0)


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=700))
def test_pasted_zone_form_means_the_joined_text(value: str) -> None:
    assert dns_records.expected_text("TXT", quote_txt(value)) == value


# ---------------------------------------------------------------- the wire reader

_LABEL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=12,
)
# Mostly plain labels, sometimes bytes that need escaping in text form (dots, spaces, 0xff).
_ODD_LABEL = st.binary(min_size=1, max_size=8)
_NAMES = st.lists(st.one_of(_LABEL.map(str.encode), _ODD_LABEL), min_size=1, max_size=4).map(
    lambda labels: dns.name.Name((*labels, b"zone", b"test", b""))
)
_RDATA = st.one_of(
    st.tuples(st.just("A"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("AAAA"), st.ip_addresses(v=6).map(str)),
    st.tuples(st.just("CNAME"), _NAMES.map(lambda n: n.to_text())),
    st.tuples(
        st.just("MX"),
        st.tuples(st.integers(0, 65535), _NAMES).map(lambda p: f"{p[0]} {p[1].to_text()}"),
    ),
    st.tuples(
        st.just("TXT"),
        st.lists(st.binary(max_size=300), min_size=1, max_size=3).map(
            lambda parts: " ".join(quote_txt(p.decode("latin-1")) for p in parts)
        ),
    ),
)


def _reference_value(rdata: dns.rdata.Rdata) -> str:
    """What the reader must produce for ``rdata``, computed through dnspython."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdata.rdtype == dns.rdatatype.CNAME:
        return dns_wire.norm(rdata.target)
    if rdata.rdtype == dns.rdatatype.MX:
        return f"{rdata.preference} {dns_wire.norm(rdata.exchange)}"
    return dns_wire.ip_key(rdata.address)


@st.composite
def _responses(draw: st.DrawFn) -> dns.message.Message:
    qname = draw(_NAMES)
    query = dns.message.make_query(qname, draw(st.sampled_from(["A", "TXT", "CNAME", "MX"])))
    response = dns.message.make_response(query)
    response.set_rcode(draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN])))
    if draw(st.booleans()):
        response.flags |= dns.flags.AA
    owners = [qname, *draw(st.lists(_NAMES, max_size=2))]
    for _ in range(draw(st.integers(0, 4))):
        rtype, text = draw(_RDATA)
        owner = draw(st.sampled_from(owners))
        rrset = response.find_rrset(
            response.answer, owner, dns.rdataclass.IN, dns.rdatatype.from_text(rtype), create=True
        )
        rrset.add(dns.rdata.from_text("IN", rtype, text), 300)
    zone = dns.name.from_text("zone.test.")
    if draw(st.booleans()):
        soa = dns.rdata.from_text("IN", "SOA", "ns1.zone.test. host.zone.test. 1 2 3 4 5")
        response.find_rrset(
            response.authority, zone, dns.rdataclass.IN, dns.rdatatype.SOA, create=True
        ).add(soa, 300)
    if draw(st.booleans()):
        ns = dns.rdata.from_text("IN", "NS", "ns1.zone.test.")
        response.find_rrset(
            response.authority, zone, dns.rdataclass.IN, dns.rdatatype.NS, create=True
        ).add(ns, 300)
        glue = dns.rdata.from_text("IN", "A", "192.0.2.53")
        response.find_rrset(
            response.additional,
            dns.name.from_text("ns1.zone.test."),
            dns.rdataclass.IN,
            dns.rdatatype.A,
            create=True,
        ).add(glue, 300)
    return response


@given(_responses())
def test_wire_reader_agrees_with_dnspython(message: dns.message.Message) -> None:
    wire = message.to_wire()  # with name compression, as servers send
    reference = dns.message.from_wire(wire)
    read = dns_wire.read_response(wire)
    assert read.query_id == reference.id and read.rcode == reference.rcode()
    question = reference.question[0]
    sent = dns_wire.Question.make(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
    assert read.question == sent.section.lower()
    expected = sorted(
        (dns_wire.name_key(tuple(rrset.name.labels[:-1])), rrset.rdtype, _reference_value(rdata))
        for rrset in reference.answer
        for rdata in rrset
    )
    assert sorted((r.owner, r.rdtype, r.value) for r in read.answer) == expected
    if not reference.answer:
        soa = [r for r in reference.authority if r.rdtype == dns.rdatatype.SOA]
        assert read.soa_owner == (dns_wire.norm(soa[0].name) if soa else None)
        assert read.has_ns == any(r.rdtype == dns.rdatatype.NS for r in reference.authority)


@given(_responses(), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4))
def test_wire_reader_refuses_damage_cleanly(
    message: dns.message.Message, damage: list[tuple[int, int]]
) -> None:
    wire = bytearray(message.to_wire())
    for position, value in damage:
        wire[position % len(wire)] = value
    # Refused as unreadable is the only failure allowed.
    with contextlib.suppress(dns_wire.WireError):
        dns_wire.read_response(bytes(wire))


@given(st.binary(max_size=600))
def test_wire_reader_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(dns_wire.WireError):
        dns_wire.read_response(data)


# ---------------------------------------------------------------- stored domains


def _add_user(session: Session) -> None:
    group = UserGroup(name="Senders", sender_domain_management=True)
    session.add(group)
    session.add(User(username="alice", email="alice@example.com", group=group))
    session.flush()


@pytest.fixture
def sender_db(database: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    """The database fixture with settings, secret and token matching the served zone."""
    return _prepare(database, monkeypatch)


@pytest.fixture
def sqlite_sender_db(sqlite_database: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    return _prepare(sqlite_database, monkeypatch)


def _prepare(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setattr(sender_domains, "random_label", lambda: TOKEN)
    with db.transaction() as session:
        session.execute(update(Installation).values(hash_secret=SECRET))
        update_settings(
            session,
            {
                "spf_include": SETTINGS.spf_include,
                "dkim_selector": SETTINGS.dkim_selector,
                "dkim_public_key": SETTINGS.dkim_public_key,
                "sender_domain_target": SETTINGS.sender_domain_target,
                "link_tracker_target": SETTINGS.link_tracker_target,
                "open_tracker_target": SETTINGS.open_tracker_target,
            },
        )
        _add_user(session)
        for label in ("good", "missing", "mismatch", "flatsame"):
            create_sender_domain(session, "alice", d(label))
    return db


def _row(db: Database, label: str) -> SenderDomain:
    with db.session() as session:
        row = session.scalars(select(SenderDomain).where(SenderDomain.domain == d(label))).one()
        row.records  # noqa: B018  (load the records before the session closes)
        return row


def _audit(db: Database, label: str) -> list[dict[str, object]]:
    with db.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "verify", AuditEntry.entity_key == d(label)
            )
        ).all()
        return [json.loads(e.details or "{}") for e in entries]


async def test_snapshot_matches_the_served_records(sqlite_sender_db: Database) -> None:
    row = _row(sqlite_sender_db, "good")
    assert [(r.host, r.type, r.value) for r in row.records] == [
        (r.host, r.type, r.value) for r in expected(d("good"))
    ]


async def test_pending_domain_whose_records_pass_is_enabled(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    before = _row(sqlite_sender_db, "good")
    report = await verify_sender_domain(
        sqlite_sender_db, d("good"), nameserver=ns, actor="admin@ws"
    )
    assert report.status == "ok" and report.broken is False
    row = _row(sqlite_sender_db, "good")
    assert row.status is DomainStatus.ENABLED
    assert row.verified_at is not None and row.last_check_at is not None
    assert [r.last_ok for r in row.records] == [True] * 5
    stored = json.loads(row.last_check_report or "")
    assert stored["status"] == "ok" and stored["broken"] is False
    assert stored["records"] == report.as_dict()["records"]
    assert row.version == before.version + 1  # the status change is an edit
    (entry,) = _audit(sqlite_sender_db, "good")
    assert entry["status"] == ["approval_pending", "enabled"] and entry["result"] == "ok"


async def test_failing_record_keeps_the_domain_pending(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    before = _row(sqlite_sender_db, "missing")
    report = await verify_sender_domain(sqlite_sender_db, d("missing"), nameserver=ns)
    assert report.status == "failed" and report.broken is False
    row = _row(sqlite_sender_db, "missing")
    assert row.status is DomainStatus.APPROVAL_PENDING and row.verified_at is None
    assert [r.last_ok for r in row.records] == [False, True, True, True, True]
    assert row.version == before.version  # storing a check is not an edit
    assert json.loads(row.last_check_report or "")["records"][0]["problem"] == "missing"
    (entry,) = _audit(sqlite_sender_db, "missing")
    assert entry["failed"] == [f"sl.{d('missing')}"] and "status" not in entry


async def test_enabled_domain_whose_records_broke_is_flagged(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    with sqlite_sender_db.transaction() as session:
        set_domain_status(session, d("mismatch"), "campaign", "enabled")
    report = await verify_sender_domain(sqlite_sender_db, d("mismatch"), nameserver=ns)
    assert report.broken is True and report.status == "failed"
    row = _row(sqlite_sender_db, "mismatch")
    assert row.status is DomainStatus.ENABLED
    assert json.loads(row.last_check_report or "")["broken"] is True


# ---------------------------------------------------------------- the SPF record to publish


def _spf_of(db: Database, label: str) -> dict[str, object]:
    with db.session() as session:
        spf = sender_domains.domain_detail(session, d(label), "campaign")["spf"]
    assert isinstance(spf, dict)
    return spf


async def test_the_spf_record_is_listed_and_passes_when_merged_into_an_existing_one(
    sender_db: Database, ns: tuple[str, int]
) -> None:
    with sender_db.transaction() as session:
        create_sender_domain(session, "alice", d("merged"))
    before = _spf_of(sender_db, "merged")
    # Listed with the template's records before any check, with the merge advice.
    assert (before["host"], before["type"], before["value"]) == (
        d("merged"),
        "TXT",
        f"v=spf1 {SETTINGS.spf_include} ~all",
    )
    assert before["ok"] is None and before["existing"] is None
    assert "merge" in str(before["note"])
    await verify_sender_domain(sender_db, d("merged"), nameserver=ns)
    after = _spf_of(sender_db, "merged")
    # The domain's own record holds more than ours, yet includes ours: that passes.
    assert after["ok"] is True and after["existing"] is True
    assert str(after["note"]).startswith("Merge into your existing SPF record")


async def test_an_existing_spf_record_without_our_include_fails_the_spf_row(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    with sqlite_sender_db.transaction() as session:
        create_sender_domain(session, "alice", d("spfbig"))
        create_sender_domain(session, "alice", d("appended"))
    await verify_sender_domain(sqlite_sender_db, d("spfbig"), nameserver=ns)
    lacking = _spf_of(sqlite_sender_db, "spfbig")
    assert lacking["ok"] is False and lacking["existing"] is True
    assert lacking["problem"] == "no_include"
    assert str(lacking["note"]).startswith("Merge into your existing SPF record")
    assert f"lacks {SETTINGS.spf_include}" in str(lacking["detail"])

    await verify_sender_domain(sqlite_sender_db, d("appended"), nameserver=ns)
    missing = _spf_of(sqlite_sender_db, "appended")
    assert missing["ok"] is False and missing["existing"] is False
    assert missing["problem"] == "missing"
    assert not str(missing["note"]).startswith("Merge into your existing")


def test_no_spf_row_when_the_template_has_its_own_or_no_include_is_set() -> None:
    own = [{"host": d("own"), "type": "TXT", "value": f"v=spf1 {SETTINGS.spf_include} -all"}]
    assert sender_domains.spf_record(d("own"), own, SETTINGS.spf_include) is None
    assert sender_domains.spf_record(d("own"), [], "  ") is None
    other = [{"host": d("own"), "type": "TXT", "value": "postroom-verify=abc"}]
    spf = sender_domains.spf_record(d("own"), other, SETTINGS.spf_include)
    assert spf is not None and spf["value"] == f"v=spf1 {SETTINGS.spf_include} ~all"
    # A check whose questions went unanswered says nothing about it.
    unanswered = {"status": "error", "records": [], "warnings": []}
    assert sender_domains.spf_outcome(d("own"), SETTINGS.spf_include, unanswered)["ok"] is None


async def test_unknown_domain_is_refused(sqlite_sender_db: Database, ns: tuple[str, int]) -> None:
    with pytest.raises(NotFoundError):
        await verify_sender_domain(sqlite_sender_db, d("nobody"), nameserver=ns)


async def test_verify_many_reports_progress_in_input_order(
    sender_db: Database, ns: tuple[str, int]
) -> None:
    calls: list[tuple[int, int, str]] = []
    names = [d("missing"), d("nobody"), d("good")]
    reports = await verify_many(
        sender_db,
        names,
        concurrency=2,
        nameserver=ns,
        progress=lambda done, total, report: calls.append((done, total, report.domain)),
    )
    assert [r.domain for r in reports] == names
    assert [r.status for r in reports] == ["failed", "error", "ok"]
    assert reports[1].warnings[0].problem == "not_found"
    assert [(done, total) for done, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(name for _, _, name in calls) == sorted(names)
    assert _row(sender_db, "good").status is DomainStatus.ENABLED
    assert _row(sender_db, "missing").status is DomainStatus.APPROVAL_PENDING


async def test_verify_many_stops_starting_domains_when_cancelled(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    cancel = asyncio.Event()
    names = [d(label) for label in ("good", "missing", "mismatch", "flatsame")]
    reports = await verify_many(
        sqlite_sender_db,
        names,
        concurrency=1,
        nameserver=ns,
        cancel=cancel,
        progress=lambda done, total, report: cancel.set(),
    )
    assert [r.domain for r in reports] == [d("good")]
    assert _row(sqlite_sender_db, "good").last_check_at is not None
    assert _row(sqlite_sender_db, "missing").last_check_at is None


async def test_recheck_returns_enabled_domains_that_broke(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    with sqlite_sender_db.transaction() as session:
        for label in ("good", "mismatch"):
            set_domain_status(session, d(label), "campaign", "enabled")
    broken = await recheck_enabled_once(sqlite_sender_db, nameserver=ns)
    assert [r.domain for r in broken] == [d("mismatch")]
    # A schedule audits changes only: the newly broken domain, not the healthy one.
    assert len(_audit(sqlite_sender_db, "mismatch")) == 1
    assert _audit(sqlite_sender_db, "good") == []
    # Still broken on the next pass: reported again, but no new audit entry.
    assert [r.domain for r in await recheck_enabled_once(sqlite_sender_db, nameserver=ns)] == [
        d("mismatch")
    ]
    assert len(_audit(sqlite_sender_db, "mismatch")) == 1


async def test_recheck_loop_runs_until_stopped(
    sqlite_sender_db: Database, ns: tuple[str, int]
) -> None:
    with sqlite_sender_db.transaction() as session:
        set_domain_status(session, d("flatsame"), "campaign", "enabled")
    stop = asyncio.Event()
    seen: list[list[str]] = []

    def on_broken(reports: list[DomainReport]) -> None:
        seen.append([r.domain for r in reports])
        stop.set()

    loop = recheck_enabled(
        sqlite_sender_db, interval_seconds=0.01, stop=stop, on_broken=on_broken, nameserver=ns
    )
    await asyncio.wait_for(loop, 10)
    assert seen == [[d("flatsame")]]


async def test_a_running_send_engine_rechecks_enabled_domains(
    sqlite_sender_db: Database, ns: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The engine's schedule flags a broken domain with no console open (audit and log)."""
    from app.engine.runner import EngineOptions, SendEngine

    with sqlite_sender_db.transaction() as session:
        for label in ("good", "mismatch"):
            set_domain_status(session, d(label), "campaign", "enabled")
    engine = SendEngine(
        sqlite_sender_db,
        EngineOptions(
            engine_id="dns-1",
            install_signal_handlers=False,
            recheck_seconds=60,
            recheck_first_delay=0,
            nameserver=ns,
            poll_seconds=0.05,
        ),
    )
    caplog.set_level(logging.WARNING, logger="app.engine.runner")
    task = asyncio.create_task(engine.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if _audit(sqlite_sender_db, "mismatch"):
            break
    engine.request_stop("test over")
    await asyncio.wait_for(task, 30)
    assert len(_audit(sqlite_sender_db, "mismatch")) == 1
    with sqlite_sender_db.session() as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.entity_key == d("mismatch"))
        ).all()
    assert "engine dns-1" in actors
    assert _audit(sqlite_sender_db, "good") == []
    assert f"sender domain {d('mismatch')}: its DNS records no longer verify" in caplog.text


async def test_adhoc_template_check(sqlite_sender_db: Database, ns: tuple[str, int]) -> None:
    with sqlite_sender_db.session() as session:
        registered, settings = render_template_for_check(session, d("good"), "Default")
        unregistered, _ = render_template_for_check(session, d("fresh"), "Default")
    report = await check_template_adhoc(d("good"), registered, ns, settings=settings)
    assert report.status == "ok" and report.warnings == []
    with sqlite_sender_db.session() as session:
        assert (
            session.scalars(select(SenderDomainRecord.last_ok)).all() == [None] * 20
        )  # nothing stored
    other = await check_template_adhoc(d("fresh"), unregistered, ns)
    assert problems(other) == ["missing"] * 5
