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


@pytest.fixture
async def plain_peer() -> AsyncIterator[tuple[Peer, RecordingHandler]]:
    handler = RecordingHandler()
    peer = await start_smtp(handler)
    yield peer, handler
    await peer.stop()


def assert_one_sentence(code: int, out: str, err: str, *, starts: str) -> None:
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"postroom: {starts}")
    assert lines[0].endswith(".")


@pytest.mark.parametrize("timeout", ["inf", "1e308", "1e9", "0", "-1", "nan"])
async def test_smtp_test_refuses_unusable_timeouts(
    plain_peer: tuple[Peer, RecordingHandler], timeout: str
) -> None:
    # inf, 1e308 and 1e9 never returned; 0, -1 and nan ended in tracebacks.
    peer, _handler = plain_peer
    code, out, err = await postroom(
        "smtp-test",
        "--host",
        "127.0.0.1",
        "--port",
        str(peer.port),
        "--encryption",
        "none",
        "--timeout",
        timeout,
    )
    assert_one_sentence(code, out, err, starts="Timeout: must be a number of seconds")
    assert "from 1 to 600" in err
    assert peer.connections == []


@pytest.mark.parametrize(
    ("option", "field"), [("--mail-from", "Mail From"), ("--rcpt", "Recipient")]
)
async def test_smtp_test_refuses_line_breaks_in_the_envelope(
    plain_peer: tuple[Peer, RecordingHandler], option: str, field: str
) -> None:
    # Before: --mail-from was cut at the line break and the test passed; --rcpt raised at DATA.
    peer, handler = plain_peer
    code, out, err = await postroom(
        "smtp-test",
        "--host",
        "127.0.0.1",
        "--port",
        str(peer.port),
        "--encryption",
        "none",
        option,
        "probe@postroom.test\r\nRCPT TO:<victim@example.net>",
    )
    assert_one_sentence(code, out, err, starts=f"{field}: contains the character U+000D")
    assert peer.connections == []
    assert handler.envelopes == []
