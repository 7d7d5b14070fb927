"""Small coercions shared by the CRUD services: booleans from CLI/YAML/forms, name lookups
and uniqueness by the normalised name key, flushing with races turned into sentences, and
``NamedEntity``: the one find / keep-unique / write-and-audit sequence of a named row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.models.base import VersionedMixin, name_key
from app.models.database import is_unique_violation
from app.services import audit, validation
from app.services.errors import (
    ConcurrentEditError,
    ConflictError,
    NotFoundError,
    ValidationError,
)

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}

T = TypeVar("T")
Row = TypeVar("Row", bound=VersionedMixin)


def boolean(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValidationError(field, f"{value!r} is not a yes/no value; use true or false.")


def name_matches(model: type[Any], column: str, value: str) -> Any:
    """Named tables are matched by their key (case and Unicode forms folded), others exactly."""
    if hasattr(model, "name_key"):
        return model.name_key == name_key(value)
    return getattr(model, column) == value


def get_by_name(session: Session, model: type[T], column: str, value: str, entity: str) -> T:
    """The row whose ``column`` is ``value`` as names compare, or NotFoundError naming it."""
    row = session.scalars(select(model).where(name_matches(model, column, value))).one_or_none()
    if row is None:
        raise NotFoundError(entity, value)
    return row


def ensure_unique(
    session: Session,
    model: type[Any],
    column: str,
    value: str,
    entity: str,
    *,
    exclude_id: int | None = None,
) -> None:
    """ConflictError if another row's ``column`` compares equal to ``value``."""
    query = select(model.id).where(name_matches(model, column, value))
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    # No autoflush: the caller's pending change to this very row must reach the database
    # through ``flush`` below, where a lost race is reported as such.
    with session.no_autoflush:
        taken = session.scalars(query).first() is not None
    if taken:
        raise ConflictError(f"A {entity} named {value!r} already exists; choose another {column}.")


def flush(session: Session, entity: str, key: str) -> None:
    """Write pending changes; a race lost to another console becomes one sentence.

    ``ensure_unique`` and the version check run before the write, but another console may
    commit between them and this flush: its row then makes the UPDATE match nothing
    (StaleDataError) or the INSERT hit the unique index (IntegrityError).
    """
    try:
        session.flush()
    except StaleDataError:
        raise ConcurrentEditError(entity, key) from None
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise ConflictError(
                f"A {entity} named {key!r} already exists (someone else just saved it); "
                "choose another name, or reload to see theirs."
            ) from None
        raise ConflictError(
            f"The {entity} {key!r} could not be saved because someone else changed related "
            "data at the same time; reload and apply your change again."
        ) from None


def require(values: Mapping[str, object], labels: Mapping[str, str]) -> None:
    """A ValidationError naming the first of ``labels`` (key: label) that ``values`` lacks."""
    for key, label in labels.items():
        if values.get(key) in (None, ""):
            raise ValidationError(label, "is required.")


def check_version(actual: int, expected: int | None, entity: str, key: str) -> None:
    if expected is not None and actual != expected:
        raise ConcurrentEditError(entity, key)


Parser = Callable[[object, str], object]


@dataclass(frozen=True)
class FieldSpec:
    """How one editable attribute is labelled for users and parsed from raw input."""

    label: str
    parse: Parser


def apply_fields(
    row: object, changes: Mapping[str, object], specs: Mapping[str, FieldSpec], entity: str
) -> dict[str, Any]:
    """Validate every change first, then set them all; returns ``{field: [old, new]}``.

    Validating before touching the row means a refused value leaves the row unchanged.
    """
    unknown = sorted(set(changes) - set(specs))
    if unknown:
        raise ValidationError(
            unknown[0], f"is not a {entity} setting; known settings: {', '.join(sorted(specs))}."
        )
    parsed = {key: specs[key].parse(value, specs[key].label) for key, value in changes.items()}
    before = {key: getattr(row, key) for key in parsed}
    for key, value in parsed.items():
        setattr(row, key, value)
    return {
        key: [_plain(before[key]), _plain(value)]
        for key, value in parsed.items()
        if before[key] != value
    }


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class NamedEntity(Generic[Row]):
    """A kind of row found by its name: how the CRUD services look it up, keep its name
    unique, resolve a reference to it, and write a change to it with its audit entry."""

    model: type[Row]
    column: str  # the name column: "name", "username"
    entity: str  # as sentences name it: "user group"
    audit_entity: str  # as the audit log files it: one of audit.ENTITIES

    def get(self, session: Session, value: str) -> Row:
        return get_by_name(session, self.model, self.column, value, self.entity)

    def get_for_change(self, session: Session, value: str, expected_version: int | None) -> Row:
        """The row to change, refused if someone saved it since the caller read it."""
        row = self.get(session, value)
        check_version(row.version, expected_version, self.entity, value)
        return row

    def ensure_unique(self, session: Session, value: str, *, exclude_id: int | None = None) -> None:
        ensure_unique(session, self.model, self.column, value, self.entity, exclude_id=exclude_id)

    def reference(self, session: Session, value: object, label: str) -> Row:
        """The row another entity's ``label`` field names, or a ValidationError on that field."""
        wanted = validation.name(value, label)
        row = session.scalars(
            select(self.model).where(name_matches(self.model, self.column, wanted))
        ).one_or_none()
        if row is None:
            raise ValidationError(
                label, f"no {self.entity} named {wanted!r}; create it first or pick another."
            )
        return row

    def save(
        self,
        session: Session,
        action: str,
        key: str,
        details: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        *,
        actor: str | None,
        asked_as: str | None = None,
    ) -> None:
        """Flush the change, then add its audit entry filed under ``key`` (the name now).

        ``details`` given as a function is read after the flush, so a new row's entry
        holds the defaults the database filled in. ``asked_as`` is the name the caller
        asked for when it differs (a rename): a lost race is reported under that name.
        """
        flush(session, self.entity, asked_as or key)
        written = details() if callable(details) else details
        audit.record(session, action, self.audit_entity, key, written, actor=actor)
