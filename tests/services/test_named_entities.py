"""Servers, groups and users share one find / keep-unique / write-and-audit sequence
(coerce.NamedEntity): the same sentences and the same audit entries for each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models.database import Database
from app.services import groups, servers, users
from app.services.audit import list_entries
from app.services.errors import ConcurrentEditError, ConflictError, ValidationError


def _seed(s: Session) -> None:
    servers.create_server(s, {"name": "Main", "host": "main.example.com"}, actor="t@ws")
    groups.create_group(s, {"name": "Sales"}, actor="t@ws")
    users.create_user(
        s, {"username": "alice", "email": "a@example.com", "group": "Sales"}, actor="t@ws"
    )


# (kind, create a second row named after the first one in another case, rename/update/delete)
_KINDS: list[tuple[str, str, Callable[[Session], Any]]] = [
    (
        "delivery_server",
        "A delivery server named 'MAIN' already exists; choose another name.",
        lambda s: servers.create_server(s, {"name": "MAIN", "host": "b.example.com"}),
    ),
    (
        "user_group",
        "A user group named 'SALES' already exists; choose another name.",
        lambda s: groups.create_group(s, {"name": "SALES"}),
    ),
    (
        "user",
        "A user named 'ALICE' already exists; choose another username.",
        lambda s: users.create_user(
            s, {"username": "ALICE", "email": "b@example.com", "group": "Sales"}
        ),
    ),
]


@pytest.mark.parametrize(("kind", "sentence", "create"), _KINDS, ids=[k[0] for k in _KINDS])
def test_a_taken_name_is_refused_with_the_same_sentence(
    database: Database, kind: str, sentence: str, create: Callable[[Session], Any]
) -> None:
    with database.transaction() as s:
        _seed(s)
    with pytest.raises(ConflictError) as info, database.transaction() as s:
        create(s)
    assert str(info.value) == sentence


def test_a_missing_reference_is_refused_on_the_field_that_names_it(database: Database) -> None:
    with database.transaction() as s:
        _seed(s)
    refusals = [
        (
            lambda s: groups.update_group(s, "Sales", {"marketing_server": "Nope"}),
            "Target Delivery Server (Marketing)",
            "no delivery server named 'Nope'; create it first or pick another.",
        ),
        (
            lambda s: users.update_user(s, "alice", {"group": "Nope"}),
            "User group",
            "no user group named 'Nope'; create it first or pick another.",
        ),
    ]
    for change, field, reason in refusals:
        with pytest.raises(ValidationError) as info, database.transaction() as s:
            change(s)
        assert (info.value.field, info.value.reason) == (field, reason)
    with database.transaction() as s:  # and an existing one is found under any case
        groups.update_group(s, "Sales", {"marketing_server": "MAIN"})
        users.update_user(s, "alice", {"group": "SALES"})
    with database.session() as s:
        assert groups.get_group(s, "sales").marketing_server is not None


def test_create_rename_and_delete_are_audited_alike(database: Database) -> None:
    with database.transaction() as s:
        _seed(s)
        users.update_user(s, "alice", {"username": "alicia"}, actor="t@ws")
        groups.update_group(s, "Sales", {"name": "Sales2"}, actor="t@ws")
        servers.update_server(s, "Main", {"name": "Main2"}, actor="t@ws")
        users.update_user(s, "alicia", {"email": "a@example.com"}, actor="t@ws")  # no change
        users.delete_user(s, "alicia", actor="t@ws")
        groups.delete_group(s, "Sales2", actor="t@ws")
        servers.delete_server(s, "Main2", actor="t@ws")
    with database.session() as s:
        entries = list(reversed(list_entries(s, text="t@ws")))
    assert [(e.action, e.entity, e.key) for e in entries] == [
        ("create", "delivery_server", "Main"),
        ("create", "user_group", "Sales"),
        ("create", "user", "alice"),
        # An update is filed under the name the row has after it.
        ("update", "user", "alicia"),
        ("update", "user_group", "Sales2"),
        ("update", "delivery_server", "Main2"),
        ("delete", "user", "alicia"),
        ("delete", "user_group", "Sales2"),
        ("delete", "delivery_server", "Main2"),
    ]
    assert [e.details for e in entries[3:6]] == [
        {"username": ["alice", "alicia"]},
        {"name": ["Sales", "Sales2"]},
        {"name": ["Main", "Main2"]},
    ]


def test_a_stale_version_is_refused_under_the_name_asked_for(database: Database) -> None:
    with database.transaction() as s:
        _seed(s)
    stale = [
        lambda s: servers.update_server(s, "main", {"port": 2525}, expected_version=99),
        lambda s: groups.update_group(s, "sales", {"x_mailer": "X"}, expected_version=99),
        lambda s: users.update_user(s, "ALICE", {"is_active": False}, expected_version=99),
    ]
    for change, name in zip(stale, ["main", "sales", "ALICE"], strict=True):
        with pytest.raises(ConcurrentEditError, match=repr(name)), database.transaction() as s:
            change(s)


def test_a_missing_required_field_is_named_alike(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as s:
        _seed(s)
    missing = [
        (lambda s: servers.create_server(s, {"name": "X", "host": ""}), "SMTP Host"),
        (lambda s: servers.create_server(s, {"host": "x.example.com"}), "Name"),
        (lambda s: groups.create_group(s, {"name": None}), "Name"),
        (lambda s: users.create_user(s, {"username": "bob", "group": "Sales"}), "Email"),
        (lambda s: users.create_user(s, {"username": "bob", "email": "b@x.example"}), "User group"),
    ]
    for create, field in missing:
        with pytest.raises(ValidationError) as info, sqlite_database.transaction() as s:
            create(s)
        assert (info.value.field, info.value.reason) == (field, "is required.")
