"""Where the database URL comes from: --database, the environment, a secret file, the default.

A send engine in a container reads its URL from a mounted file (POSTROOM_DATABASE_URL_FILE),
so the password is neither in the image nor in the environment `docker inspect` shows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.models.database import (
    DATABASE_URL_ENV,
    DATABASE_URL_FILE_ENV,
    default_sqlite_path,
    resolve_database_url,
)
from app.services.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
SECRET_URL = "postgresql+psycopg://engine:s3cret-pw@db.example/postroom"


@pytest.fixture
def url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "database-url"
    monkeypatch.setenv(DATABASE_URL_FILE_ENV, str(path))
    return path


def test_the_file_named_by_the_environment_gives_the_url(url_file: Path) -> None:
    url_file.write_text(f"\n  {SECRET_URL}  \n", encoding="utf-8")
    assert resolve_database_url() == SECRET_URL


def test_the_explicit_url_and_the_url_variable_win_over_the_file(
    url_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_file.write_text(SECRET_URL, encoding="utf-8")
    assert resolve_database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///from-env.db")
    assert resolve_database_url() == "sqlite:///from-env.db"


def test_without_either_variable_the_embedded_database_is_used() -> None:
    assert resolve_database_url() == f"sqlite:///{default_sqlite_path()}"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "does not exist; mount the file"),
        (lambda p: p.write_text(" \n\n", encoding="utf-8"), "is empty"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "is not a UTF-8 text file"),
    ],
    ids=["missing", "blank", "folder", "binary"],
)
def test_a_bad_file_is_one_sentence_naming_the_variable(
    url_file: Path, make: object, expected: str
) -> None:
    make(url_file)  # type: ignore[operator]
    with pytest.raises(ValidationError) as caught:
        resolve_database_url()
    message = str(caught.value)
    assert message.startswith(f"{DATABASE_URL_FILE_ENV}: {url_file} ")
    assert expected in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_the_cli_reads_the_file_and_never_prints_the_password(
    tmp_path: Path, url_file: Path
) -> None:
    database = tmp_path / "engine.sqlite3"
    url_file.write_text(f"sqlite:///{database}\n", encoding="utf-8")
    listed = subprocess.run(
        [sys.executable, "-m", "app", "servers", "list", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert database.exists(), "the CLI opened the database the file names"

    url_file.write_text(SECRET_URL.replace("db.example", "127.0.0.1:1"), encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "app", "servers", "list"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "s3cret-pw" not in refused.stderr + refused.stdout
    assert refused.stderr.startswith("postroom: cannot open the database")
