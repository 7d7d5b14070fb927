"""Global DNS settings: the reference's ``config/global/dns.php`` values plus the
``.oempro_env`` subdomain / track-prefix / merge defaults.

The four naming settings (campaign subdomain, track prefix, track merge character and
gateway subdomain) are stored as NULL until an administrator sets them. While NULL, the
environment variable of the reference applies, and when that is unset, the built-in
default. Decisions about "unset" versus "empty":

* ``None`` given to :func:`update_settings` for one of those four keys stores NULL again,
  so the environment / default applies once more ("reset to default").
* ``""`` stores an explicit empty value: records are then rendered without that part
  (``track.example.com`` instead of ``track-sl.example.com``).
* An environment variable that is *set*, even to the empty string, is used as given,
  because that is the only way a deployment can ask for an empty subdomain; unset means
  the built-in default.
* ``None`` for any other (non-nullable) setting restores the reference's default value.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.models import DnsSettings
from app.services import audit, validation
from app.services.errors import ConcurrentEditError, ValidationError

SETTINGS_ID = 1  # the single row seeded by the initial migration
ENTITY = "dns_settings"

ENV_CAMPAIGN_SUBDOMAIN = "EMAILCAMPAIGN_DNS_SUBDOMAIN"
ENV_CAMPAIGN_TRACK_PREFIX = "EMAILCAMPAIGN_DNS_TRACK_PREFIX"
ENV_CAMPAIGN_TRACK_MERGE = "EMAILCAMPAIGN_DNS_TRACK_MERGE"
ENV_GATEWAY_SUBDOMAIN = "EMAILGATEWAY_DNS_SUBDOMAIN"

# Defaults from the reference ("Global Default Settings" and "DNS Configuration File").
DEFAULT_CAMPAIGN_SUBDOMAIN = "sl"
DEFAULT_CAMPAIGN_TRACK_PREFIX = "track"
DEFAULT_CAMPAIGN_TRACK_MERGE = "-"
DEFAULT_GATEWAY_SUBDOMAIN = "sl"
DEFAULT_VALUES: dict[str, str] = {
    "spf_include": "include:spf.yourdomain.com",
    "dkim_selector": "key1",
    "dkim_public_key": "",
    "dmarc_policy": "v=DMARC1; p=none;",
    "sender_domain_target": "primary-sender-domain.com",
    "link_tracker_target": "primary-sender-domain.com",
    "open_tracker_target": "primary-sender-domain.com",
}

# Nullable setting -> (environment variable, built-in default).
ENV_FALLBACKS: dict[str, tuple[str, str]] = {
    "campaign_subdomain": (ENV_CAMPAIGN_SUBDOMAIN, DEFAULT_CAMPAIGN_SUBDOMAIN),
    "campaign_track_prefix": (ENV_CAMPAIGN_TRACK_PREFIX, DEFAULT_CAMPAIGN_TRACK_PREFIX),
    "campaign_track_merge": (ENV_CAMPAIGN_TRACK_MERGE, DEFAULT_CAMPAIGN_TRACK_MERGE),
    "gateway_subdomain": (ENV_GATEWAY_SUBDOMAIN, DEFAULT_GATEWAY_SUBDOMAIN),
}

# What users see for each key, in the order forms and listings show them.
LABELS: dict[str, str] = {
    "spf_include": "SPF include",
    "dkim_selector": "DKIM selector",
    "dkim_public_key": "DKIM public key",
    "dmarc_policy": "DMARC policy",
    "sender_domain_target": "Sender domain CNAME target",
    "link_tracker_target": "Link tracker CNAME target",
    "open_tracker_target": "Open tracker CNAME target",
    "campaign_subdomain": "Campaign subdomain",
    "campaign_track_prefix": "Campaign track prefix",
    "campaign_track_merge": "Campaign track merge character",
    "gateway_subdomain": "Gateway subdomain",
}

_SPF_DOMAIN_MECHANISMS = ("include", "exists")
_SPF_OPTIONAL_DOMAIN = re.compile(r"^(a|mx)(?::([^/]+))?(?:/(\d{1,2}))?(?://(\d{1,3}))?$")
_DMARC_POLICIES = ("none", "quarantine", "reject")
_DKIM_TAG_FORM = re.compile(r"^\s*[A-Za-z]\s*=")
_MIN_DKIM_KEY_BYTES = 32  # an Ed25519 key; RSA keys are far longer
_MAX_DKIM_TEXT = 16_384


@dataclass(frozen=True)
class EffectiveDnsSettings:
    """The values rendering uses, with NULL columns already replaced by env / defaults."""

    spf_include: str
    dkim_selector: str
    dkim_public_key: str
    dmarc_policy: str
    sender_domain_target: str
    link_tracker_target: str
    open_tracker_target: str
    campaign_subdomain: str
    campaign_track_prefix: str
    campaign_track_merge: str
    gateway_subdomain: str
    version: int


# ---------------------------------------------------------------- validators


def _spf_term(term: str, field: str) -> str:
    qualifier = term[0] if term[0] in "+-~?" else ""
    body = term[len(qualifier) :]
    mechanism, sep, argument = body.partition(":")
    lowered = mechanism.lower()
    if lowered == "v=spf1":
        raise ValidationError(
            field,
            "enter only the mechanisms to include, e.g. include:spf.example.com, without v=spf1.",
        )
    if lowered == "all":
        raise ValidationError(
            field, "'all' belongs at the end of each domain's own SPF record, not in this value."
        )
    if "=" in mechanism:
        raise ValidationError(
            field,
            f"{term!r} is an SPF modifier; use mechanisms such as include:, a, mx, ip4: or ip6:.",
        )
    if lowered in _SPF_DOMAIN_MECHANISMS:
        if not sep or not argument:
            raise ValidationError(
                field, f"{lowered}: needs a domain, e.g. {lowered}:spf.example.com."
            )
        return f"{qualifier}{lowered}:{validation.domain(argument, field)}"
    if lowered in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(argument, strict=False)
        except ValueError:
            network = None
        if network is None or network.version != int(lowered[-1]):
            raise ValidationError(
                field, f"{term!r} needs an IPv{lowered[-1]} address or network after {lowered}:."
            )
        return f"{qualifier}{lowered}:{argument}"
    if lowered == "ptr":
        return f"{qualifier}ptr" + (f":{validation.domain(argument, field)}" if sep else "")
    match = _SPF_OPTIONAL_DOMAIN.match(body.lower())
    if match:
        name, host, cidr4, cidr6 = match.groups()
        if (cidr4 is not None and int(cidr4) > 32) or (cidr6 is not None and int(cidr6) > 128):
            raise ValidationError(field, f"{term!r} has a prefix length that is too long.")
        text = qualifier + name
        if host is not None:
            text += ":" + validation.domain(host, field)
        if cidr4 is not None:
            text += f"/{cidr4}"
        if cidr6 is not None:
            text += f"//{cidr6}"
        return text
    raise ValidationError(
        field,
        f"{term!r} is not an SPF mechanism; use e.g. include:spf.example.com, a, mx, "
        "ip4:192.0.2.0/24 or ip6:2001:db8::/32.",
    )


def spf_include(value: object, field: str = LABELS["spf_include"]) -> str:
    """One or more SPF mechanisms (``include:spf.example.com ip4:192.0.2.1``), normalised."""
    if not isinstance(value, str):
        raise ValidationError(field, "a value such as include:spf.example.com is required.")
    text = validation.no_control_chars(value, field).strip()
    if not text:
        raise ValidationError(field, "must not be empty; enter e.g. include:spf.example.com.")
    if len(text) > 500:
        raise ValidationError(field, "must be at most 500 characters.")
    return " ".join(_spf_term(term, field) for term in text.split())


def dmarc_policy(value: object, field: str = LABELS["dmarc_policy"]) -> str:
    """A DMARC record: ``v=DMARC1`` first and a ``p=`` policy tag; kept as entered."""
    if not isinstance(value, str):
        raise ValidationError(field, "a value such as v=DMARC1; p=none; is required.")
    text = validation.no_control_chars(value, field).strip()
    if len(text) > 500:
        raise ValidationError(field, "must be at most 500 characters.")
    tags = [tag.strip() for tag in text.split(";")]
    if tags[0].replace(" ", "") != "v=DMARC1":
        raise ValidationError(field, "must start with v=DMARC1, e.g. v=DMARC1; p=none;.")
    parsed: dict[str, str] = {}
    for tag in tags[1:]:
        if not tag:
            continue
        key, sep, tag_value = tag.partition("=")
        if not sep or not key.strip():
            raise ValidationError(field, f"tag {tag!r} is not written as name=value.")
        parsed[key.strip().lower()] = tag_value.strip()
    policy = parsed.get("p")
    if policy is None:
        raise ValidationError(field, "needs a policy tag: p=none, p=quarantine or p=reject.")
    if policy.lower() not in _DMARC_POLICIES:
        raise ValidationError(field, f"p={policy} is not one of p=none, p=quarantine, p=reject.")
    return text


def _base64_key(text: str, field: str) -> str:
    compact = "".join(text.split())
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) < _MIN_DKIM_KEY_BYTES:
        raise ValidationError(
            field,
            "is not a Base64 public key; paste the p= value of your DKIM record or the whole "
            "v=DKIM1; k=rsa; p=... text.",
        )
    return compact


def dkim_public_key(value: object, field: str = LABELS["dkim_public_key"]) -> str:
    """Empty, a Base64 key (line breaks and PEM armour tolerated) or a ``v=DKIM1; ...`` record.

    Returned normalised: whitespace removed from the key, tags joined with ``; ``.
    """
    if value is None:
        return ""
    text = validation.multiline_text(value, field, max_length=_MAX_DKIM_TEXT)
    # Keys pasted from ``openssl rsa -pubout`` come with PEM armour lines.
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("-----"))
    if not text.strip():
        return ""
    if not _DKIM_TAG_FORM.match(text):
        return _base64_key(text, field)
    tags: list[tuple[str, str]] = []
    for raw in text.split(";"):
        if not raw.strip():
            continue
        key, sep, tag_value = raw.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ValidationError(field, f"tag {raw.strip()!r} is not written as name=value.")
        tags.append((key, "".join(tag_value.split())))
    values = dict(tags)
    # RFC 6376 3.6.1: v= is optional, but when present it must come first and be DKIM1.
    if "v" in values and (tags[0][0] != "v" or values["v"] != "DKIM1"):
        raise ValidationError(field, "must start with v=DKIM1 when it has a v= tag.")
    if values.get("k", "rsa").lower() not in ("rsa", "ed25519"):
        raise ValidationError(field, f"k={values['k']} is not a DKIM key type; use rsa or ed25519.")
    if not values.get("p"):
        raise ValidationError(
            field, "needs the public key in a p= tag, e.g. v=DKIM1; k=rsa; p=MIIB..."
        )
    values["p"] = _base64_key(values["p"], field)
    return "; ".join(f"{key}={values[key]}" for key, _ in tags)


def _target(key: str) -> Callable[[object], str]:
    return lambda value: validation.domain(value, LABELS[key])


_VALIDATORS: dict[str, Callable[[object], str]] = {
    "spf_include": spf_include,
    "dkim_selector": lambda value: validation.dkim_selector(value, LABELS["dkim_selector"]),
    "dkim_public_key": dkim_public_key,
    "dmarc_policy": dmarc_policy,
    "sender_domain_target": _target("sender_domain_target"),
    "link_tracker_target": _target("link_tracker_target"),
    "open_tracker_target": _target("open_tracker_target"),
    "campaign_subdomain": lambda v: validation.dns_label(v, LABELS["campaign_subdomain"]),
    "campaign_track_prefix": lambda v: validation.dns_label(v, LABELS["campaign_track_prefix"]),
    "campaign_track_merge": lambda v: validation.track_merge(v, LABELS["campaign_track_merge"]),
    "gateway_subdomain": lambda v: validation.dns_label(v, LABELS["gateway_subdomain"]),
}


def normalize_setting(key: str, value: object) -> str | None:
    """Validate one setting as :func:`update_settings` would, e.g. while a form is edited.

    Returns what would be stored: ``None`` only for the four env-backed settings.
    """
    if key not in _VALIDATORS:
        raise ValidationError(key, f"is not a DNS setting; use one of: {', '.join(LABELS)}.")
    if value is None:
        return None if key in ENV_FALLBACKS else DEFAULT_VALUES[key]
    if key in ENV_FALLBACKS and not isinstance(value, str):
        # Keep the message consistent with the text validators.
        raise ValidationError(LABELS[key], f"expected text, got {type(value).__name__}.")
    return _VALIDATORS[key](value)


# ---------------------------------------------------------------- reading


def _env_value(key: str) -> str:
    variable, default = ENV_FALLBACKS[key]
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        return _VALIDATORS[key](raw)
    except ValidationError as exc:
        # A bad environment value must be fixed where it was set, so the error names it.
        raise ValidationError(f"Environment variable {variable}", exc.reason) from None


def _resolve(stored: Mapping[str, Any], version: int) -> EffectiveDnsSettings:
    values: dict[str, Any] = {}
    for key in LABELS:
        value = stored.get(key)
        if key in ENV_FALLBACKS:
            values[key] = _env_value(key) if value is None else value
        else:
            values[key] = DEFAULT_VALUES[key] if value is None else value
    return EffectiveDnsSettings(**values, version=version)


def _effective(row: DnsSettings | None) -> EffectiveDnsSettings:
    if row is None:
        return _resolve({}, 0)
    return _resolve(settings_as_dict(row), row.version)


def load_row(session: Session) -> DnsSettings | None:
    """The stored settings row (None only if the seed row was removed by hand)."""
    return session.get(DnsSettings, SETTINGS_ID)


def get_settings(session: Session) -> EffectiveDnsSettings:
    """The settings in force, env / defaults applied to unset values (version 0 if no row)."""
    return _effective(load_row(session))


def settings_as_dict(settings: EffectiveDnsSettings | DnsSettings) -> dict[str, Any]:
    """Effective settings as shown to users, or a stored row as exported (NULL = not set).

    ``version`` is included for effective settings so a form can send it back as
    ``expected_version``; an export of the stored row leaves it out.
    """
    if isinstance(settings, EffectiveDnsSettings):
        return asdict(settings)
    return {key: getattr(settings, key) for key in LABELS}


# ---------------------------------------------------------------- writing


def _check_templates_still_render(session: Session, settings: EffectiveDnsSettings) -> None:
    """Refuse a change after which a template could no longer render (e.g. an empty track
    prefix putting the tracking CNAME on the same name as the MFROM CNAME), so the error
    reaches the administrator now instead of a user creating a domain later."""
    # Imported here: dns_templates needs this module's settings type at import time.
    from app.services import dns_templates
    from app.services.dns_records import record_triples

    secret = dns_templates.installation_hash_secret(session)
    for template in dns_templates.list_templates(session):
        try:
            dns_templates.render_records(
                record_triples(template.records),
                domain=dns_templates.PREVIEW_DOMAIN,
                kind=template.kind,
                settings=settings,
                hash_secret=secret,
                random_token=dns_templates.random_label(),
            )
        except ValidationError as exc:
            raise ValidationError(
                "DNS settings",
                f"with these values the {template.kind.value} template {template.name!r} "
                f"no longer renders ({exc}); change the template first.",
            ) from None


def update_settings(
    session: Session,
    changes: Mapping[str, object],
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> EffectiveDnsSettings:
    """Validate and store ``changes`` (key -> value); see the module doc for None vs ""."""
    unknown = [key for key in changes if key not in _VALIDATORS]
    if unknown:
        raise ValidationError(unknown[0], f"is not a DNS setting; use one of: {', '.join(LABELS)}.")
    normalized = {key: normalize_setting(key, value) for key, value in changes.items()}

    row = load_row(session)
    if row is None:
        # The seed row was deleted by hand: recreate it rather than refuse every change.
        row = DnsSettings(id=SETTINGS_ID, **DEFAULT_VALUES)
        session.add(row)
        session.flush()
    if expected_version is not None and row.version != expected_version:
        raise ConcurrentEditError("DNS settings", "global")

    before = settings_as_dict(row)
    changed = audit.diff(before, {**before, **normalized})
    if changed:
        # Checked before the row is touched: the check queries, and autoflush would
        # otherwise write (and version) a half-validated row.
        _check_templates_still_render(session, _resolve({**before, **normalized}, row.version))
        for key, (_old, new) in changed.items():
            setattr(row, key, new)
        try:
            session.flush()
        except StaleDataError:
            raise ConcurrentEditError("DNS settings", "global") from None
        audit.record(session, "update", ENTITY, "global", changed, actor=actor)
    return _effective(row)
