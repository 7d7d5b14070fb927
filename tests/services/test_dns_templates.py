"""DNS templates: tokens, rendering every placeholder, and template CRUD."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, SenderDomain, TemplateKind, UserGroup
from app.models.database import Database
from app.services import dns_templates, validation
from app.services.dns_settings import EffectiveDnsSettings
from app.services.dns_templates import (
    RenderedRecord,
    create_template,
    delete_template,
    get_template,
    list_templates,
    preview,
    random_label,
    render_records,
    sender_domain_hash,
    template_as_dict,
    update_template,
)
from app.services.errors import (
    ConcurrentEditError,
    ConflictError,
    NotFoundError,
    ValidationError,
)

SECRET = "installation-secret"
TOKEN = "r4nd0mtok3"
SETTINGS = EffectiveDnsSettings(
    spf_include="include:spf.mailer.example.net",
    dkim_selector="key7",
    dkim_public_key="",
    dmarc_policy="v=DMARC1; p=none;",
    sender_domain_target="mailer.example.net",
    link_tracker_target="click.example.net",
    open_tracker_target="open.example.net",
    campaign_subdomain="sl",
    campaign_track_prefix="track",
    campaign_track_merge="-",
    gateway_subdomain="gw",
    version=1,
)
# The seeded Default campaign template (see the initial migration).
DEFAULT_RECORDS = [
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


def render(
    records: list[tuple[str, str, str]],
    *,
    settings: EffectiveDnsSettings = SETTINGS,
    kind: str = "campaign",
    domain: str = "mail.example.com",
) -> list[RenderedRecord]:
    return render_records(
        records,
        domain=domain,
        kind=kind,
        settings=settings,
        hash_secret=SECRET,
        random_token=TOKEN,
    )


def hosts(records: list[RenderedRecord]) -> list[str]:
    return [r.host for r in records]


# ---------------------------------------------------------------- tokens


def test_hash_is_keyed_hmac_sha256_of_ascii_domain_in_standard_base64() -> None:
    expected = base64.b64encode(
        hmac.new(b"k", b"mail.example.com", hashlib.sha256).digest()
    ).decode()
    assert sender_domain_hash("mail.example.com", "k") == expected
    assert len(base64.b64decode(sender_domain_hash("mail.example.com", "k"), validate=True)) == 32


def test_hash_is_stable_and_differs_per_domain_and_per_secret() -> None:
    first = sender_domain_hash("mail.example.com", SECRET)
    assert sender_domain_hash("mail.example.com", SECRET) == first
    assert sender_domain_hash("MAIL.Example.com.", SECRET) == first  # case, trailing dot
    assert sender_domain_hash("mail2.example.com", SECRET) != first
    assert sender_domain_hash("mail.example.com", SECRET + "x") != first


def test_hash_of_unicode_domain_equals_hash_of_its_punycode() -> None:
    assert sender_domain_hash("bücher.example", SECRET) == sender_domain_hash(
        "xn--bcher-kva.example", SECRET
    )


def test_random_label_is_ten_lowercase_alphanumerics_and_varies() -> None:
    labels = {random_label() for _ in range(200)}
    assert all(re.fullmatch(r"[a-z0-9]{10}", label) for label in labels)
    assert len(labels) > 190  # 36**10 possibilities: repeats mean a broken generator


# ---------------------------------------------------------------- rendering


EXPECTED_PLACEHOLDER_VALUES = {
    "_SenderDomain_": "mail.example.com",
    "_SenderDomainHash_": sender_domain_hash("mail.example.com", SECRET),
    "_SenderDomainRandom_": TOKEN,
    "_Subdomain_": "sl",
    "_TrackPrefix_": "track",
    "_TrackMerge_": None,  # only meaningful between two parts; tested separately
    "_SenderTarget_": "mailer.example.net",
    "_LinkTracker_": "click.example.net",
    "_OpenTracker_": "open.example.net",
    "_DkimSelector_": "key7",
}


def test_every_known_placeholder_has_an_expected_rendering() -> None:
    """Fails when validation gains a placeholder the renderer and these tests don't cover."""
    assert set(EXPECTED_PLACEHOLDER_VALUES) == set(validation.PLACEHOLDERS)


@pytest.mark.parametrize(
    "placeholder", [p for p, v in EXPECTED_PLACEHOLDER_VALUES.items() if v is not None]
)
def test_each_placeholder_is_replaced_in_a_txt_value(placeholder: str) -> None:
    [record] = render([("_SenderDomain_", "TXT", f"v=x {placeholder} end")])
    assert record.value == f"v=x {EXPECTED_PLACEHOLDER_VALUES[placeholder]} end"


def test_track_merge_joins_prefix_and_subdomain() -> None:
    [record] = render([("_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_", "A", "192.0.2.1")])
    assert record.host == "track-sl.mail.example.com"


def test_default_template_renders_the_reference_records() -> None:
    rendered = render(DEFAULT_RECORDS)
    assert rendered == [
        RenderedRecord("sl.mail.example.com", "CNAME", "mailer.example.net"),
        RenderedRecord(
            "key7._domainkey.sl.mail.example.com", "CNAME", "key7._domainkey.mailer.example.net"
        ),
        RenderedRecord("_dmarc.sl.mail.example.com", "CNAME", "_dmarc.mailer.example.net"),
        RenderedRecord("track-sl.mail.example.com", "CNAME", "click.example.net"),
        RenderedRecord(
            f"{TOKEN}.sl.mail.example.com",
            "TXT",
            sender_domain_hash("mail.example.com", SECRET),
        ),
    ]


def test_empty_subdomain_leaves_no_empty_label_or_dangling_merge() -> None:
    rendered = render(DEFAULT_RECORDS, settings=replace(SETTINGS, campaign_subdomain=""))
    assert hosts(rendered) == [
        "mail.example.com",
        "key7._domainkey.mail.example.com",
        "_dmarc.mail.example.com",
        "track.mail.example.com",
        f"{TOKEN}.mail.example.com",
    ]


@pytest.mark.parametrize(
    ("prefix", "merge", "subdomain", "expected"),
    [
        ("track", "", "sl", "tracksl.mail.example.com"),
        ("track", ".", "sl", "track.sl.mail.example.com"),
        ("", "-", "sl", "sl.mail.example.com"),
        ("", "-", "", "mail.example.com"),
        ("t", "-", "", "t.mail.example.com"),
    ],
)
def test_track_host_with_empty_parts(
    prefix: str, merge: str, subdomain: str, expected: str
) -> None:
    settings = replace(
        SETTINGS,
        campaign_track_prefix=prefix,
        campaign_track_merge=merge,
        campaign_subdomain=subdomain,
    )
    [record] = render(
        [("_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_", "CNAME", "_LinkTracker_")],
        settings=settings,
    )
    assert record.host == expected


def test_empty_track_prefix_that_puts_two_cnames_on_one_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="CNAME must be the only record"):
        render(DEFAULT_RECORDS, settings=replace(SETTINGS, campaign_track_prefix=""))


def test_gateway_uses_gateway_subdomain() -> None:
    [record] = render([("_Subdomain_._SenderDomain_", "CNAME", "_SenderTarget_")], kind="gateway")
    assert record.host == "gw.mail.example.com"


@pytest.mark.parametrize("placeholder", ["_TrackPrefix_", "_TrackMerge_"])
def test_gateway_refuses_track_placeholders(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="not available in gateway"):
        render([(f"{placeholder}x._SenderDomain_", "CNAME", "a.example.net")], kind="gateway")


def test_hosts_are_lower_case_without_trailing_dot_and_txt_keeps_case() -> None:
    [record] = render([("Verify._SenderDomain_.", "TXT", "Token=AbC _SenderDomainHash_")])
    assert record.host == "verify.mail.example.com"
    assert record.value == "Token=AbC " + sender_domain_hash("mail.example.com", SECRET)


def test_unicode_sender_domain_renders_as_punycode() -> None:
    [record] = render([("_SenderDomain_", "TXT", "x")], domain="Bücher.example")
    assert record.host == "xn--bcher-kva.example"


def test_hash_in_a_host_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="Record 1 host"):
        render([("_SenderDomainHash_._SenderDomain_", "TXT", "x")])


def test_mx_and_address_records_render_and_are_checked() -> None:
    rendered = render(
        [
            ("_SenderDomain_", "MX", "10 mx._SenderTarget_"),
            ("a._SenderDomain_", "A", "192.0.2.7"),
            ("b._SenderDomain_", "AAAA", "2001:db8::7"),
        ]
    )
    assert [r.value for r in rendered] == ["10 mx.mailer.example.net", "192.0.2.7", "2001:db8::7"]
    with pytest.raises(ValidationError, match="priority host"):
        render([("_SenderDomain_", "MX", "mx._SenderTarget_")])
    with pytest.raises(ValidationError, match="IPv4"):
        render([("_SenderDomain_", "A", "2001:db8::7")])


def test_two_records_rendering_identically_are_refused() -> None:
    with pytest.raises(ValidationError, match="renders the same as record 1"):
        render(
            [
                ("x._SenderDomain_", "TXT", "same"),
                ("X._SenderDomain_", "TXT", "same"),
            ]
        )


# ---------------------------------------------------------------- CRUD (all backends)


def test_template_crud_round_trip(database: Database) -> None:
    records = [("_Subdomain_._SenderDomain_", "CNAME", "eu.mailer.example.net")]
    with database.transaction() as session:
        created = create_template(
            session, name="EU Server", kind="campaign", records=records, description="EU"
        )
        assert created.version == 1
    with database.session() as session:
        loaded = get_template(session, "campaign", "eu server")  # case-insensitive lookup
        assert template_as_dict(loaded) == {
            "name": "EU Server",
            "kind": "campaign",
            "description": "EU",
            "records": [
                {"host": "_Subdomain_._SenderDomain_", "type": "CNAME", "value": records[0][2]}
            ],
        }
        names = [(t.kind, t.name) for t in list_templates(session, kind="campaign")]
        assert names == [(TemplateKind.CAMPAIGN, "Default"), (TemplateKind.CAMPAIGN, "EU Server")]
    with database.transaction() as session:
        updated = update_template(
            session,
            "campaign",
            "EU Server",
            new_name="EU",
            records=[{"host": "_SenderDomain_", "type": "txt", "value": "hello"}],
            expected_version=1,
        )
        assert updated.version == 2
    with database.transaction() as session, pytest.raises(ConcurrentEditError):
        update_template(session, "campaign", "EU", description="x", expected_version=1)
    with database.transaction() as session:
        assert [
            (r.host, r.type, r.value) for r in get_template(session, "campaign", "EU").records
        ] == [("_SenderDomain_", "TXT", "hello")]
        delete_template(session, "campaign", "EU")
    with database.session() as session:
        with pytest.raises(NotFoundError):
            get_template(session, "campaign", "EU")
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity == "dns_template")
            .order_by(AuditEntry.id)
        ).all()
        assert actions == ["create", "update", "delete"]


def test_template_used_by_a_group_or_named_default_cannot_be_deleted(database: Database) -> None:
    with database.transaction() as session:
        template = create_template(session, name="HV", kind="campaign", records=[])
        session.add(UserGroup(name="Bulk senders", campaign_dns_template=template))
    with database.transaction() as session:
        with pytest.raises(ConflictError, match="Bulk senders"):
            delete_template(session, "campaign", "HV")
        with pytest.raises(ConflictError, match="cannot be deleted"):
            delete_template(session, "gateway", "Default")
        with pytest.raises(ConflictError, match="cannot be renamed"):
            update_template(session, "campaign", "Default", new_name="Old default")
    with database.session() as session:
        assert len(list_templates(session)) == 3


# ---------------------------------------------------------------- CRUD rules (SQLite)


def test_duplicate_name_differing_only_by_case_is_refused(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        with pytest.raises(ConflictError, match="already exists"):
            create_template(session, name="default", kind="campaign", records=[])
        # Same name, other kind: allowed.
        create_template(session, name="EU", kind="gateway", records=[])
        create_template(session, name="EU", kind="campaign", records=[])


def test_record_rules_are_enforced_on_save(sqlite_database: Database) -> None:
    too_many = [(f"r{i}._SenderDomain_", "TXT", "x") for i in range(51)]
    cases: list[tuple[object, str]] = [
        (too_many, "at most 50"),
        (
            [
                ("_Subdomain_._SenderDomain_", "CNAME", "a.example.net"),
                ("_subdomain_._SenderDomain_.", "CNAME", "b.example.net"),
            ],
            "only record at its name",
        ),
        (
            [
                ("x._SenderDomain_", "TXT", "v"),
                ("x._SenderDomain_", "CNAME", "a.example.net"),
            ],
            "only record at its name",
        ),
        ([("_Unknown_._SenderDomain_", "TXT", "x")], "unknown placeholder"),
        ([("x._SenderDomain_", "SRV", "x")], "Record 1 type"),
        ([("_SenderDomainHash_._SenderDomain_", "TXT", "x")], "Record 1 host"),
        ([{"host": "x", "type": "TXT", "vaule": "y"}], "unknown field 'vaule'"),
        (["x TXT y"], "must be \\(host, type, value\\)"),
    ]
    with sqlite_database.transaction() as session:
        for index, (records, message) in enumerate(cases):
            with pytest.raises(ValidationError, match=message):
                create_template(
                    session,
                    name=f"T{index}",
                    kind="campaign",
                    records=records,  # type: ignore[arg-type]
                )
        assert [t.name for t in list_templates(session, kind="campaign")] == ["Default"]
        with pytest.raises(ValidationError, match="not available in gateway"):
            create_template(
                session,
                name="G",
                kind="gateway",
                records=[("_TrackPrefix_._SenderDomain_", "CNAME", "t.example.net")],
            )


def test_records_only_edit_bumps_version_and_is_audited(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        template = get_template(session, "gateway", "Default")
        assert template.version == 1
        update_template(
            session, "gateway", "Default", records=[("_SenderDomain_", "TXT", "v=spf1 -all")]
        )
        assert template.version == 2
        entry = session.scalars(select(AuditEntry).where(AuditEntry.entity == "dns_template")).one()
        assert entry.entity_key == "gateway:Default"
        assert "records" in json.loads(entry.details or "{}")
        # Saving the same records again changes nothing and writes no entry.
        update_template(
            session, "gateway", "Default", records=[("_SenderDomain_", "TXT", "v=spf1 -all")]
        )
        assert template.version == 2
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 1


def test_preview_renders_with_current_settings_and_stores_nothing(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        rendered = preview(session, "campaign", "Default", "news.example.org")
        secret = dns_templates.installation_hash_secret(session)
    assert hosts(rendered)[:4] == [
        "sl.news.example.org",
        "key1._domainkey.sl.news.example.org",
        "_dmarc.sl.news.example.org",
        "track-sl.news.example.org",
    ]
    assert rendered[0].value == "primary-sender-domain.com"
    assert rendered[4].value == sender_domain_hash("news.example.org", secret)
    assert re.fullmatch(r"[a-z0-9]{10}\.sl\.news\.example\.org", rendered[4].host)
    with sqlite_database.session() as session:
        assert session.scalar(select(func.count()).select_from(SenderDomain)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
