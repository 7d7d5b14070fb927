"""Configuration export and import as YAML.

Export writes every setting an administrator made, never a secret: SMTP passwords, the
vault key and connection passwords stay where they are.

Import is an upsert by name: sections and entries absent from the file are left alone,
nothing is deleted. Planning an import runs the very same service calls inside a
transaction that is rolled back, so the diff shown is exactly what applying will do, and
any refusal surfaces before anything is written. Applying runs them in one transaction:
a failure anywhere changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import __version__
from app.models import (
    DeliveryServer,
    DnsTemplate,
    DomainStatus,
    SenderDomain,
    SenderDomainRecord,
    TemplateKind,
    User,
    UserGroup,
)
from app.services import audit, validation
from app.services import dns_settings as dns_settings_service
from app.services import dns_templates as templates_service
from app.services import groups as groups_service
from app.services import sender_domains as domains_service
from app.services import servers as servers_service
from app.services import users as users_service
from app.services.errors import ValidationError

FORMAT_VERSION = 1
SECTIONS = (
    "dns_settings",
    "dns_templates",
    "delivery_servers",
    "user_groups",
    "users",
    "sender_domains",
)
# Read-only or secret fields that export shows for people but import must not set.
_SERVER_SKIP = {"has_password", "last_test_status", "last_test_at", "version"}
_GROUP_SKIP = {"version"}
_USER_SKIP = {"version"}
_SETTINGS_SKIP = {"version"}


# ---------------------------------------------------------------- export


def export_document(session: Session) -> dict[str, Any]:
    settings = dns_settings_service.settings_as_dict(dns_settings_service.get_settings(session))
    return {
        "postroom_config": FORMAT_VERSION,
        "exported_by": f"postroom {__version__}",
        "dns_settings": _without(settings, _SETTINGS_SKIP),
        "dns_templates": [
            {
                "name": t["name"],
                "kind": t["kind"],
                "description": t.get("description"),
                "records": [
                    {"host": r["host"], "type": r["type"], "value": r["value"]}
                    for r in t["records"]
                ],
            }
            for t in (
                templates_service.template_as_dict(t)
                for t in templates_service.list_templates(session)
            )
        ],
        "delivery_servers": [
            _without(servers_service.server_as_dict(s), _SERVER_SKIP)
            for s in servers_service.list_servers(session)
        ],
        "user_groups": [
            _without(groups_service.group_as_dict(g), _GROUP_SKIP)
            for g in groups_service.list_groups(session)
        ],
        "users": [
            _without(users_service.user_as_dict(u), _USER_SKIP)
            for u in users_service.list_users(session)
        ],
        "sender_domains": [
            {
                "domain": d.domain,
                "kind": d.kind.value,
                "user": d.user.username,
                "status": d.status.value,
                "template": d.template_name,
                "random_token": d.random_token,
                "records": [{"host": r.host, "type": r.type, "value": r.value} for r in d.records],
            }
            for d in session.scalars(
                select(SenderDomain).order_by(SenderDomain.kind, SenderDomain.domain)
            )
        ],
    }


def export_yaml(session: Session) -> str:
    header = "# Postroom configuration. Secrets (SMTP passwords, vault key) are never exported.\n"
    body: str = yaml.safe_dump(
        export_document(session), sort_keys=False, allow_unicode=True, width=100
    )
    return header + body


def _without(data: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in skip}


# ---------------------------------------------------------------- parsing


def parse_config(text: str) -> dict[str, Any]:
    """Parse and shape-check a configuration file; errors name the section and entry."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(
            "Import file", f"is not valid YAML{where}; fix the syntax and try again."
        ) from None
    if not isinstance(document, dict):
        raise ValidationError("Import file", "must be a mapping with sections like user_groups.")
    version = document.get("postroom_config")
    if version != FORMAT_VERSION:
        raise ValidationError(
            "postroom_config",
            f"must be {FORMAT_VERSION}; this file is not a Postroom configuration export.",
        )
    unknown = sorted(set(document) - set(SECTIONS) - {"postroom_config", "exported_by"})
    if unknown:
        raise ValidationError(
            unknown[0], f"is not a configuration section; known: {', '.join(SECTIONS)}."
        )
    if "dns_settings" in document and not isinstance(document["dns_settings"], dict):
        raise ValidationError("dns_settings", "must be a mapping of setting: value.")
    for section in SECTIONS[1:]:
        entries = document.get(section, [])
        if entries is None:
            document[section] = []
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValidationError(section, "must be a list of mappings.")
    return document


# ---------------------------------------------------------------- plan and apply


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    action: str  # create or update
    fields: dict[str, Any] = field(default_factory=dict)  # {field: [old, new]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "key": self.key,
            "action": self.action,
            "fields": self.fields,
        }


@dataclass
class ImportResult:
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"changes": [c.as_dict() for c in self.changes]}

    def describe(self) -> str:
        if not self.changes:
            return "No changes: the database already matches the file."
        lines = []
        for change in self.changes:
            sign = "+" if change.action == "create" else "~"
            lines.append(f"{sign} {change.section} {change.key!r}")
            for name, (old, new) in change.fields.items():
                lines.append(f"    {name}: {old!r} -> {new!r}")
        return "\n".join(lines)


def _entry_key(section: str, entry: Mapping[str, Any], index: int, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{section}[{index}].{key}", "is required and must be text.")
    return value.strip()


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def _in_section(section: str, index: int, run: Callable[[], object]) -> None:
    """Prefix refusals with where in the file they come from."""
    try:
        run()
    except ValidationError as exc:
        raise ValidationError(f"{section}[{index}] {exc.field}", exc.reason) from None


def apply_import(
    session: Session, document: Mapping[str, Any], *, actor: str | None = None
) -> ImportResult:
    """Upsert everything in ``document`` inside the caller's transaction."""
    result = ImportResult()
    _import_settings(session, document.get("dns_settings"), result, actor)
    _import_templates(session, document.get("dns_templates") or [], result, actor)
    _import_servers(session, document.get("delivery_servers") or [], result, actor)
    _import_groups(session, document.get("user_groups") or [], result, actor)
    _import_users(session, document.get("users") or [], result, actor)
    _import_domains(session, document.get("sender_domains") or [], result, actor)
    if result.changes:
        audit.record(
            session,
            "import",
            "configuration",
            "import",
            {"changes": len(result.changes)},
            actor=actor,
        )
    session.flush()
    return result


def plan_import(session: Session, document: Mapping[str, Any]) -> ImportResult:
    """What ``apply_import`` would change, computed by doing it and rolling back."""
    with session.begin_nested() if session.in_transaction() else session.begin() as txn:
        result = apply_import(session, document)
        txn.rollback()
    session.expire_all()
    return result


def _import_settings(
    session: Session, wanted: Mapping[str, Any] | None, result: ImportResult, actor: str | None
) -> None:
    if not wanted:
        return
    current = dns_settings_service.settings_as_dict(dns_settings_service.get_settings(session))
    changes = _differences(current, _without(wanted, _SETTINGS_SKIP))
    if changes:
        dns_settings_service.update_settings(session, changes, actor=actor)
        result.changes.append(
            Change(
                "dns_settings",
                "dns_settings",
                "update",
                {k: [current.get(k), v] for k, v in changes.items()},
            )
        )


def _records_of(entry: Mapping[str, Any], where: str) -> list[tuple[str, str, str]]:
    records = entry.get("records") or []
    if not isinstance(records, list):
        raise ValidationError(f"{where}.records", "must be a list of {host, type, value}.")
    triples = []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not {"host", "type", "value"} <= set(record):
            raise ValidationError(f"{where}.records[{i}]", "needs host, type and value.")
        triples.append((str(record["host"]), str(record["type"]), str(record["value"])))
    return triples


def _import_templates(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    for index, entry in enumerate(entries):
        where = f"dns_templates[{index}]"
        name = _entry_key("dns_templates", entry, index, "name")
        kind = validation.choice(entry.get("kind", "campaign"), f"{where}.kind", TemplateKind)
        records = _records_of(entry, where)
        description = entry.get("description")
        existing = session.scalars(
            select(DnsTemplate).where(DnsTemplate.kind == kind, DnsTemplate.name == name)
        ).one_or_none()
        key = f"{kind.value}/{name}"
        if existing is None:
            _in_section(
                "dns_templates",
                index,
                partial(
                    templates_service.create_template,
                    session,
                    name=name,
                    kind=kind.value,
                    records=records,
                    description=description,
                    actor=actor,
                ),
            )
            result.changes.append(
                Change("dns_templates", key, "create", {"records": [0, len(records)]})
            )
            continue
        current = [(r.host, r.type, r.value) for r in existing.records]
        diff: dict[str, Any] = {}
        if current != records:
            diff["records"] = [current, records]
        if description is not None and description != existing.description:
            diff["description"] = [existing.description, description]
        if diff:
            _in_section(
                "dns_templates",
                index,
                partial(
                    templates_service.update_template,
                    session,
                    kind.value,
                    name,
                    records=records if "records" in diff else None,
                    description=description if "description" in diff else None,
                    actor=actor,
                ),
            )
            result.changes.append(Change("dns_templates", key, "update", diff))


def _upsert(
    session: Session,
    section: str,
    entries: Sequence[Mapping[str, Any]],
    result: ImportResult,
    *,
    key_field: str,
    model: type[Any],
    column: str,
    as_dict: Callable[[Any], dict[str, Any]],
    skip: set[str],
    create: Callable[[dict[str, Any]], Any],
    update: Callable[[str, dict[str, Any]], Any],
) -> None:
    for index, entry in enumerate(entries):
        key = _entry_key(section, entry, index, key_field)
        wanted = _without(entry, skip)
        existing = session.scalars(select(model).where(getattr(model, column) == key)).one_or_none()
        if existing is None:
            _in_section(section, index, partial(create, wanted))
            result.changes.append(Change(section, key, "create", {}))
            continue
        current = as_dict(existing)
        changes = _differences(current, wanted)
        if changes:
            _in_section(section, index, partial(update, key, changes))
            result.changes.append(
                Change(section, key, "update", {k: [current.get(k), v] for k, v in changes.items()})
            )


def _import_servers(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    _upsert(
        session,
        "delivery_servers",
        entries,
        result,
        key_field="name",
        model=DeliveryServer,
        column="name",
        as_dict=servers_service.server_as_dict,
        skip=_SERVER_SKIP | {"password"},
        create=lambda values: servers_service.create_server(session, values, actor=actor),
        update=lambda key, changes: servers_service.update_server(
            session, key, changes, actor=actor
        ),
    )


def _import_groups(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    _upsert(
        session,
        "user_groups",
        entries,
        result,
        key_field="name",
        model=UserGroup,
        column="name",
        as_dict=groups_service.group_as_dict,
        skip=_GROUP_SKIP,
        create=lambda values: groups_service.create_group(session, values, actor=actor),
        update=lambda key, changes: groups_service.update_group(session, key, changes, actor=actor),
    )


def _import_users(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    _upsert(
        session,
        "users",
        entries,
        result,
        key_field="username",
        model=User,
        column="username",
        as_dict=users_service.user_as_dict,
        skip=_USER_SKIP,
        create=lambda values: users_service.create_user(session, values, actor=actor),
        update=lambda key, changes: users_service.update_user(session, key, changes, actor=actor),
    )


def _import_domains(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    """Domains keep the record snapshot from the file: they are not re-rendered."""
    for index, entry in enumerate(entries):
        where = f"sender_domains[{index}]"
        name = validation.domain(
            _entry_key("sender_domains", entry, index, "domain"), f"{where}.domain"
        )
        kind = validation.choice(entry.get("kind", "campaign"), f"{where}.kind", TemplateKind)
        status = validation.choice(
            entry.get("status", "approval_pending"), f"{where}.status", DomainStatus
        )
        existing = session.scalars(
            select(SenderDomain).where(SenderDomain.kind == kind, SenderDomain.domain == name)
        ).one_or_none()
        key = f"{kind.value}/{name}"
        if existing is not None:
            if existing.status != status:
                old = existing.status.value
                domains_service.set_domain_status(
                    session, name, kind.value, status.value, actor=actor
                )
                result.changes.append(
                    Change("sender_domains", key, "update", {"status": [old, status.value]})
                )
            continue
        username = _entry_key("sender_domains", entry, index, "user")
        user = session.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None:
            raise ValidationError(
                f"{where}.user", f"no user named {username!r}; add it under users."
            )
        token = entry.get("random_token") or templates_service.random_label()
        if not isinstance(token, str) or len(token) != 10 or not token.isalnum():
            raise ValidationError(f"{where}.random_token", "must be 10 letters or digits.")
        records = []
        for position, (host, rtype, value) in enumerate(_records_of(entry, where)):
            records.append(
                SenderDomainRecord(
                    position=position,
                    host=validation.record_host(host, f"{where}.records[{position}].host"),
                    type=validation.record_type(rtype, f"{where}.records[{position}].type"),
                    value=validation.header_value(
                        value, f"{where}.records[{position}].value", 4096
                    ),
                )
            )
        template = entry.get("template")
        session.add(
            SenderDomain(
                user=user,
                domain=name,
                kind=kind,
                status=status,
                template_name=str(template) if template else None,
                random_token=token.lower(),
                records=records,
            )
        )
        session.flush()
        audit.record(
            session, "import", "sender_domain", name, {"status": status.value}, actor=actor
        )
        result.changes.append(
            Change("sender_domains", key, "create", {"records": [0, len(records)]})
        )
