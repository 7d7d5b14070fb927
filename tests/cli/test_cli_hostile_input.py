"""Through the real console script: bad URLs, limits and files end in one sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_yaml import alias_bomb

POSTROOM = [sys.executable, "-m", "app"]


def run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    database = ["--database", url] if url is not None else []
    return subprocess.run(
        [*POSTROOM, *database, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def assert_one_sentence(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postroom: ")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--limit", str(10**30)], ["Limit", "1 to"]),
        (["--limit", "-1"], ["Limit"]),
        (["--limit", "0"], ["Limit"]),
        (["--entity", "bogus"], ["Entity", "delivery_server"]),
    ],
)
def test_audit_refuses_bad_filters(db_url: str, args: list[str], words: list[str]) -> None:
    assert_one_sentence(run("audit", *args, url=db_url), *words)


def test_audit_accepts_good_filters(sqlite_url: str) -> None:
    result = run("audit", "--entity", "user_group", "--limit", "5", url=sqlite_url)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("bogus://x", ["--database", "'bogus'", "sqlite:///"]),
        ("not a url", ["--database", "not a database URL", "sqlite:///"]),
        ("postgresql+nosuchdriver://u@h/d", ["--database", "driver"]),
    ],
)
def test_bad_database_urls_are_one_sentence(url: str, words: list[str]) -> None:
    assert_one_sentence(run("servers", "list", url=url), *words)


def test_a_sqlite_path_inside_a_file_is_one_sentence(tmp_path: Path) -> None:
    existing = tmp_path / "file.db"
    existing.write_text("")
    result = run("servers", "list", url=f"sqlite:///{existing}/x.db")
    assert_one_sentence(result, "--database", str(existing), "not a folder")


def test_a_missing_sqlite_folder_is_not_created_silently(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "deeper"
    result = run("servers", "list", url=f"sqlite:///{missing}/postroom.db")
    assert_one_sentence(result, "--database", "does not exist", f"mkdir -p {missing}")
    assert not (tmp_path / "typo").exists()


def test_the_default_data_folder_is_created(isolated_user_dirs: Path) -> None:
    result = run("servers", "list")
    assert result.returncode == 0, result.stderr
    assert (isolated_user_dirs / "data" / "postroom" / "postroom.sqlite3").is_file()


def test_import_of_hostile_files_is_one_sentence(sqlite_url: str, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert_one_sentence(run("config", "import", str(bomb), "--dry-run", url=sqlite_url), "alias")
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"postroom_config: 1\nusers: [{username: J\xfcrgen}]\n")
    result = run("config", "import", str(binary), "--dry-run", url=sqlite_url)
    assert_one_sentence(result, "UTF-8")
    deep = tmp_path / "deep.yaml"
    deep.write_text("postroom_config: 1\nusers: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert_one_sentence(run("config", "import", str(deep), "--dry-run", url=sqlite_url), "nests")
