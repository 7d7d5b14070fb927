"""``postroom smtp-test`` and ``postroom servers test`` through the real entry point.

The SMTP peers are real aiosmtpd servers in this test's event loop, so the CLI runs as an
asyncio subprocess (a blocking subprocess call would stall the very server it talks to).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.smtp_peers import (
    Accounts,
    Peer,
    RecordingHandler,
    _write,
    make_ca,
    make_leaf,
    server_context,
    start_smtp,
)

USERNAME = "relay-user"
PASSWORD = "Zx9!cli-check-secret"
STAGE_NAMES = {
    "resolve",
    "connect",
    "banner",
    "ehlo",
    "starttls",
    "tls",
    "auth",
    "mail_from",
    "rcpt",
    "data",
    "quit",
}


async def postroom(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate(stdin.encode() if stdin else None)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def localhost_starttls(tmp_path: Path) -> AsyncIterator[tuple[Peer, Path, RecordingHandler]]:
    """STARTTLS + AUTH server whose certificate, from a private CA, names localhost."""
    ca = make_ca("CLI Test CA")
    ca_path = tmp_path / "ca.crt"
    from cryptography.hazmat.primitives import serialization

    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    cert, key = make_leaf(["localhost"], issuer=ca)
    files = _write(tmp_path, "localhost", cert, key)
    handler = RecordingHandler()
    peer = await start_smtp(
        handler, starttls=server_context(files), authenticator=Accounts(USERNAME, PASSWORD)
    )
    yield peer, ca_path, handler
    await peer.stop()


def assert_shape(report: dict[str, object]) -> None:
    assert set(report) >= {"ok", "failed_stage", "hint", "stages", "tls"}
    stages = report["stages"]
    assert isinstance(stages, list) and stages
    for stage in stages:
        assert set(stage) >= {"name", "ok", "ms", "detail"}
        assert stage["name"] in STAGE_NAMES


async def test_smtp_test_json_success_and_exit_code(
    localhost_starttls: tuple[Peer, Path, RecordingHandler],
) -> None:
    peer, ca_path, handler = localhost_starttls
    code, out, err = await postroom(
        "smtp-test",
        "--host",
        "localhost",
        "--port",
        str(peer.port),
        "--encryption",
        "tls",
        "--username",
        USERNAME,
        "--password-stdin",
        "--cafile",
        str(ca_path),
        "--mail-from",
        "probe@postroom.test",
        "--rcpt",
        "inbox@postroom.test",
        "--json",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    report = json.loads(out)
    assert_shape(report)
    assert report["ok"] is True and report["failed_stage"] is None
    assert [s["name"] for s in report["stages"]][-1] == "quit"
    assert report["tls"]["verified"] is True
    assert PASSWORD not in out + err
    assert len(handler.envelopes) == 1


async def test_smtp_test_wrong_password_fails_at_auth(
    localhost_starttls: tuple[Peer, Path, RecordingHandler],
) -> None:
    peer, ca_path, _ = localhost_starttls
    code, out, err = await postroom(
        "--json",
        "smtp-test",
        "--host",
        "localhost",
        "--port",
        str(peer.port),
        "--encryption",
        "tls",
        "--username",
        USERNAME,
        "--password-stdin",
        "--cafile",
        str(ca_path),
        stdin="not-the-password\n",
    )
    assert code == 1
    report = json.loads(out)
    assert_shape(report)
    assert report["failed_stage"] == "auth"
    assert report["hint"]
    assert "not-the-password" not in out + err


async def test_servers_test_records_the_result(
    localhost_starttls: tuple[Peer, Path, RecordingHandler], sqlite_url: str
) -> None:
    from app.services.vault import generate_vault_key

    peer, ca_path, _ = localhost_starttls
    env = {"POSTROOM_VAULT_KEY": generate_vault_key()}
    code, _, err = await postroom(
        "--database",
        sqlite_url,
        "servers",
        "add",
        "Local",
        "--host",
        "localhost",
        "--port",
        str(peer.port),
        "--encryption",
        "tls",
        "--username",
        USERNAME,
        "--password-stdin",
        "--mail-from-domain",
        "postroom.test",
        stdin=PASSWORD + "\n",
        env=env,
    )
    assert code == 0, err
    code, out, err = await postroom(
        "--database",
        sqlite_url,
        "servers",
        "test",
        "Local",
        "--cafile",
        str(ca_path),
        "--json",
        env=env,
    )
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    code, out, _ = await postroom("--database", sqlite_url, "servers", "list", "--json", env=env)
    listed = json.loads(out)[0]
    assert listed["last_test_status"] == "ok"
    assert listed["last_test_at"]

    # Without the CA the certificate does not verify: failed, recorded, hint says why.
    code, out, _ = await postroom(
        "--database", sqlite_url, "servers", "test", "Local", "--json", env=env
    )
    assert code == 1
    report = json.loads(out)
    assert report["failed_stage"] == "starttls" or report["failed_stage"] == "tls"
    assert "certificate" in report["hint"].lower()
    code, out, _ = await postroom("--database", sqlite_url, "servers", "list", "--json", env=env)
    assert json.loads(out)[0]["last_test_status"] == "failed"
    assert PASSWORD not in out
