"""DNS record templates: CRUD, and rendering a template's records for one sender domain.

Decisions:

* Template names follow the rule of every name (``models.base.name_key``): matched and
  kept unique by their NFKC case-folded key, the same on SQLite, PostgreSQL and MariaDB.
* The template named ``Default`` of each kind can be neither deleted nor renamed: it is
  the fallback of every user group that selects no template. Keeping it also means each
  kind always has at least one template. To have new domains enabled without DNS
  verification, empty its records instead (the reference's empty-template rule).
* Saving a template renders it for ``example.com`` with the current settings, so a
  record that can never render (e.g. the Base64 hash in a host name) is refused at once
  rather than when a user creates a domain.
* A CNAME must be the only record at its name (RFC 1034 3.6.2), so a CNAME host may not
  repeat, in the template or after rendering (an empty subdomain can merge two hosts).
* Editing a template changes no existing sender domain: domains keep the records
  rendered when they were created (see services.sender_domains).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from app.models import DnsTemplate, DnsTemplateRecord, Installation, TemplateKind, UserGroup
from app.models.base import name_key, utcnow
from app.models.database import is_unique_violation
from app.services import audit, validation
from app.services.dns_records import record_dicts, record_triples
from app.services.dns_settings import EffectiveDnsSettings, get_settings
from app.services.errors import ConcurrentEditError, ConflictError, NotFoundError, ValidationError

ENTITY = "dns_template"
DEFAULT_TEMPLATE_NAME = "Default"
MAX_RECORDS = 50
RANDOM_LABEL_LENGTH = 10
_RANDOM_ALPHABET = string.ascii_lowercase + string.digits
PREVIEW_DOMAIN = "example.com"

# Longest first, so _SenderDomainHash_ is not read as _SenderDomain_ followed by "Hash_".
_PLACEHOLDER_RE = re.compile(
    "|".join(re.escape(p) for p in sorted(validation.PLACEHOLDERS, key=len, reverse=True))
)
# Markers used while rendering, never present in valid template text (control characters
# are refused by validation.template_text):
_MERGE = "\x00"  # where _TrackMerge_ goes, kept only between two non-empty parts
_GONE = "\x01"  # an empty substitution: a label made only of these is dropped with its dot
_NAME_TYPES = ("CNAME",)  # record types whose value is a DNS name
_MX_VALUE = re.compile(r"^\s*(\d{1,5})\s+(\S+)\s*$")

RecordInput = tuple[str, str, str] | Mapping[str, object]


@dataclass(frozen=True)
class RenderedRecord:
    """One record as the user must publish it: no placeholders, host without trailing dot."""

    host: str
    type: str
    value: str


# ---------------------------------------------------------------- tokens


def sender_domain_hash(domain: str, hash_secret: str) -> str:
    """``_SenderDomainHash_``: HMAC-SHA256 of the ASCII domain, keyed by the installation secret.

    Keying with a per-installation secret means nobody can compute a domain's ownership
    token without the database, so publishing it proves the domain owner acted. The
    domain is normalised first (IDNA to punycode, lower case) so ``Bücher.Example`` and
    ``xn--bcher-kva.example`` get the same token.
    """
    ascii_domain = validation.domain(domain, "Sender domain")
    if not hash_secret:
        raise ValidationError("Hash secret", "must not be empty.")
    digest = hmac.new(
        hash_secret.encode("utf-8"), ascii_domain.encode("ascii"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def random_label() -> str:
    """``_SenderDomainRandom_``: 10 characters from [a-z0-9], from a CSPRNG."""
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(RANDOM_LABEL_LENGTH))


def installation_hash_secret(session: Session) -> str:
    """The secret keying ``_SenderDomainHash_``, created with the database."""
    secret = session.scalars(select(Installation.hash_secret).order_by(Installation.id)).first()
    if not secret:
        raise ConflictError(
            "This database has no installation secret to derive domain hashes from; "
            "open it once with Postroom so its schema is upgraded and seeded."
        )
    return secret


# ---------------------------------------------------------------- rendering


def _joins(neighbour: str) -> bool:
    """Whether a merge character next to ``neighbour`` sits between two real parts."""
    return bool(neighbour) and neighbour not in (".", _MERGE) and not neighbour.isspace()


def _substitute(text: str, values: Mapping[str, str], merge: str) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token == "_TrackMerge_":
            return _MERGE if merge else _GONE
        return values[token] or _GONE

    marked = _PLACEHOLDER_RE.sub(replace, text)
    # The merge character joins prefix and subdomain only when both are present:
    # "track" + "-" + "" would leave "track-.example.com".
    chars = list(marked)
    for index, char in enumerate(chars):
        if char != _MERGE:
            continue
        before = next((c for c in reversed(chars[:index]) if c != _GONE), "")
        after = next((c for c in chars[index + 1 :] if c != _GONE), "")
        chars[index] = merge if _joins(before) and _joins(after) else _GONE
    return "".join(chars)


def _clean_name(marked: str) -> str:
    """Drop labels emptied by empty substitutions; literal empty labels stay (and fail)."""
    labels = [
        label.replace(_GONE, "")
        for label in marked.split(".")
        if not (_GONE in label and not label.replace(_GONE, ""))
    ]
    return ".".join(labels)


def _render_value(raw: str, rtype: str, field: str, values: Mapping[str, str], merge: str) -> str:
    if rtype in _NAME_TYPES:
        return validation.record_host(_clean_name(_substitute(raw, values, merge)), field)
    if rtype == "MX":
        match = _MX_VALUE.match(raw)
        if not match or int(match.group(1)) > 65535:
            raise ValidationError(field, "an MX value is 'priority host', e.g. 10 mx.example.com.")
        host = validation.record_host(
            _clean_name(_substitute(match.group(2), values, merge)), field
        )
        return f"{int(match.group(1))} {host}"
    text = _substitute(raw, values, merge).replace(_GONE, "").strip()
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        wanted = 4 if rtype == "A" else 6
        if address is None or address.version != wanted:
            raise ValidationError(field, f"{text!r} is not an IPv{wanted} address.")
        return str(address)
    if not text:
        raise ValidationError(field, "renders empty; give the record a value that is not empty.")
    return text  # TXT keeps its case: tokens and hashes are case-sensitive


def _placeholder_values(
    domain: str, gateway: bool, settings: EffectiveDnsSettings, hash_secret: str, token: str
) -> dict[str, str]:
    return {
        "_SenderDomain_": domain,
        "_SenderDomainHash_": sender_domain_hash(domain, hash_secret),
        "_SenderDomainRandom_": token,
        "_Subdomain_": settings.gateway_subdomain if gateway else settings.campaign_subdomain,
        "_TrackPrefix_": settings.campaign_track_prefix,
        "_TrackMerge_": settings.campaign_track_merge,
        "_SenderTarget_": settings.sender_domain_target,
        "_LinkTracker_": settings.link_tracker_target,
        "_OpenTracker_": settings.open_tracker_target,
        "_DkimSelector_": settings.dkim_selector,
    }


def render_records(
    records: Sequence[tuple[str, str, str]],
    *,
    domain: str,
    kind: TemplateKind | str,
    settings: EffectiveDnsSettings,
    hash_secret: str,
    random_token: str,
) -> list[RenderedRecord]:
    """Replace every placeholder in each ``(host, type, value)`` for ``domain``.

    Gateway templates use the gateway subdomain and refuse the tracking placeholders.
    An empty subdomain, prefix or merge character disappears with the dot or merge
    character next to it, so ``_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_``
    becomes ``track.example.com`` when the subdomain is empty.
    """
    template_kind = validation.choice(kind, "Template kind", TemplateKind)
    gateway = template_kind is TemplateKind.GATEWAY
    ascii_domain = validation.domain(domain, "Sender domain")
    values = _placeholder_values(ascii_domain, gateway, settings, hash_secret, random_token)
    merge = settings.campaign_track_merge
    rendered: list[RenderedRecord] = []
    for number, (host, rtype, value) in enumerate(records, start=1):
        host_field, value_field = f"Record {number} host", f"Record {number} value"
        host_text = validation.template_text(host, host_field, gateway=gateway)
        value_text = validation.template_text(value, value_field, gateway=gateway)
        record_type = validation.record_type(rtype, f"Record {number} type")
        rendered.append(
            RenderedRecord(
                host=validation.record_host(
                    _clean_name(_substitute(host_text, values, merge)), host_field
                ),
                type=record_type,
                value=_render_value(value_text, record_type, value_field, values, merge),
            )
        )
    _check_rendered_conflicts(rendered)
    return rendered


def _check_rendered_conflicts(rendered: Sequence[RenderedRecord]) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for number, record in enumerate(rendered, start=1):
        key = (record.host, record.type, record.value)
        if key in seen:
            raise ValidationError(
                f"Record {number}",
                f"renders the same as record {seen[key]} ({record.host} {record.type}); "
                "remove one of them.",
            )
        seen[key] = number
    for number, record in enumerate(rendered, start=1):
        if record.type != "CNAME":
            continue
        for other_number, other in enumerate(rendered, start=1):
            if other_number != number and other.host == record.host:
                raise ValidationError(
                    f"Record {number}",
                    f"is a CNAME at {record.host}, where record {other_number} also renders; "
                    "a CNAME must be the only record at its name, so change one host.",
                )


# ---------------------------------------------------------------- record input


def _record_parts(item: object, number: int) -> tuple[object, object, object]:
    if isinstance(item, Mapping):
        extra = sorted(str(key) for key in item if key not in ("host", "type", "value"))
        if extra:
            raise ValidationError(
                f"Record {number}", f"unknown field {extra[0]!r}; use host, type and value."
            )
        return item.get("host"), item.get("type"), item.get("value")
    if isinstance(item, tuple | list) and len(item) == 3:
        return item[0], item[1], item[2]
    raise ValidationError(
        f"Record {number}", "must be (host, type, value) or a mapping with host, type and value."
    )


def normalize_records(
    records: Sequence[RecordInput],
    *,
    kind: TemplateKind | str,
) -> list[tuple[str, str, str]]:
    """Validate template records (placeholders stay) and return them as triples."""
    gateway = validation.choice(kind, "Template kind", TemplateKind) is TemplateKind.GATEWAY
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise ValidationError("Records", "must be a list of (host, type, value) records.")
    if len(records) > MAX_RECORDS:
        raise ValidationError("Records", f"a template may have at most {MAX_RECORDS} records.")
    triples: list[tuple[str, str, str]] = []
    cname_hosts: dict[str, int] = {}
    other_hosts: dict[str, int] = {}
    for number, item in enumerate(records, start=1):
        host, rtype, value = _record_parts(item, number)
        host_text = validation.template_text(host, f"Record {number} host", gateway=gateway)
        record_type = validation.record_type(rtype, f"Record {number} type")
        value_text = validation.template_text(value, f"Record {number} value", gateway=gateway)
        # Case-folded, trailing dot ignored: DNS names compare that way.
        host_key = host_text.rstrip(".").lower()
        clash = cname_hosts.get(host_key) or (
            other_hosts.get(host_key) if record_type == "CNAME" else None
        )
        if clash:
            raise ValidationError(
                f"Record {number} host",
                f"{host_text} is also the host of record {clash} and one of them is a CNAME; "
                "a CNAME must be the only record at its name.",
            )
        (cname_hosts if record_type == "CNAME" else other_hosts).setdefault(host_key, number)
        triples.append((host_text, record_type, value_text))
    return triples


# ---------------------------------------------------------------- CRUD


def _kind(kind: TemplateKind | str) -> TemplateKind:
    return validation.choice(kind, "Template kind", TemplateKind)


def list_templates(session: Session, kind: TemplateKind | str | None = None) -> list[DnsTemplate]:
    query = select(DnsTemplate).order_by(DnsTemplate.kind, DnsTemplate.name)
    if kind is not None:
        query = query.where(DnsTemplate.kind == _kind(kind))
    return list(session.scalars(query))


def find_template(session: Session, kind: TemplateKind, name: str) -> DnsTemplate | None:
    """The ``kind`` template named ``name`` as names compare, or None."""
    # By the stored key, so case and Unicode rules are identical on every backend
    # (SQLite's lower() only folds ASCII; MariaDB's collation folds accents too).
    return session.scalars(
        select(DnsTemplate).where(DnsTemplate.kind == kind, DnsTemplate.name_key == name_key(name))
    ).one_or_none()


def get_template(session: Session, kind: TemplateKind | str, name: str) -> DnsTemplate:
    template_kind = _kind(kind)
    template_name = validation.name(name, "Template name")
    template = find_template(session, template_kind, template_name)
    if template is None:
        raise NotFoundError(f"{template_kind.value} DNS template", template_name)
    return template


def _is_default(name: str) -> bool:
    return name.casefold() == DEFAULT_TEMPLATE_NAME.casefold()


def _description(value: object) -> str | None:
    if value is None:
        return None
    text = validation.multiline_text(value, "Description", max_length=2000).strip()
    return text or None


def render_with_current_settings(
    session: Session,
    records: Sequence[tuple[str, str, str]],
    *,
    domain: str,
    kind: TemplateKind | str,
    random_token: str,
) -> list[RenderedRecord]:
    """``render_records`` with this database's DNS settings and installation secret: the
    records a domain created now would get."""
    return render_records(
        records,
        domain=domain,
        kind=kind,
        settings=get_settings(session),
        hash_secret=installation_hash_secret(session),
        random_token=random_token,
    )


def _check_renders(
    session: Session, kind: TemplateKind, records: Sequence[tuple[str, str, str]]
) -> None:
    render_with_current_settings(
        session, records, domain=PREVIEW_DOMAIN, kind=kind, random_token=random_label()
    )


def _rows(records: Sequence[tuple[str, str, str]]) -> list[DnsTemplateRecord]:
    return [
        DnsTemplateRecord(position=position, host=host, type=rtype, value=value)
        for position, (host, rtype, value) in enumerate(records)
    ]


def _flush(session: Session, kind: TemplateKind, name: str) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise ConcurrentEditError(f"{kind.value} DNS template", name) from None
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise ConflictError(
                f"The {kind.value} DNS template {name!r} could not be saved because someone "
                "else changed related data at the same time; reload and apply your change again."
            ) from None
        raise ConflictError(
            f"A {kind.value} DNS template named {name!r} already exists; "
            "choose another name or edit that template."
        ) from None


def create_template(
    session: Session,
    *,
    name: str,
    kind: TemplateKind | str,
    records: Sequence[tuple[str, str, str]] | Sequence[Mapping[str, Any]],
    description: str | None = None,
    actor: str | None = None,
) -> DnsTemplate:
    template_kind = _kind(kind)
    template_name = validation.name(name, "Template name")
    triples = normalize_records(records, kind=template_kind)
    text = _description(description)
    existing = find_template(session, template_kind, template_name)
    if existing is not None:
        raise ConflictError(
            f"A {template_kind.value} DNS template named {existing.name!r} already exists; "
            "choose another name or edit that template."
        )
    _check_renders(session, template_kind, triples)
    template = DnsTemplate(
        name=template_name, kind=template_kind, description=text, records=_rows(triples)
    )
    session.add(template)
    _flush(session, template_kind, template_name)
    audit.record(
        session,
        "create",
        ENTITY,
        f"{template_kind.value}:{template_name}",
        template_as_dict(template),
        actor=actor,
    )
    return template


def update_template(
    session: Session,
    kind: TemplateKind | str,
    name: str,
    *,
    new_name: str | None = None,
    records: Sequence[tuple[str, str, str]] | Sequence[Mapping[str, Any]] | None = None,
    description: str | None = None,
    expected_version: int | None = None,
    actor: str | None = None,
) -> DnsTemplate:
    """Change a template; ``None`` leaves a part unchanged, ``records=[]`` empties it and
    ``description=""`` clears the description. Existing sender domains keep their records."""
    template = get_template(session, kind, name)
    template_kind = template.kind
    if expected_version is not None and template.version != expected_version:
        raise ConcurrentEditError(f"{template_kind.value} DNS template", template.name)
    before = template_as_dict(template)

    # Everything is validated before the template is touched: the checks query the
    # database, and autoflush would otherwise write a half-changed template.
    renamed = template.name
    if new_name is not None:
        renamed = validation.name(new_name, "Template name")
        if renamed != template.name:
            if _is_default(template.name):
                raise ConflictError(
                    f"The {template_kind.value} template {template.name!r} cannot be renamed: "
                    "it is used by every user group that selects no template."
                )
            clash = find_template(session, template_kind, renamed)
            if clash is not None and clash is not template:
                raise ConflictError(
                    f"A {template_kind.value} DNS template named {clash.name!r} already "
                    "exists; choose another name."
                )
    new_records: list[tuple[str, str, str]] | None = None
    if records is not None:
        triples = normalize_records(records, kind=template_kind)
        if triples != record_triples(template.records):
            _check_renders(session, template_kind, triples)
            new_records = triples
    text = _description(description) if description is not None else template.description

    if renamed != template.name:
        template.name = renamed
    if new_records is not None:
        template.records = _rows(new_records)
    if text != template.description:
        template.description = text
    changed = audit.diff(before, template_as_dict(template))
    if changed:
        # Replacing only child rows leaves the template row clean, so its version would
        # not move and a second editor could not notice; touching it bumps the version.
        template.updated_at = utcnow()
        _flush(session, template_kind, template.name)
        audit.record(
            session,
            "update",
            ENTITY,
            f"{template_kind.value}:{before['name']}",
            changed,
            actor=actor,
        )
    return template


def groups_using(session: Session, template: DnsTemplate) -> list[str]:
    """Names of the user groups that selected ``template`` for new sender domains."""
    query = (
        select(UserGroup.name)
        .where(
            or_(
                UserGroup.campaign_dns_template_id == template.id,
                UserGroup.gateway_dns_template_id == template.id,
            )
        )
        .order_by(UserGroup.name)
    )
    return list(session.scalars(query))


def delete_template(
    session: Session,
    kind: TemplateKind | str,
    name: str,
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> None:
    template = get_template(session, kind, name)
    template_kind = template.kind
    if expected_version is not None and template.version != expected_version:
        raise ConcurrentEditError(f"{template_kind.value} DNS template", template.name)
    if _is_default(template.name):
        raise ConflictError(
            f"The {template_kind.value} template {template.name!r} cannot be deleted: it is "
            "used by every user group that selects no template; edit its records instead."
        )
    users = groups_using(session, template)
    if users:
        raise ConflictError(
            f"The {template_kind.value} template {template.name!r} is used by user group(s) "
            f"{', '.join(users)}; choose another template for them first."
        )
    details = template_as_dict(template)
    session.delete(template)
    _flush(session, template_kind, template.name)
    audit.record(
        session, "delete", ENTITY, f"{template_kind.value}:{template.name}", details, actor=actor
    )


def preview(
    session: Session,
    kind: TemplateKind | str,
    name: str,
    sample_domain: str = PREVIEW_DOMAIN,
) -> list[RenderedRecord]:
    """The records a new domain ``sample_domain`` would get now; nothing is stored."""
    template = get_template(session, kind, name)
    return render_with_current_settings(
        session,
        record_triples(template.records),
        domain=sample_domain,
        kind=template.kind,
        random_token=random_label(),
    )


def template_as_dict(template: DnsTemplate) -> dict[str, Any]:
    """A template as shown and exported; placeholders are kept."""
    return {
        "name": template.name,
        "kind": template.kind.value,
        "description": template.description,
        "records": record_dicts(template.records),
    }


# ---------------------------------------------------------------- reads for the console


def template_detail(session: Session, kind: TemplateKind | str, name: str) -> dict[str, Any]:
    """``template_as_dict`` plus ``version`` and ``used_by``: what the editor opens with."""
    template = get_template(session, kind, name)
    return {
        **template_as_dict(template),
        "version": template.version,
        "used_by": groups_using(session, template),
    }


def template_rows(session: Session, kind: TemplateKind | str | None = None) -> list[dict[str, Any]]:
    """Every template (of ``kind``) as ``template_as_dict`` plus ``record_count``,
    ``record_types`` (sorted, distinct), ``used_by`` (group names) and ``version``, in two
    queries: the rows of ``templates list`` and of the console's DNS Templates page."""
    used: dict[int, list[str]] = {}
    for name, campaign_id, gateway_id in session.execute(
        select(
            UserGroup.name, UserGroup.campaign_dns_template_id, UserGroup.gateway_dns_template_id
        ).order_by(UserGroup.name)
    ):
        for template_id in {campaign_id, gateway_id}:
            if template_id is not None:
                used.setdefault(template_id, []).append(name)
    query = (
        select(DnsTemplate)
        .options(selectinload(DnsTemplate.records))
        .order_by(DnsTemplate.kind, DnsTemplate.name)
    )
    if kind is not None:
        query = query.where(DnsTemplate.kind == _kind(kind))
    return [
        {
            **template_as_dict(template),
            "record_count": len(template.records),
            "record_types": sorted({record.type for record in template.records}),
            "used_by": used.get(template.id, []),
            "version": template.version,
        }
        for template in session.scalars(query)
    ]
