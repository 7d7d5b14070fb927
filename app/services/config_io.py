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

import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import __version__
from app.models import (
    DeliveryServer,
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
from app.services.coerce import FieldSpec, name_matches
from app.services.dns_records import record_dicts, record_triples
from app.services.errors import ValidationError

T = TypeVar("T")

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
                "records": record_dicts(d.records),
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

# A full export of a large installation (10,000 sender domains) is about 6 MB.
MAX_FILE_BYTES = 16 * 1024 * 1024
# Exports nest four levels deep (section, entry, records, record); deeper is not ours.
MAX_DEPTH = 12


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML without aliases and without deep nesting.

    Aliases are how a 600-byte file expands to gigabytes ("billion laughs"); an export
    never writes them, so they are refused outright rather than bounded. Nesting is
    bounded because composing is recursive: a deep file would end in RecursionError.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(
                f"uses a YAML alias (*{event.anchor}) at line {_line(event)}; "
                "write the values out in full, as an export does."
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _Refused(
                    f"nests deeper than {MAX_DEPTH} levels at line {_line(event)}; "
                    "a Postroom export never does."
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    """Why the loader stopped; becomes a ValidationError on the import file."""


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


def read_config(path: Path) -> dict[str, Any]:
    """``parse_config`` of a file, refusing an oversized one before reading it."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _too_big(size)
        return parse_config(path.read_bytes())
    except OSError as exc:
        raise ValidationError(
            "Import file", f"{path} cannot be read ({exc.strerror}); check the path."
        ) from None


def _too_big(size: int) -> ValidationError:
    return ValidationError(
        "Import file",
        f"is {size / 1_048_576:.1f} MB, more than the {MAX_FILE_BYTES // 1_048_576} MB a "
        "configuration can be; import it in parts (one section per file).",
    )


def parse_config(data: str | bytes) -> dict[str, Any]:
    """Parse and shape-check a configuration file; errors name the section and entry.

    Only the shape is checked here; every value is validated by the services' own parsers
    when the import is planned, before anything is converted or stored.
    """
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(len(data))
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                "Import file",
                f"is not UTF-8 text (byte {exc.start} is invalid); save it as UTF-8 and try again.",
            ) from None
    try:
        document = yaml.load(data, Loader=_ConfigLoader)
    except _Refused as exc:
        raise ValidationError("Import file", str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(
            "Import file", f"is not valid YAML{where}; fix the syntax and try again."
        ) from None
    except (ValueError, OverflowError):
        # The safe constructor's int() and datetime() refuse some values that the YAML
        # grammar accepts (a 5,000-digit number, 2026-13-45).
        raise ValidationError(
            "Import file",
            "holds a number or date YAML cannot represent; quote the value or correct it.",
        ) from None
    if not isinstance(document, dict):
        raise ValidationError("Import file", "must be a mapping with sections like user_groups.")
    version = document.get("postroom_config")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValidationError(
            "postroom_config",
            f"must be {FORMAT_VERSION}; this file is not a Postroom configuration export.",
        )
    unknown = sorted(
        str(k) for k in set(document) - set(SECTIONS) - {"postroom_config", "exported_by"}
    )
    if unknown:
        raise ValidationError(
            _shown_key(unknown[0]), f"is not a configuration section; known: {', '.join(SECTIONS)}."
        )
    settings = document.get("dns_settings")
    if settings is None:
        document.pop("dns_settings", None)
    elif not isinstance(settings, dict):
        raise ValidationError("dns_settings", "must be a mapping of setting: value.")
    for section in SECTIONS[1:]:
        entries = document.get(section, [])
        if entries is None:
            document[section] = []
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValidationError(section, "must be a list of mappings.")
    return document


def _shown_key(key: str) -> str:
    """A key as a field name in a message: as written if short and printable."""
    return key if key.isprintable() and len(key) <= 40 else repr(key[:40])


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


def _where(section: str, index: int, key: str | None = None) -> str:
    return f"{section}[{index}]" + (f".{key}" if key else "")


def _in_section(section: str, index: int, run: Callable[[], T]) -> T:
    """Prefix refusals with where in the file they come from."""
    try:
        return run()
    except ValidationError as exc:
        raise ValidationError(f"{section}[{index}] {exc.field}", exc.reason) from None


def _check_keys(
    entry: Mapping[Any, Any],
    where: str,
    allowed: set[str],
    read_only: AbstractSet[str] = frozenset(),
) -> None:
    """Unknown keys are refused, not ignored: a typo must not pass as "no change"."""
    for key in entry:
        if not isinstance(key, str) or key not in allowed | read_only:
            shown = _shown_key(str(key))
            raise ValidationError(
                f"{where}.{shown}",
                f"is not a field here; known fields: {', '.join(sorted(allowed))}.",
            )
        if key in read_only and isinstance(entry[key], dict | list):
            raise ValidationError(
                f"{where}.{key}", "is shown by export only and must be a plain value."
            )


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _parse_fields(
    entry: Mapping[str, Any], where: str, specs: Mapping[str, FieldSpec]
) -> dict[str, Any]:
    """Each present field through the very parser the commands use, as plain values.

    Refusals read like the form's: ``users[2] Email: ...``.
    """
    parsed: dict[str, Any] = {}
    for key, spec in specs.items():
        if key in entry:
            try:
                parsed[key] = _plain(spec.parse(entry[key], spec.label))
            except ValidationError as exc:
                raise ValidationError(f"{where} {exc.field}", exc.reason) from None
    return parsed


def _optional_name(value: object, field: str) -> str | None:
    if validation.is_blank(value):
        return None
    return validation.name(value, field)


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


def _setting_spec(key: str) -> FieldSpec:
    def parse(value: object, _label: str) -> object:
        return dns_settings_service.normalize_setting(key, value)

    return FieldSpec(dns_settings_service.LABELS[key], parse)


def _import_settings(
    session: Session, wanted: Mapping[str, Any] | None, result: ImportResult, actor: str | None
) -> None:
    if not wanted:
        return
    current = dns_settings_service.settings_as_dict(dns_settings_service.get_settings(session))
    known = set(dns_settings_service.LABELS)
    _check_keys(wanted, "dns_settings", known, _SETTINGS_SKIP)
    parsed = _parse_fields(
        wanted,
        "dns_settings",
        {key: _setting_spec(key) for key in known},
    )
    changes = _differences(current, parsed)
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


def _entry_kind(entry: Mapping[str, Any], where: str) -> TemplateKind:
    """A template's or domain's kind; campaign when the entry leaves it out, as the
    commands and the console default to."""
    return validation.choice(entry.get("kind", "campaign"), f"{where}.kind", TemplateKind)


_RECORD_KEYS = {"host", "type", "value"}


def _raw_records(entry: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """The records' shape: a list of mappings with exactly host, type and value."""
    records = entry.get("records")
    if records is None:
        return []
    if not isinstance(records, list):
        raise ValidationError(f"{where}.records", "must be a list of {host, type, value}.")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not set(record) >= _RECORD_KEYS:
            raise ValidationError(f"{where}.records[{i}]", "needs host, type and value.")
        _check_keys(record, f"{where}.records[{i}]", _RECORD_KEYS)
    return records


_TEMPLATE_KEYS = {"name", "kind", "description", "records"}


def _import_templates(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    for index, entry in enumerate(entries):
        where = _where("dns_templates", index)
        _check_keys(entry, where, _TEMPLATE_KEYS)
        name = validation.name(entry.get("name"), f"{where}.name")
        kind = _entry_kind(entry, where)
        records = _in_section(
            "dns_templates",
            index,
            partial(templates_service.normalize_records, _raw_records(entry, where), kind=kind),
        )
        description = entry.get("description")
        if description is not None:
            description = validation.multiline_text(description, f"{where}.description", 2000)
        existing = templates_service.find_template(session, kind, name)
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
        current = record_triples(existing.records)
        diff: dict[str, Any] = {}
        if current != records:
            diff["records"] = [current, records]
        if description is not None and description.strip() != (existing.description or ""):
            diff["description"] = [existing.description, description]
        if diff:
            _in_section(
                "dns_templates",
                index,
                partial(
                    templates_service.update_template,
                    session,
                    kind.value,
                    existing.name,
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
    specs: Mapping[str, FieldSpec],
    read_only: set[str],
    as_dict: Callable[[Any], dict[str, Any]],
    create: Callable[[dict[str, Any]], Any],
    update: Callable[[str, dict[str, Any]], Any],
) -> None:
    for index, entry in enumerate(entries):
        where = _where(section, index)
        _check_keys(entry, where, set(specs), read_only)
        if key_field not in entry:
            raise ValidationError(f"{where}.{key_field}", "is required.")
        wanted = _parse_fields(entry, where, specs)
        key = str(wanted[key_field])
        existing = session.scalars(
            select(model).where(name_matches(model, key_field, key))
        ).one_or_none()
        if existing is None:
            _in_section(section, index, partial(create, wanted))
            result.changes.append(Change(section, key, "create", {}))
            continue
        current = as_dict(existing)
        changes = _differences(current, wanted)
        if changes:
            _in_section(section, index, partial(update, current[key_field], changes))
            result.changes.append(
                Change(section, key, "update", {k: [current.get(k), v] for k, v in changes.items()})
            )


def _import_servers(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    for index, entry in enumerate(entries):
        if "password" in entry:
            raise ValidationError(
                _where("delivery_servers", index, "password"),
                "passwords are never imported; set it with `servers edit NAME "
                "--password-stdin` or in the console.",
            )
    _upsert(
        session,
        "delivery_servers",
        entries,
        result,
        key_field="name",
        model=DeliveryServer,
        specs=servers_service.FIELDS,
        read_only=_SERVER_SKIP,
        as_dict=servers_service.server_as_dict,
        create=lambda values: servers_service.create_server(session, values, actor=actor),
        update=lambda key, changes: servers_service.update_server(
            session, key, changes, actor=actor
        ),
    )


def _import_groups(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    references = {**groups_service.SERVER_REFERENCES, **groups_service.TEMPLATE_REFERENCES}
    _upsert(
        session,
        "user_groups",
        entries,
        result,
        key_field="name",
        model=UserGroup,
        specs={
            **groups_service.FIELDS,
            **{key: FieldSpec(label, _optional_name) for key, (label, _) in references.items()},
        },
        read_only=_GROUP_SKIP,
        as_dict=groups_service.group_as_dict,
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
        specs={**users_service.FIELDS, "group": FieldSpec("User group", validation.name)},
        read_only=_USER_SKIP,
        as_dict=users_service.user_as_dict,
        create=lambda values: users_service.create_user(session, values, actor=actor),
        update=lambda key, changes: users_service.update_user(session, key, changes, actor=actor),
    )


_DOMAIN_KEYS = {"domain", "kind", "user", "status", "template", "random_token", "records"}
_RANDOM_TOKEN = re.compile(r"[A-Za-z0-9]{10}")


def _random_token(value: object, field: str) -> str:
    if value is None:
        return templates_service.random_label()
    if not isinstance(value, str) or not _RANDOM_TOKEN.fullmatch(value):
        raise ValidationError(field, "must be 10 ASCII letters or digits, e.g. a1b2c3d4e5.")
    return value.lower()


def _import_domains(
    session: Session, entries: Sequence[Mapping[str, Any]], result: ImportResult, actor: str | None
) -> None:
    """Domains keep the record snapshot from the file: they are not re-rendered."""
    for index, entry in enumerate(entries):
        where = _where("sender_domains", index)
        _check_keys(entry, where, _DOMAIN_KEYS)
        name = validation.domain(entry.get("domain"), f"{where}.domain")
        kind = _entry_kind(entry, where)
        status = validation.choice(
            entry.get("status", "approval_pending"), f"{where}.status", DomainStatus
        )
        username = validation.username(entry.get("user"), f"{where}.user")
        template = _optional_name(entry.get("template"), f"{where}.template")
        token = _random_token(entry.get("random_token"), f"{where}.random_token")
        records = []
        for position, record in enumerate(_raw_records(entry, where)):
            field = f"{where}.records[{position}]"
            records.append(
                SenderDomainRecord(
                    position=position,
                    host=validation.record_host(record["host"], f"{field}.host"),
                    type=validation.record_type(record["type"], f"{field}.type"),
                    value=validation.header_value(record["value"], f"{field}.value", 4096),
                )
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
        user = session.scalars(
            select(User).where(name_matches(User, "username", username))
        ).one_or_none()
        if user is None:
            raise ValidationError(
                f"{where}.user", f"no user named {username!r}; add it under users."
            )
        session.add(
            SenderDomain(
                user=user,
                domain=name,
                kind=kind,
                status=status,
                template_name=template,
                random_token=token,
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
