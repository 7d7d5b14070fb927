"""``postroom servers``: every field round-trips through the real console script on all backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTROOM = [sys.executable, "-m", "app"]


def run(
    url: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSTROOM, "--database", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


FULL_SERVER = {
    "name": "US Marketing",
    "host": "smtp.example.com",
    "port": 465,
    "encryption": "ssl",
    "timeout_seconds": 25,
    "auth_enabled": True,
    "username": "mailer@example.com",
    "link_tracking_domain": "click.example.com",
    "open_tracking_domain": "track.example.com",
    "mail_from_domain": "bounces.example.com",
    "enforced_from_email": "news@example.com",
}
SECRET = "s3cret pass-phrase"


def test_servers_add_then_list_round_trips_every_field(db_url: str, tmp_path: Path) -> None:
    # The subprocess has no keyring of ours: give it the vault key explicitly (opt-in path).
    from app.services.vault import generate_vault_key

    env = {"POSTROOM_VAULT_KEY": generate_vault_key()}
    added = run(
        db_url,
        "servers",
        "add",
        FULL_SERVER["name"],
        "--host",
        "smtp.example.com",
        "--port",
        "465",
        "--encryption",
        "ssl",
        "--timeout",
        "25",
        "--username",
        "mailer@example.com",
        "--password-stdin",
        "--link-domain",
        "click.example.com",
        "--open-domain",
        "track.example.com",
        "--mail-from-domain",
        "bounces.example.com",
        "--enforced-from",
        "news@example.com",
        stdin=SECRET + "\n",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    listed = run(db_url, "servers", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    servers = json.loads(listed.stdout)
    assert len(servers) == 1
    server = servers[0]
    for key, value in FULL_SERVER.items():
        assert server[key] == value, key
    assert server["has_password"] is True
    assert server["allocation"] == []
    assert SECRET not in listed.stdout
    assert SECRET not in added.stdout + added.stderr

    # The password is in the database only as ciphertext.
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_encrypted FROM delivery_servers")).scalar_one()
        audit_rows = conn.execute(text("SELECT details FROM audit_log")).scalars().all()
    engine.dispose()
    assert stored and SECRET not in stored
    assert all(SECRET not in (row or "") for row in audit_rows)


def test_global_json_flag_and_env_url(sqlite_url: str) -> None:
    env = {"POSTROOM_DATABASE_URL": sqlite_url}
    proc = subprocess.run(
        [
            *POSTROOM,
            "servers",
            "add",
            "relay",
            "--host",
            "relay.example.net",
            "--port",
            "25",
            "--encryption",
            "none",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [*POSTROOM, "--json", "servers", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert [s["name"] for s in json.loads(proc.stdout)] == ["relay"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--host", "bad host", "--port", "25", "--encryption", "none"], "SMTP Host"),
        (["--host", "smtp.example.com", "--port", "70000", "--encryption", "none"], "SMTP Port"),
        (
            [
                "--host",
                "smtp.example.com",
                "--port",
                "25",
                "--encryption",
                "none",
                "--enforced-from",
                "a@b\r\nBcc: x@y.com",
            ],
            "Enforced From Email",
        ),
        (
            [
                "--host",
                "smtp.example.com",
                "--port",
                "25",
                "--encryption",
                "none",
                "--mail-from-domain",
                "-bad-.com",
            ],
            "Mail From Domain",
        ),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    sqlite_url: str, args: list[str], field: str
) -> None:
    proc = run(sqlite_url, "servers", "add", "x", *args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert field in lines[0]
    assert "Traceback" not in proc.stderr
    listed = run(sqlite_url, "servers", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_version_flag() -> None:
    from app import __version__

    proc = subprocess.run([*POSTROOM, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert __version__ in proc.stdout


def test_unreachable_database_is_one_line() -> None:
    proc = run("postgresql+psycopg://nobody:Hunter2xyz@127.0.0.1:1/none", "servers", "list")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Hunter2xyz" not in proc.stderr
    assert "cannot open the database" in proc.stderr
