"""Global DNS settings: reference defaults, environment fallbacks, validation, locking."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, DnsSettings
from app.models.database import Database
from app.services.dns_settings import (
    dkim_public_key,
    dmarc_policy,
    get_settings,
    normalize_setting,
    settings_as_dict,
    spf_include,
    update_settings,
)
from app.services.errors import ConcurrentEditError, ValidationError

# 40 bytes is enough for the length check; real keys are longer.
KEY_B64 = base64.b64encode(bytes(range(40))).decode()


def test_fresh_database_has_the_reference_defaults(sqlite_database: Database) -> None:
    with sqlite_database.session() as session:
        settings = get_settings(session)
    assert settings_as_dict(settings) == {
        "spf_include": "include:spf.yourdomain.com",
        "dkim_selector": "key1",
        "dkim_public_key": "",
        "dmarc_policy": "v=DMARC1; p=none;",
        "sender_domain_target": "primary-sender-domain.com",
        "link_tracker_target": "primary-sender-domain.com",
        "open_tracker_target": "primary-sender-domain.com",
        "campaign_subdomain": "sl",
        "campaign_track_prefix": "track",
        "campaign_track_merge": "-",
        "gateway_subdomain": "sl",
        "version": 1,
    }


def test_environment_applies_while_unset_and_stored_values_win(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAILCAMPAIGN_DNS_SUBDOMAIN", "Mail")
    monkeypatch.setenv("EMAILCAMPAIGN_DNS_TRACK_PREFIX", "clk")
    monkeypatch.setenv("EMAILCAMPAIGN_DNS_TRACK_MERGE", ".")
    monkeypatch.setenv("EMAILGATEWAY_DNS_SUBDOMAIN", "")  # set but empty: empty
    with sqlite_database.transaction() as session:
        settings = get_settings(session)
        assert (
            settings.campaign_subdomain,
            settings.campaign_track_prefix,
            settings.campaign_track_merge,
            settings.gateway_subdomain,
        ) == ("mail", "clk", ".", "")
        update_settings(session, {"campaign_subdomain": "em", "campaign_track_merge": ""})
    with sqlite_database.transaction() as session:
        settings = get_settings(session)
        assert settings.campaign_subdomain == "em"
        assert settings.campaign_track_merge == ""
        assert settings.campaign_track_prefix == "clk"  # still from the environment
        # None stores NULL again: the environment applies once more.
        update_settings(session, {"campaign_subdomain": None})
        assert get_settings(session).campaign_subdomain == "mail"
        row = session.get(DnsSettings, 1)
        assert row is not None and row.campaign_subdomain is None


def test_invalid_environment_value_names_the_variable(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAILCAMPAIGN_DNS_TRACK_MERGE", "+")
    with sqlite_database.session() as session, pytest.raises(ValidationError) as caught:
        get_settings(session)
    assert caught.value.field == "Environment variable EMAILCAMPAIGN_DNS_TRACK_MERGE"


def test_update_is_stored_audited_and_versioned(database: Database) -> None:
    with database.transaction() as session:
        result = update_settings(
            session,
            {
                "sender_domain_target": "Mailer.Example.NET.",
                "dkim_selector": "key2",
                "campaign_subdomain": "",
            },
            expected_version=1,
            actor="admin@ws",
        )
        assert result.version == 2
    with database.session() as session:
        settings = get_settings(session)
        assert settings.sender_domain_target == "mailer.example.net"
        assert settings.dkim_selector == "key2"
        assert settings.campaign_subdomain == ""  # explicit empty, not the default "sl"
        assert settings.version == 2
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.action, entry.entity) == ("admin@ws", "update", "dns_settings")
        assert json.loads(entry.details or "{}")["dkim_selector"] == ["key1", "key2"]
    with database.transaction() as session, pytest.raises(ConcurrentEditError):
        update_settings(session, {"dkim_selector": "key3"}, expected_version=1)


def test_unknown_key_is_refused_and_nothing_changes(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session, pytest.raises(ValidationError) as caught:
        update_settings(session, {"dkim_selector": "key9", "dkim_selektor": "x"})
    assert caught.value.field == "dkim_selektor"
    with sqlite_database.session() as session:
        assert get_settings(session).dkim_selector == "key1"


def test_unchanged_values_write_no_audit_entry(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        result = update_settings(session, {"dkim_selector": "key1"})
        assert result.version == 1
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_none_restores_the_reference_default_of_a_required_setting(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        update_settings(session, {"dmarc_policy": "v=DMARC1; p=reject;"})
        update_settings(session, {"dmarc_policy": None})
        assert get_settings(session).dmarc_policy == "v=DMARC1; p=none;"


def test_change_that_breaks_a_template_is_refused(sqlite_database: Database) -> None:
    # With no track prefix the Default template's tracking CNAME lands on the MFROM name.
    with sqlite_database.transaction() as session, pytest.raises(ValidationError) as caught:
        update_settings(session, {"campaign_track_prefix": ""})
    assert "campaign template 'Default' no longer renders" in str(caught.value)
    with sqlite_database.session() as session:
        assert get_settings(session).campaign_track_prefix == "track"


def test_second_console_saving_a_stale_row_gets_concurrent_edit(
    sqlite_database: Database,
) -> None:
    """A long-lived console session still holds version 1 when another console saves."""
    with sqlite_database.session() as console:
        with console.begin():
            # The form keeps the row object it showed; the identity map only holds it weakly.
            shown = console.get(DnsSettings, 1)
            assert shown is not None and shown.version == 1
        with sqlite_database.transaction() as other:
            update_settings(other, {"dkim_selector": "theirs"})
        with console.begin(), pytest.raises(ConcurrentEditError):
            update_settings(console, {"dkim_selector": "mine"})
    with sqlite_database.session() as session:
        assert get_settings(session).dkim_selector == "theirs"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("include:spf.example.com", "include:spf.example.com"),
        (
            "  INCLUDE:SPF.Example.com  ~ip4:192.0.2.0/24 ",
            "include:spf.example.com ~ip4:192.0.2.0/24",
        ),
        ("a mx:mx.example.com/24 ip6:2001:db8::/32", "a mx:mx.example.com/24 ip6:2001:db8::/32"),
        ("-exists:x.example.org ptr", "-exists:x.example.org ptr"),
    ],
)
def test_spf_accepts_mechanisms(value: str, expected: str) -> None:
    assert spf_include(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("v=spf1 include:spf.example.com", "without v=spf1"),
        ("include:spf.example.com ~all", "'all' belongs"),
        ("include:", "needs a domain"),
        ("redirect=spf.example.com", "modifier"),
        ("ip4:2001:db8::1", "IPv4"),
        ("spf.example.com", "not an SPF mechanism"),
        ("a/33", "too long"),
    ],
)
def test_spf_refuses_other_text(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spf_include(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("p=none", "must start with v=DMARC1"),
        ("v=DMARC1", "needs a policy tag"),
        ("v=DMARC1; p=maybe", "not one of"),
        ("v=DMARC1; rua", "name=value"),
        ("v=DMARC1;\np=none", "U\\+000A"),
    ],
)
def test_dmarc_refuses_invalid_records(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        dmarc_policy(value)


def test_dmarc_keeps_a_valid_record_as_entered() -> None:
    value = "v=DMARC1; p=quarantine; rua=mailto:d@example.com; pct=50"
    assert dmarc_policy(f"  {value} ") == value


def test_dkim_key_accepts_empty_base64_with_whitespace_pem_and_full_record() -> None:
    assert dkim_public_key("") == ""
    wrapped = "\n".join(KEY_B64[i : i + 20] for i in range(0, len(KEY_B64), 20))
    assert dkim_public_key(f"  {wrapped}\n") == KEY_B64
    pem = f"-----BEGIN PUBLIC KEY-----\n{wrapped}\n-----END PUBLIC KEY-----\n"
    assert dkim_public_key(pem) == KEY_B64
    assert dkim_public_key(f"v=DKIM1; k=rsa;\n p={wrapped}") == f"v=DKIM1; k=rsa; p={KEY_B64}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64 at all!", "not a Base64 public key"),
        ("QUJD", "not a Base64 public key"),  # decodes, but far too short for a key
        ("v=DKIM1; k=rsa", "p= tag"),
        (f"k=rsa; v=DKIM1; p={KEY_B64}", "must start with v=DKIM1"),
        (f"v=DKIM1; k=dsa; p={KEY_B64}", "rsa or ed25519"),
    ],
)
def test_dkim_key_refuses_invalid_text(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        dkim_public_key(value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sender_domain_target", "not a domain"),
        ("link_tracker_target", "192.0.2.1"),
        ("open_tracker_target", "localhost"),
        ("dkim_selector", "bad selector"),
        ("campaign_subdomain", "a..b"),
        ("campaign_track_merge", "+"),
        ("gateway_subdomain", 5),
    ],
)
def test_normalize_setting_refuses_bad_values(key: str, value: object) -> None:
    with pytest.raises(ValidationError):
        normalize_setting(key, value)
