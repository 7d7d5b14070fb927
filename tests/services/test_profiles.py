"""Connection profiles: URL in a private YAML file, password in the keyring only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import keyring
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyring.backends import fail
from sqlalchemy.engine import URL as URL_TYPE
from sqlalchemy.engine import make_url

from app.services.errors import NotFoundError, SecretsUnavailable, ValidationError
from app.services.profiles import (
    ConnectionProfile,
    delete_profile,
    get_profile,
    list_profiles,
    profile_url,
    profiles_path,
    save_profile,
)
from tests.memory_keyring import MemoryKeyring

PASSWORD = "Tr0ub4dor&3:/@?#zq"  # characters that need escaping in a URL
URL = URL_TYPE.create(
    "postgresql+psycopg",
    username="admin",
    password=PASSWORD,
    host="db.example.com",
    port=5433,
    database="postroom",
    query={"sslmode": "require"},
).render_as_string(hide_password=False)


def file_text() -> str:
    return profiles_path().read_text(encoding="utf-8")


def test_profile_round_trip_keeps_the_password_out_of_the_file(
    memory_keyring: MemoryKeyring, isolated_user_dirs: Path
) -> None:
    saved = save_profile("Production", URL)
    assert saved == ConnectionProfile(
        name="Production",
        url_without_password="postgresql+psycopg://admin@db.example.com:5433/postroom?sslmode=require",
        backend="postgresql",
        has_password=True,
    )
    path = profiles_path()
    assert path.is_relative_to(isolated_user_dirs / "config")
    text = file_text()
    assert "db.example.com" in text
    assert "Tr0ub4dor" not in text  # neither raw nor URL-escaped
    assert "%40" in URL  # the fixture URL really is escaped
    assert memory_keyring.get_password("postroom", "profile:Production") == PASSWORD

    assert get_profile("Production") == saved
    assert list_profiles() == [saved]
    url = profile_url("Production")
    assert make_url(url).password == PASSWORD
    assert make_url(url) == make_url(URL)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_profile_file_is_private() -> None:
    save_profile("p", "sqlite:///tmp/x.sqlite3")
    assert stat.S_IMODE(profiles_path().stat().st_mode) == 0o600


def test_writes_leave_no_temporary_files_behind() -> None:
    save_profile("a", "sqlite:///a.sqlite3")
    save_profile("b", "sqlite:///b.sqlite3")
    delete_profile("a")
    assert [p.name for p in profiles_path().parent.iterdir()] == ["profiles.yaml"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(password=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s))
def test_any_password_round_trips_and_never_lands_in_the_file(password: str) -> None:
    url = make_url("mariadb+pymysql://app@db.internal:3306/postroom").set(password=password)
    save_profile("fuzz", url.render_as_string(hide_password=False))
    entry = yaml.safe_load(file_text())["profiles"]["fuzz"]
    assert make_url(entry["url"]).password is None
    assert make_url(profile_url("fuzz")).password == password


def test_plain_postgresql_is_pinned_to_psycopg() -> None:
    profile = save_profile("pg", "postgresql://u:p@h/d")
    assert profile.url_without_password == "postgresql+psycopg://u@h/d"
    assert profile_url("pg") == "postgresql+psycopg://u:p@h/d"


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:////var/lib/postroom/db.sqlite3", "sqlite"),
        ("mysql+pymysql://u:p@h/d", "mysql"),
        ("mariadb+pymysql://u:p@h/d", "mariadb"),
        ("postgresql+psycopg://u@h/d", "postgresql"),
    ],
)
def test_allowed_backends(url: str, backend: str) -> None:
    assert save_profile("x", url).backend == backend


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@h/d",  # mysqlclient, not installed
        "mysql+mysqldb://u:p@h/d",
        "postgresql+psycopg2://u:p@h/d",
        "oracle://u:p@h/d",
        "mssql+pyodbc://u:p@h/d",
        "not a url",
        "",
        "postgresql://u@h/d?password=secret",  # a password smuggled past the split
        "postgresql://u@h/d\nx",
        "postgresql://admin:p@ss@db.example.com/postroom",  # unescaped @ in the password
        "postgresql:///postroom",  # no host at all
    ],
)
def test_refused_urls_write_nothing(url: str, memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(ValidationError):
        save_profile("x", url)
    assert not profiles_path().exists()
    assert memory_keyring._store == {}


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_refused_names(name: str) -> None:
    with pytest.raises(ValidationError):
        save_profile(name, "sqlite:///x.sqlite3")


def test_profile_without_password_needs_no_keyring() -> None:
    keyring.set_keyring(fail.Keyring())
    save_profile("local", "sqlite:////srv/postroom.sqlite3")
    assert profile_url("local") == "sqlite:////srv/postroom.sqlite3"
    delete_profile("local")
    assert list_profiles() == []


def test_password_with_no_keyring_is_refused_and_nothing_written() -> None:
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(SecretsUnavailable):
        save_profile("prod", URL)
    assert not profiles_path().exists()


def test_profile_url_without_keyring_is_secrets_unavailable() -> None:
    save_profile("prod", URL)
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(SecretsUnavailable):
        profile_url("prod")


def test_lost_keyring_password_is_reported(memory_keyring: MemoryKeyring) -> None:
    save_profile("prod", URL)
    memory_keyring._store.clear()
    with pytest.raises(ValidationError) as caught:
        profile_url("prod")
    assert "save the profile again" in caught.value.message


def test_saving_without_password_forgets_the_old_one(memory_keyring: MemoryKeyring) -> None:
    save_profile("prod", URL)
    save_profile("prod", "postgresql+psycopg://admin@db.example.com/postroom")
    assert memory_keyring.get_password("postroom", "profile:prod") is None
    assert profile_url("prod") == "postgresql+psycopg://admin@db.example.com/postroom"


def test_delete_removes_file_entry_and_password(memory_keyring: MemoryKeyring) -> None:
    save_profile("prod", URL)
    save_profile("staging", "sqlite:///staging.sqlite3")
    delete_profile("prod")
    assert [p.name for p in list_profiles()] == ["staging"]
    assert memory_keyring.get_password("postroom", "profile:prod") is None
    with pytest.raises(NotFoundError):
        get_profile("prod")
    with pytest.raises(NotFoundError):
        delete_profile("prod")


def test_list_is_sorted_and_names_are_trimmed() -> None:
    save_profile("  beta ", "sqlite:///b.sqlite3")
    save_profile("Alpha", "sqlite:///a.sqlite3")
    assert [p.name for p in list_profiles()] == ["Alpha", "beta"]
    assert get_profile("beta").url_without_password == "sqlite:///b.sqlite3"


def test_no_file_means_no_profiles() -> None:
    assert list_profiles() == []
    with pytest.raises(NotFoundError):
        profile_url("nothing")


@pytest.mark.parametrize(
    "content", ["profiles: [1, 2", "just text", "profiles:\n  x: 3\n", "profiles:\n  x: {}\n"]
)
def test_damaged_file_is_a_clear_error(content: str) -> None:
    path = profiles_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        list_profiles()
    assert str(path) in caught.value.message


def test_describing_a_sqlite_file_leaves_it_as_it_was(tmp_path: Path) -> None:
    """Typing a path into the Database dialog looks at the file; it must not change it."""
    import sqlite3

    from app.services.profiles import describe_sqlite_file

    foreign = tmp_path / "other-program.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    before = foreign.read_bytes()
    note = describe_sqlite_file(str(foreign))
    assert note.startswith("This file exists: a SQLite database without Postroom's tables")
    assert foreign.read_bytes() == before
    assert not (tmp_path / "other-program.db-wal").exists()
    with sqlite3.connect(foreign) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
