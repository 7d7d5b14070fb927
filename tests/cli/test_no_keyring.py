"""A workstation with no keyring at all: the real console script, in fresh processes.

Before, such a process picked the app's own in-memory keyring about half the time (its
priority tied with keyring's fail backend), reported it as usable and "saved" vault keys
and profile passwords that vanished at exit. Each run here is a new process, so keyring's
backend detection is redone every time; several runs show the outcome never varies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, DeliveryServer, Installation
from app.models.database import Database
from app.services.vault import generate_vault_key
from tests.keyring_env import REPO_ROOT, no_keyring_env

POSTROOM = [sys.executable, "-m", "app"]
RUNS = 4  # each a fresh process: keyring's detection is redone every time
NO_KEYRING = "No usable keyring was found"


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    database = ["--database", url] if url is not None else []
    return subprocess.run(
        [*POSTROOM, *database, *args],
        input=stdin,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_refused_in_one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert "Traceback" not in message
    assert message.startswith(f"postroom: {NO_KEYRING}"), message
    assert message.endswith(".")
    assert ". " not in message.rstrip("."), message
    return message


# The two ways a workstation ends up without a keyring that keeps secrets: keyring finds
# nothing at all, or it is made to use a backend that forgets at exit (here by name, as a
# keyring plugin or keyringrc.cfg would).
SITUATIONS = {
    "nothing-found": {},
    "volatile-backend": {"PYTHON_KEYRING_BACKEND": "tests.memory_keyring.MemoryKeyring"},
}


@pytest.fixture(params=list(SITUATIONS))
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "workstation"
    root.mkdir()
    return {**no_keyring_env(root), **SITUATIONS[request.param]}


@pytest.fixture
def headless_env(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "headless"
    root.mkdir()
    return no_keyring_env(root)


def snapshot(url: str) -> dict[str, object]:
    """What a refused command must leave exactly as it was."""
    db = Database(url)
    try:
        with db.session() as session:
            return {
                "servers": session.scalars(select(DeliveryServer.name)).all(),
                "vault_check": session.scalars(select(Installation.vault_check)).one(),
                "audit": session.scalar(select(func.count()).select_from(AuditEntry)),
            }
    finally:
        db.dispose()


def test_vault_status_never_offers_an_in_memory_keyring(
    env: dict[str, str], sqlite_url: str
) -> None:
    reports = []
    for _ in range(RUNS):
        result = run(env, "vault", "status", "--json", url=sqlite_url)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout))
    volatile_configured = "PYTHON_KEYRING_BACKEND" in env
    for report in reports:
        assert report["keyring_usable"] is False, report
        if volatile_configured:  # named, so the user sees what to change, and refused
            assert "lost when Postroom exits" in report["keyring_problem"], report
        else:
            assert "memory" not in report["keyring_backend"].lower(), report
            assert report["keyring_problem"], report
    # Deterministic: every process chose the same backend for the same reason.
    assert len({(r["keyring_backend"], r["keyring_problem"]) for r in reports}) == 1


def test_shipped_code_registers_no_keyring_backend(headless_env: dict[str, str]) -> None:
    """keyring considers every imported KeyringBackend subclass; ours must offer none."""
    probe = (
        "import importlib, pkgutil, json\n"
        "import app.cli, app.services\n"
        "for info in pkgutil.iter_modules(app.services.__path__):\n"
        "    importlib.import_module('app.services.' + info.name)\n"
        "from keyring.backend import get_all_keyring\n"
        "print(json.dumps([type(k).__module__ for k in get_all_keyring()]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=headless_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert not [m for m in modules if m == "app" or m.startswith(("app.", "tests"))], modules


@pytest.mark.databases
def test_servers_add_with_a_password_is_refused_and_writes_nothing(
    env: dict[str, str], db_url: str
) -> None:
    before = snapshot(db_url)
    result = run(
        env,
        "servers",
        "add",
        "Relay",
        "--host",
        "smtp.example.com",
        "--username",
        "mailer",
        "--password-stdin",
        stdin="smtp-secret\n",
        url=db_url,
    )
    message = assert_refused_in_one_sentence(result)
    for alternative in ("POSTROOM_VAULT_KEY", "POSTROOM_VAULT_KEY_FILE", "Secret Service"):
        assert alternative in message
    assert "smtp-secret" not in result.stdout + result.stderr
    assert snapshot(db_url) == before


def test_the_named_alternative_works_without_a_keyring(
    headless_env: dict[str, str], sqlite_url: str
) -> None:
    headless_env["POSTROOM_VAULT_KEY"] = generate_vault_key()
    added = run(
        headless_env,
        "servers",
        "add",
        "Relay",
        "--host",
        "smtp.example.com",
        "--username",
        "mailer",
        "--password-stdin",
        stdin="smtp-secret\n",
        url=sqlite_url,
    )
    assert added.returncode == 0, added.stderr
    shown = json.loads(
        run(headless_env, "servers", "show", "Relay", "--json", url=sqlite_url).stdout
    )
    assert shown["has_password"] is True


@pytest.mark.parametrize("via", ["url", "stdin"])
def test_profiles_add_with_a_password_is_refused_and_saves_nothing(
    env: dict[str, str], via: str
) -> None:
    if via == "url":
        args, stdin = ["postgresql://admin:db-secret@db.example.com/postroom"], None
    else:
        args = ["postgresql://admin@db.example.com/postroom", "--password-stdin"]
        stdin = "db-secret\n"
    result = run(env, "profiles", "add", "prod", *args, stdin=stdin)
    message = assert_refused_in_one_sentence(result)
    assert "without its password" in message
    assert "Saved" not in result.stdout
    assert "db-secret" not in result.stdout + result.stderr
    config = Path(env["XDG_CONFIG_HOME"])
    assert not any(path.is_file() for path in config.rglob("*"))
    listed = run(env, "profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_profile_without_a_password_still_works(headless_env: dict[str, str]) -> None:
    saved = run(headless_env, "profiles", "add", "local", "sqlite:////srv/postroom.sqlite3")
    assert saved.returncode == 0, saved.stderr
    listed = json.loads(run(headless_env, "profiles", "list", "--json").stdout)
    assert [p["name"] for p in listed] == ["local"]


def test_lost_explicit_key_then_documented_reset(
    headless_env: dict[str, str], sqlite_url: str
) -> None:
    """Headless admin: key A given explicitly, then lost; reset with key B is the way out."""
    headless_env["POSTROOM_VAULT_KEY"] = generate_vault_key()
    for name in ("Alpha", "Beta"):
        added = run(
            headless_env,
            "servers",
            "add",
            name,
            "--host",
            "smtp.example.com",
            "--username",
            "mailer",
            "--password-stdin",
            stdin=f"{name}-secret\n",
            url=sqlite_url,
        )
        assert added.returncode == 0, added.stderr

    headless_env["POSTROOM_VAULT_KEY"] = generate_vault_key()  # key A is gone
    edit = ["servers", "edit", "Alpha", "--password-stdin"]
    refused = run(headless_env, *edit, stdin="new-secret\n", url=sqlite_url)
    assert refused.returncode == 1
    assert "does not match this database" in refused.stderr

    unconfirmed = run(headless_env, "vault", "reset", stdin="", url=sqlite_url)
    assert unconfirmed.returncode == 1
    assert "--yes" in unconfirmed.stderr
    assert "2 stored password(s)" in unconfirmed.stderr

    reset = run(headless_env, "vault", "reset", "--yes", "--json", url=sqlite_url)
    assert reset.returncode == 0, reset.stderr
    report = json.loads(reset.stdout)
    assert report["key_source"] == "env"
    assert report["cleared"] == [
        {"entity": "delivery_server", "name": "Alpha"},
        {"entity": "delivery_server", "name": "Beta"},
    ]
    shown = json.loads(
        run(headless_env, "servers", "show", "Beta", "--json", url=sqlite_url).stdout
    )
    assert shown["has_password"] is False

    again = run(headless_env, *edit, stdin="new-secret\n", url=sqlite_url)
    assert again.returncode == 0, again.stderr
    audit = json.loads(
        run(headless_env, "audit", "--json", "--entity", "vault", url=sqlite_url).stdout
    )
    assert [(e["action"], e["entity"]) for e in audit] == [("reset", "vault")]

    human = run(headless_env, "vault", "reset", "--yes", url=sqlite_url)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [
        "Started a new vault for this database; its key is the one in POSTROOM_VAULT_KEY.",
        "Enter these passwords again (e.g. `postroom servers edit NAME --password-stdin`):",
        "  delivery server 'Alpha'",
    ]
