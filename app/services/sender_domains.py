"""Sender domains: creation with the group's DNS template, listing, status and deletion.

Decisions:

* Domains are stored in ASCII (IDNA/punycode, lower case), so ``bücher.example`` and
  ``xn--bcher-kva.example`` are the same domain.
* The group's Sender Domains Limit counts all of a user's sender domains, campaign and
  gateway alike: the reference lists one limit for "sender domains a user can create".
* The records are rendered once, at creation, and stored: editing the template or the
  DNS settings later changes no existing domain (the reference: "existing domains
  retain their original DNS records").
* A domain whose template has no records is Enabled at once and keeps ``verified_at``
  empty, because nothing was verified.
* Permission refusals are ``ConflictError``: the input is valid, the group's settings
  forbid it, and the message names the setting to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.models import (
    DnsTemplate,
    DomainStatus,
    SenderDomain,
    SenderDomainRecord,
    TemplateKind,
    User,
    UserGroup,
)
from app.services import audit, coerce, validation
from app.services.dns_records import expected_text, is_spf, record_dicts, record_triples
from app.services.dns_settings import get_settings
from app.services.dns_templates import (
    DEFAULT_TEMPLATE_NAME,
    get_template,
    random_label,
    render_with_current_settings,
)
from app.services.errors import (
    ConcurrentEditError,
    ConflictError,
    LimitExceeded,
    NotFoundError,
)

T = TypeVar("T")  # the row type a Select yields

ENTITY = "sender_domain"


def _kind(kind: TemplateKind | str) -> TemplateKind:
    return validation.choice(kind, "Domain kind", TemplateKind)


def _user(session: Session, username: str, *, lock: bool = False) -> User:
    name = validation.username(username)
    query = select(User).where(coerce.name_matches(User, "username", name))
    if lock:
        # Serialises domain creation per user on PostgreSQL/MariaDB so two consoles can't
        # both pass the limit check; SQLite write transactions are serial already.
        query = query.with_for_update()
    user = session.scalars(query).one_or_none()
    if user is None:
        raise NotFoundError("user", name)
    return user


def _check_permission(group: UserGroup, kind: TemplateKind) -> None:
    if kind is TemplateKind.CAMPAIGN and not group.sender_domain_management:
        raise ConflictError(
            f"User group {group.name!r} does not allow sender domains; enable "
            '"Enable sender domain management" in the group\'s Preferences first.'
        )
    if kind is TemplateKind.GATEWAY and not group.perm_gateway_add_domain:
        raise ConflictError(
            f"User group {group.name!r} may not add Email Gateway domains; grant the "
            "EmailGateway.AddDomain permission in the group's Permissions first."
        )


def _template_for(session: Session, group: UserGroup, kind: TemplateKind) -> DnsTemplate | None:
    """The group's selected template, else the template named Default, else none."""
    selected = (
        group.campaign_dns_template if kind is TemplateKind.CAMPAIGN else group.gateway_dns_template
    )
    if selected is not None:
        if selected.kind is not kind:
            raise ConflictError(
                f"User group {group.name!r} selects the {selected.kind.value} template "
                f"{selected.name!r} for {kind.value} domains; pick a {kind.value} template."
            )
        return selected
    try:
        return get_template(session, kind, DEFAULT_TEMPLATE_NAME)
    except NotFoundError:
        return None


def create_sender_domain(
    session: Session,
    username: str,
    domain: str,
    *,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    actor: str | None = None,
) -> SenderDomain:
    """Register ``domain`` for ``username`` with the records its group's template renders."""
    domain_kind = _kind(kind)
    name = validation.domain(domain, "Sender domain")
    user = _user(session, username, lock=True)
    group = user.group
    _check_permission(group, domain_kind)

    owner = session.scalars(
        select(User.username)
        .join(SenderDomain, SenderDomain.user_id == User.id)
        .where(SenderDomain.kind == domain_kind, SenderDomain.domain == name)
    ).one_or_none()
    if owner is not None:
        raise ConflictError(
            f"The {domain_kind.value} sender domain {name} is already registered to user "
            f"{owner}; delete it there first or choose another domain."
        )

    limit = group.sender_domains_limit
    if limit:  # None or 0 = unlimited
        # A locking read sees rows committed by a concurrent creator on MariaDB too,
        # where a plain SELECT would read the transaction's older snapshot.
        owned = session.scalars(
            select(SenderDomain.id).where(SenderDomain.user_id == user.id).with_for_update()
        ).all()
        if len(owned) >= limit:
            raise LimitExceeded(
                "sender_domains",
                f"User {user.username} has reached the sender domains limit of {limit} of group "
                f"{group.name}; raise the limit or delete a domain.",
            )

    template = _template_for(session, group, domain_kind)
    token = random_label()
    template_records = record_triples(template.records) if template else []
    rendered = (
        render_with_current_settings(
            session, template_records, domain=name, kind=domain_kind, random_token=token
        )
        if template_records
        else []
    )
    sender_domain = SenderDomain(
        user=user,
        domain=name,
        kind=domain_kind,
        # The reference: an empty template needs no DNS verification.
        status=DomainStatus.APPROVAL_PENDING if rendered else DomainStatus.ENABLED,
        template_name=template.name if template else None,
        random_token=token,
        records=[
            SenderDomainRecord(position=position, host=r.host, type=r.type, value=r.value)
            for position, r in enumerate(rendered)
        ],
    )
    session.add(sender_domain)
    try:
        session.flush()
    except IntegrityError:
        # Another console registered the same domain between our check and this insert.
        raise ConflictError(
            f"The {domain_kind.value} sender domain {name} was just registered by someone "
            "else; reload the list and choose another domain."
        ) from None
    audit.record(session, "create", ENTITY, name, domain_as_dict(sender_domain), actor=actor)
    return sender_domain


def list_sender_domains(
    session: Session,
    *,
    username: str | None = None,
    status: DomainStatus | str | None = None,
    kind: TemplateKind | str | None = None,
) -> list[SenderDomain]:
    query = _filtered(session, select(SenderDomain), username=username, status=status, kind=kind)
    return list(session.scalars(query))


def _filtered(
    session: Session,
    query: Select[T],
    *,
    username: str | None,
    status: DomainStatus | str | None,
    kind: TemplateKind | str | None,
) -> Select[T]:
    """The list filters and order, shared by ``list_sender_domains`` and ``domain_rows``."""
    query = query.order_by(SenderDomain.domain, SenderDomain.kind)
    if username is not None:
        query = query.where(SenderDomain.user_id == _user(session, username).id)
    if status is not None:
        query = query.where(
            SenderDomain.status == validation.choice(status, "Status", DomainStatus)
        )
    if kind is not None:
        query = query.where(SenderDomain.kind == _kind(kind))
    return query


def count_sender_domains(session: Session, user_id: int) -> int:
    """How many sender domains (all kinds) count against the user's limit."""
    return (
        session.scalar(
            select(func.count()).select_from(SenderDomain).where(SenderDomain.user_id == user_id)
        )
        or 0
    )


def get_sender_domain(
    session: Session, domain: str, kind: TemplateKind | str = TemplateKind.CAMPAIGN
) -> SenderDomain:
    domain_kind = _kind(kind)
    name = validation.domain(domain, "Sender domain")
    sender_domain = session.scalars(
        select(SenderDomain).where(SenderDomain.kind == domain_kind, SenderDomain.domain == name)
    ).one_or_none()
    if sender_domain is None:
        raise NotFoundError(f"{domain_kind.value} sender domain", name)
    return sender_domain


def delete_sender_domain(
    session: Session,
    domain: str,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> None:
    sender_domain = get_sender_domain(session, domain, kind)
    _check_version(sender_domain, expected_version)
    details = domain_as_dict(sender_domain)
    session.delete(sender_domain)
    _flush(session, sender_domain)
    audit.record(session, "delete", ENTITY, sender_domain.domain, details, actor=actor)


def set_domain_status(
    session: Session,
    domain: str,
    kind: TemplateKind | str,
    status: DomainStatus | str,
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> SenderDomain:
    """Set the status by hand (an administrator's override; ``verified_at`` is untouched)."""
    new_status = validation.choice(status, "Status", DomainStatus)
    sender_domain = get_sender_domain(session, domain, kind)
    _check_version(sender_domain, expected_version)
    old_status = sender_domain.status
    if new_status is not old_status:
        sender_domain.status = new_status
        _flush(session, sender_domain)
        audit.record(
            session,
            "update",
            ENTITY,
            sender_domain.domain,
            {"kind": sender_domain.kind.value, "status": [old_status.value, new_status.value]},
            actor=actor,
        )
    return sender_domain


def _check_version(sender_domain: SenderDomain, expected_version: int | None) -> None:
    if expected_version is not None and sender_domain.version != expected_version:
        raise ConcurrentEditError(f"{sender_domain.kind.value} sender domain", sender_domain.domain)


def _flush(session: Session, sender_domain: SenderDomain) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise ConcurrentEditError(
            f"{sender_domain.kind.value} sender domain", sender_domain.domain
        ) from None


def domain_as_dict(sender_domain: SenderDomain) -> dict[str, Any]:
    """A sender domain as shown and exported; enums as their string values."""
    return {
        "domain": sender_domain.domain,
        "kind": sender_domain.kind.value,
        "status": sender_domain.status.value,
        "user": sender_domain.user.username,
        "template": sender_domain.template_name,
        "records": record_dicts(sender_domain.records),
        "created_at": _iso(sender_domain.created_at),
        "verified_at": _iso(sender_domain.verified_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------- rows for lists


def check_result(last_check_at: datetime | None, total: int, ok: int, failing: int) -> str:
    """The last check of a domain's records in a few words."""
    if last_check_at is None:
        return "Not checked" if total else "No records"
    if failing:
        return f"{failing} of {total} failing"
    if total and ok == total:
        return f"All {total} found"
    if not total:
        return "No records"
    return f"{total - ok} unanswered"


def check_outcome(last_check_at: datetime | None, total: int, ok: int, failing: int) -> str:
    """``untested``, ``failed``, ``ok`` or ``error`` (some records got no answer)."""
    if last_check_at is None or not total:
        return "untested"
    if failing:
        return "failed"
    return "ok" if ok == total else "error"


def domain_rows(
    session: Session,
    *,
    username: str | None = None,
    status: DomainStatus | str | None = None,
    kind: TemplateKind | str | None = None,
) -> list[dict[str, Any]]:
    """Every sender domain (filtered as ``list_sender_domains`` filters) with its check
    summary, in one query of plain columns: no ORM objects, no per-row loads, so 10,000
    domains take milliseconds. The rows of ``domains list`` and of the Sender Domains page.

    Keys: domain, kind, status, user, template, created_at, verified_at, last_check_at
    (ISO 8601 or None), record_count, records_ok, records_failing, check_result (words),
    outcome (see ``check_outcome``), version.
    """
    records = SenderDomainRecord.__table__
    counts = (
        select(
            records.c.sender_domain_id.label("domain_id"),
            func.count().label("total"),
            func.sum(case((records.c.last_ok == True, 1), else_=0)).label("ok"),  # noqa: E712
            func.sum(case((records.c.last_ok == False, 1), else_=0)).label("failing"),  # noqa: E712
        )
        .group_by(records.c.sender_domain_id)
        .subquery()
    )
    query = (
        select(
            SenderDomain.domain,
            SenderDomain.kind,
            SenderDomain.status,
            User.username,
            SenderDomain.template_name,
            SenderDomain.created_at,
            SenderDomain.verified_at,
            SenderDomain.last_check_at,
            SenderDomain.version,
            counts.c.total,
            counts.c.ok,
            counts.c.failing,
        )
        .join(User, SenderDomain.user_id == User.id)
        .outerjoin(counts, counts.c.domain_id == SenderDomain.id)
    )
    query = _filtered(session, query, username=username, status=status, kind=kind)
    rows: list[dict[str, Any]] = []
    for (
        domain,
        domain_kind,
        domain_status,
        user,
        template,
        created,
        verified,
        checked,
        version,
        total,
        ok,
        failing,
    ) in session.execute(query):
        # int(): MariaDB returns SUM() as Decimal.
        total, ok, failing = int(total or 0), int(ok or 0), int(failing or 0)
        rows.append(
            {
                "domain": domain,
                "kind": domain_kind.value,
                "status": domain_status.value,
                "user": user,
                "template": template,
                "created_at": _iso(created),
                "verified_at": _iso(verified),
                "last_check_at": _iso(checked),
                "record_count": total,
                "records_ok": ok,
                "records_failing": failing,
                "check_result": check_result(checked, total, ok, failing),
                "outcome": check_outcome(checked, total, ok, failing),
                "version": version,
            }
        )
    return rows


def owner_choices(session: Session) -> list[dict[str, Any]]:
    """Every user with what decides whether they may add a sender domain, in one query:
    ``username``, ``group``, ``management`` (campaign domains allowed), ``gateway``
    (EmailGateway.AddDomain), ``limit`` (None or 0: unlimited) and ``owned``."""
    owned = (
        select(SenderDomain.user_id, func.count().label("owned"))
        .group_by(SenderDomain.user_id)
        .subquery()
    )
    query = (
        select(
            User.username,
            UserGroup.name,
            UserGroup.sender_domain_management,
            UserGroup.perm_gateway_add_domain,
            UserGroup.sender_domains_limit,
            func.coalesce(owned.c.owned, 0),
        )
        .join(UserGroup, User.group_id == UserGroup.id)
        .outerjoin(owned, owned.c.user_id == User.id)
        .order_by(User.username)
    )
    return [
        {
            "username": username,
            "group": group,
            "management": bool(management),
            "gateway": bool(gateway),
            "limit": limit,
            "owned": int(count),
        }
        for username, group, management, gateway, limit, count in session.execute(query)
    ]


# The SPF check's problems (dns_auth_checks) that mean an SPF record is already there.
_SPF_EXISTS = frozenset({"no_include", "multiple", "too_many_lookups", "broken_include"})
SPF_PROBLEM_TITLES = {
    "missing": "Missing",
    "no_include": "Include missing",
    "multiple": "Several SPF records",
    "too_many_lookups": "Too many lookups",
    "broken_include": "Broken include",
    "lookup_failed": "No answer",
}


def spf_record(
    domain: str,
    records: Sequence[Mapping[str, str]],
    spf_include: str,
    report: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The SPF TXT record a domain must publish along with its template's records, or None
    when the template has its own SPF record or no SPF include is set.

    Receivers read one SPF record per name, so when the domain already has one the user
    merges the include into it; the verification's SPF check (dns_auth_checks) passes an
    existing record that includes ours. The outcome keys are those of ``spf_outcome``.
    """
    include = spf_include.strip()
    has_own = any(
        r["type"].strip().upper() == "TXT" and is_spf(expected_text("TXT", r["value"]))
        for r in records
    )
    if not include or has_own:
        return None
    host = domain
    return {
        "host": host,
        "type": "TXT",
        "value": f"v=spf1 {include} ~all",
        "include": include,
        **spf_outcome(host, include, report),
    }


def spf_outcome(host: str, include: str, report: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a check report says of the SPF record at ``host``: ``ok`` (True, False, or None
    when not checked), ``existing`` (an SPF record was found there; None: unknown),
    ``problem`` (the SPF check's code), ``note`` (how to publish it) and ``detail``."""
    warnings = [
        w
        for w in (report or {}).get("warnings") or []
        if isinstance(w, Mapping) and w.get("check") == "spf" and w.get("host") == host
    ]
    checked = report is not None and report.get("status") != "error"
    problems = [str(w.get("problem", "")) for w in warnings]
    if not checked or "lookup_failed" in problems:
        ok: bool | None = None
        existing: bool | None = None
    else:
        ok = not warnings
        existing = ok or any(p in _SPF_EXISTS for p in problems)
    if existing:
        note = (
            f"Merge into your existing SPF record: add {include} before its final all "
            "rather than publishing a second SPF record."
        )
    else:
        note = (
            "A name may have only one SPF record: if the domain already has one, merge "
            f"{include} into it (before its final all) instead of adding this record."
        )
    return {
        "ok": ok,
        "existing": existing,
        "problem": problems[0] if problems else None,
        "note": note,
        "detail": " ".join(str(w.get("detail", "")) for w in warnings),
    }


def domain_detail(session: Session, domain: str, kind: TemplateKind | str) -> dict[str, Any]:
    """``domain_as_dict`` plus ``version``, ``last_check_at``, ``record_ok`` (each record's
    last outcome: True, False or None), ``last_report`` (the stored check report, or
    None) and ``spf`` (``spf_record``: the SPF record to publish with the others, or None):
    what the domain's detail window shows."""
    sender_domain = get_sender_domain(session, domain, kind)
    data = domain_as_dict(sender_domain)
    data["version"] = sender_domain.version
    data["last_check_at"] = _iso(sender_domain.last_check_at)
    data["record_ok"] = [record.last_ok for record in sender_domain.records]
    report: Any = None
    if sender_domain.last_check_report:
        try:
            report = json.loads(sender_domain.last_check_report)
        except ValueError:  # written by something else: show no report rather than fail
            report = None
    data["last_report"] = report if isinstance(report, dict) else None
    data["spf"] = spf_record(
        sender_domain.domain,
        data["records"],
        get_settings(session).spf_include,
        data["last_report"],
    )
    return data
