"""Configuration import: hostile files are refused in one sentence, in bounded time and
memory, and every value goes through the same validators as the commands."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.models.database import Database
from app.services import config_io, groups, users
from app.services.errors import PostroomError, ValidationError
from tests.hostile_yaml import alias_bomb


def test_an_alias_bomb_is_refused_at_once() -> None:
    text = alias_bomb()
    assert len(text) < 1000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ValidationError, match="alias") as info:
            config_io.parse_config(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.field == "Import file"
    assert time.monotonic() - started < 2
    assert peak < 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("postroom_config: 1\nusers: " + "[" * 5000 + "]" * 5000, "nests deeper"),
        ("postroom_config: 1\nusers: [" + "{a: " * 200 + "1" + "}" * 200 + "]", "nests"),
        ("postroom_config: 1\nusers: [{username: " + "9" * 5000 + "}]\n", "number"),
        ("postroom_config: 1\nusers: [{username: 2026-13-45}]\n", "date"),
        ("postroom_config: true\n", "must be 1"),
    ],
)
def test_hostile_documents_are_one_sentence(text: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as info:
        config_io.parse_config(text)
    assert "\n" not in str(info.value)


def test_invalid_utf8_and_oversized_files_are_refused() -> None:
    with pytest.raises(ValidationError, match="not UTF-8 text"):
        config_io.parse_config(b"postroom_config: 1\nusers: [{username: \xff\xfe}]\n")
    big = b"postroom_config: 1\n#" + b"x" * config_io.MAX_FILE_BYTES
    with pytest.raises(ValidationError, match="MB"):
        config_io.parse_config(big)


def doc(**sections: Any) -> dict[str, Any]:
    return config_io.parse_config(yaml.safe_dump({"postroom_config": 1, **sections}))


def plan_error(db: Database, document: dict[str, Any]) -> ValidationError:
    with db.session() as s, pytest.raises(ValidationError) as info:
        config_io.plan_import(s, document)
    return info.value


def seed(db: Database) -> None:
    with db.transaction() as s:
        groups.create_group(s, {"name": "G"})
        users.create_user(s, {"username": "alice", "email": "a@example.com", "group": "G"})


def domain(**fields: Any) -> dict[str, Any]:
    return {
        "domain": "mail.example.com",
        "user": "alice",
        "records": [{"host": "mail.example.com", "type": "TXT", "value": "x"}],
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"template": "Default\r\nBcc: x"}, "sender_domains[0].template"),
        ({"template": "\u202eDefault"}, "sender_domains[0].template"),
        ({"template": "T" * 10_000}, "sender_domains[0].template"),
        ({"template": ["Default"]}, "sender_domains[0].template"),
        ({"random_token": "ééééééééé1"}, "sender_domains[0].random_token"),
        ({"random_token": "١٢٣٤٥٦٧٨٩٠"}, "sender_domains[0].random_token"),
        ({"random_token": 1234567890}, "sender_domains[0].random_token"),
        ({"user": {"name": "alice"}}, "sender_domains[0].user"),
        ({"colour": "red"}, "sender_domains[0].colour"),
        (
            {"records": [{"host": ["a"], "type": "TXT", "value": "x"}]},
            "sender_domains[0].records[0].host",
        ),
        (
            {"records": [{"host": "a.example.com", "type": "TXT", "value": "x", "ttl": 1}]},
            "sender_domains[0].records[0].ttl",
        ),
    ],
)
def test_sender_domain_fields_go_through_the_validators(
    database: Database, fields: dict[str, Any], where: str
) -> None:
    seed(database)
    error = plan_error(database, doc(sender_domains=[domain(**fields)]))
    assert error.field == where


def test_a_valid_sender_domain_still_imports(database: Database) -> None:
    seed(database)
    with database.transaction() as s:
        result = config_io.apply_import(
            s, doc(sender_domains=[domain(template="Default", random_token="AbCdE12345")])
        )
    assert [c.action for c in result.changes] == ["create"]


@pytest.mark.parametrize(
    ("section", "entry", "where"),
    [
        ("delivery_servers", {"name": "M", "host": "m.example.com", "prot": 25}, ".prot"),
        ("delivery_servers", {"name": "M", "host": "m.example.com", "password": "x"}, ".password"),
        ("delivery_servers", {"name": "M", "host": "m.example.com", "port": [25]}, " SMTP Port"),
        ("delivery_servers", {"name": "M\u200b", "host": "m.example.com"}, " Name"),
        ("delivery_servers", {"host": "m.example.com"}, ".name"),
        ("user_groups", {"name": "G2", "marketing_server": {"a": 1}}, " Target Delivery"),
        ("user_groups", {"name": "G2", "version": {"a": 1}}, ".version"),
        ("users", {"username": "bob", "email": "b@example.com", "group": "G", "x": 1}, ".x"),
        ("dns_templates", {"name": "T", "records": [], "owner": "me"}, ".owner"),
        ("dns_templates", {"name": "T", "records": [{"host": 1, "type": "A", "value": 2}]}, ""),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused(
    database: Database, section: str, entry: dict[str, Any], where: str
) -> None:
    seed(database)
    error = plan_error(database, doc(**{section: [entry]}))
    assert error.field.startswith(f"{section}[0]{where}")


def test_values_are_compared_after_parsing(database: Database) -> None:
    """ "587" in a file is the port 587 a server already has: no change to show."""
    with database.transaction() as s:
        config_io.apply_import(
            s, doc(delivery_servers=[{"name": "M", "host": "M.Example.com", "port": 587}])
        )
    with database.session() as s:
        plan = config_io.plan_import(
            s,
            doc(delivery_servers=[{"name": "M", "host": "m.example.com.", "port": "0587"}]),
        )
    assert plan.changes == []


# ---------------------------------------------------------------- property

SECTION_KEYS = {
    "dns_settings": ["dkim_selector", "spf_include", "campaign_subdomain", "version", "x"],
    "delivery_servers": ["name", "host", "port", "encryption", "username", "version", "x"],
    "user_groups": ["name", "marketing_server", "daily_email_limit", "x_mailer", "x"],
    "users": ["username", "email", "group", "is_active", "x"],
    "dns_templates": ["name", "kind", "description", "records", "x"],
    "sender_domains": ["domain", "user", "kind", "status", "template", "random_token", "records"],
}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["M1", "G", "alice", "example.com", "tls", "Default", "a@example.com"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["host", "type", "value", "x"]), inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    document: dict[str, Any] = {"postroom_config": draw(st.sampled_from([1, 1, 1, "1", 2]))}
    for section, keys in SECTION_KEYS.items():
        if not draw(st.booleans()):
            continue
        entry_of = st.dictionaries(
            st.one_of(st.sampled_from(keys), st.text(max_size=6)), values, max_size=6
        )
        if section == "dns_settings":
            document[section] = draw(entry_of)
        else:
            document[section] = draw(st.lists(entry_of, max_size=3))
    text = yaml.safe_dump(document, allow_unicode=draw(st.booleans()))
    twist = draw(st.sampled_from(["none", "alias", "deep", "bytes"]))
    if twist == "alias":
        levels = draw(st.integers(1, 12))
        text = alias_bomb(levels, draw(st.integers(1, 12)))
    elif twist == "deep":
        depth = draw(st.integers(1, 3000))
        text += "extra: " + "[" * depth + "]" * depth + "\n"
    elif twist == "bytes":
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=5)) + text[cut:]
    return text


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=documents())
@example(text=alias_bomb(9, 9))
@example(text="postroom_config: 1\nusers: [" * 1 + "[" * 20000 + "]" * 20001)
def test_generated_documents_fail_only_with_sentences(sqlite_database: Database, text: str) -> None:
    tracemalloc.start()
    try:
        try:
            document = config_io.parse_config(text)
            with sqlite_database.session() as s:
                config_io.plan_import(s, document)
        except PostroomError as exc:
            assert "\n" not in str(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024
