"""The fleet's rules that need no Docker engine: which databases engines in containers can
use and how, the secret files, and the supervisord program for extra workers.

Docker Desktop cannot run here, so its ``docker info`` answer is given as the dictionary
the API returns (only ``OperatingSystem`` is read); everything else is real (files,
folders, ownership).
"""

from __future__ import annotations

import os
import shlex
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.engine.fleet import ENGINE_UID, FleetError, FleetSettings, program_config
from app.engine.fleet_samples import parse_docker_time, parse_supervisor_status
from app.engine.fleet_secrets import (
    EngineSecrets,
    is_docker_desktop,
    plan_database,
    write_secret_files,
)

DESKTOP_INFO = {"OperatingSystem": "Docker Desktop", "OSType": "linux"}
LINUX_INFO = {"OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "OSType": "linux"}


def test_docker_desktop_is_told_from_the_engine_info() -> None:
    assert is_docker_desktop(DESKTOP_INFO) is True
    assert is_docker_desktop(LINUX_INFO) is False


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    with pytest.raises(FleetError, match="in-memory SQLite"):
        plan_database(url, desktop=False)


def test_docker_desktop_refuses_sqlite_and_loopback_hosts_and_says_why(tmp_path: Path) -> None:
    for url, what in (
        (f"sqlite:///{tmp_path}/postroom.sqlite3", "a SQLite file"),
        ("postgresql+psycopg://u:p@127.0.0.1/postroom", "loopback address 127.0.0.1"),
        ("mysql+pymysql://u:p@localhost/postroom", "loopback address localhost"),
        ("postgresql+psycopg://u:p@[::1]/postroom", "loopback address"),
    ):
        with pytest.raises(FleetError) as refused:
            plan_database(url, desktop=True)
        sentence = str(refused.value)
        assert what in sentence and "PostgreSQL or MariaDB" in sentence
        assert "virtual machine" in sentence and sentence.count(". ") == 0
        assert ":p@" not in sentence


def test_a_database_by_name_is_fine_on_docker_desktop() -> None:
    url = "postgresql+psycopg://u:secret@db.internal.example/postroom"
    plan = plan_database(url, desktop=True)
    assert plan.url == url and plan.folders == ()
    assert "secret" not in plan.shown


def test_a_sqlite_file_is_mounted_by_its_folder_at_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.chdir(tmp_path)
    plan = plan_database("sqlite:///data/postroom.sqlite3", desktop=False)
    assert plan.folders == (str(folder.resolve()),)
    assert plan.url == f"sqlite:///{folder.resolve()}/postroom.sqlite3"


@pytest.mark.skipif(os.geteuid() != 0, reason="the folder must belong to another user")
def test_a_sqlite_folder_the_engine_cannot_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "private"
    folder.mkdir(mode=0o755)
    with pytest.raises(FleetError, match=f"chown {ENGINE_UID} {folder}"):
        plan_database(f"sqlite:///{folder}/postroom.sqlite3", desktop=False)
    os.chown(folder, ENGINE_UID, ENGINE_UID)
    assert plan_database(f"sqlite:///{folder}/postroom.sqlite3", desktop=False).folders


def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(FleetError, match="names no host"):
        plan_database("postgresql+psycopg:///postroom", desktop=False)


def test_secret_files_are_private_and_only_rewritten_when_changed(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    secrets = EngineSecrets("postgresql+psycopg://u:pw1@db/postroom", "key-one")
    paths = write_secret_files(folder, secrets)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert paths["database_url"].read_text() == "postgresql+psycopg://u:pw1@db/postroom\n"
    assert paths["vault_key"].read_text() == "key-one\n"
    for path in paths.values():
        info = path.stat()
        if os.geteuid() == 0:
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o400, ENGINE_UID)
        else:
            assert stat.S_IMODE(info.st_mode) == 0o444
    inode = paths["vault_key"].stat().st_ino
    write_secret_files(folder, secrets)
    assert paths["vault_key"].stat().st_ino == inode
    write_secret_files(folder, EngineSecrets(secrets.database_url, "key-two"))
    assert paths["vault_key"].read_text() == "key-two\n"
    assert "pw1" not in repr(secrets) and "key-one" not in repr(secrets)


@pytest.mark.parametrize("campaign", ["Spring", "Spring sale 'B' \"50%\" $(rm -rf /)"])
def test_the_workers_program_passes_the_campaign_name_as_one_argument(campaign: str) -> None:
    text = program_config("campaign-7", campaign, 4, "sendengine-2-c7")
    command = next(line for line in text.splitlines() if line.startswith("command="))
    # supervisord expands %(...)s (so %% is a literal %), then splits like a shell
    argv = shlex.split(command.removeprefix("command=").replace("%%", "%"))
    assert argv == [
        "/opt/postroom/bin/postroom",
        "engine",
        "run",
        "--campaign",
        campaign,
        "--concurrency",
        "4",
        "--engine-id",
        "sendengine-2-c7",
    ]
    assert "[program:campaign-7]" in text
    assert 'POSTROOM_DATABASE_URL_FILE="/run/secrets/postroom_database_url"' in text


def test_a_campaign_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(FleetError, match="line break"):
        program_config("campaign-7", "two\nlines", 1, "sendengine-1-c7")


def test_engine_ids_and_names_per_fleet() -> None:
    assert FleetSettings().engine_id(3) == "sendengine-3"
    assert FleetSettings().container_name(3) == "postroom-sendengine-3"
    assert FleetSettings(fleet="blue").engine_id(1) == "blue-sendengine-1"


def test_docker_times_with_nanoseconds_are_read() -> None:
    assert parse_docker_time("2026-12-01T14:26:47.599932814Z") == datetime(
        2026, 12, 1, 14, 26, 47, 599932, tzinfo=UTC
    )
    assert parse_docker_time("0001-01-01T00:00:00Z") is None


def test_supervisor_status_lines_are_read() -> None:
    output = (
        "engine                           RUNNING   pid 8, uptime 0:01:49\n"
        "campaign-4                       BACKOFF   Exited too quickly\n"
        "unix:///tmp/supervisor.sock no such file\n"
    )
    assert parse_supervisor_status(output) == [
        {"name": "engine", "state": "RUNNING"},
        {"name": "campaign-4", "state": "BACKOFF"},
    ]


def test_a_tls_failure_is_named_as_such_not_by_openssl_codes_read_as_errno() -> None:
    """OpenSSL's error code 1 is also EPERM's number: it must not read "permission denied"."""
    import ssl

    from app.engine.docker_api import _reason

    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    assert _reason(verify).startswith("TLS: the engine's certificate is not trusted, ")
    wrapped = OSError("wrapped")
    wrapped.__cause__ = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] alert")
    assert _reason(wrapped).startswith("TLS handshake failed")
    assert _reason(PermissionError(13, "Permission denied")) == "permission denied"
