"""The staged SMTP test against a real Postfix with STARTTLS (scripts/postfix-test-server).

aiosmtpd (tests/services/test_smtp_check.py) covers every failure; this proves the check against
the MTA most relays actually run. Skipped locally without Postfix or root; a failure under
scripts/test (POSTROOM_REQUIRE_REAL_PEERS=1), which installs the postfix package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.services.smtp_check import run_smtp_check
from app.services.smtp_report import SmtpTarget, StageResult
from tests.conftest import peer_missing
from tests.smtp_peers import LOCALHOST, SERVER_NAME, make_ca, make_leaf

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postfix-test-server"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
TIMEOUT = 10.0  # a bound on a hang only: Postfix on 127.0.0.1 answers in milliseconds


@dataclass(frozen=True)
class PostfixPeer:
    port: int
    ca: Path  # the CA that signed the server's certificate (for SERVER_NAME)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _write_tls(directory: Path) -> Path:
    """The server certificate Postfix uses, signed by a CA that the tests then trust."""
    ca_cert, ca_key = make_ca("Postroom Postfix Test CA")
    cert, key = make_leaf([SERVER_NAME, "localhost"], issuer=(ca_cert, ca_key))
    tls = directory / "tls"
    tls.mkdir(parents=True)
    (tls / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tls / "server.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca = directory / "test-ca.crt"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixPeer]:
    if not os.access(POSTFIX, os.X_OK):
        peer_missing("postfix is not installed (apt-get install postfix, 'No configuration')")
    if os.geteuid() != 0:
        peer_missing("the Postfix test server needs root (its master starts as root)")
    # Not under pytest's tmp_path: that is 0700, and Postfix's processes (user postfix)
    # must be able to enter the instance directory.
    directory = Path(tempfile.mkdtemp(prefix="postroom-postfix-"))
    try:
        ca = _write_tls(directory)
        port = _free_port()
        started = subprocess.run(
            [str(SCRIPT), "start", str(port), str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if started.returncode != 0:
            pytest.fail(f"scripts/postfix-test-server failed:\n{started.stdout}{started.stderr}")
        try:
            yield PostfixPeer(port=port, ca=ca)
        finally:
            subprocess.run(
                [str(SCRIPT), "stop", str(port), str(directory)],
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def postfix_target(peer: PostfixPeer, *, cafile: Path | None) -> SmtpTarget:
    return SmtpTarget(
        host=LOCALHOST,
        port=peer.port,
        encryption="tls",
        timeout=TIMEOUT,
        server_hostname=SERVER_NAME,
        cafile=str(cafile) if cafile else None,
        mail_from_domain="bounces.postroom.test",
    )


async def test_every_stage_passes_against_postfix_with_starttls(postfix: PostfixPeer) -> None:
    seen: list[StageResult] = []
    report = await run_smtp_check(
        postfix_target(postfix, cafile=postfix.ca),
        rcpt="someone@postroom.test",
        progress=seen.append,
    )

    assert report.ok, report.as_dict()
    assert [s.name for s in report.stages] == [
        "resolve",
        "connect",
        "banner",
        "ehlo",
        "starttls",
        "ehlo",
        "mail_from",
        "rcpt",
        "data",
        "quit",
    ]
    assert all(stage.ok for stage in report.stages) and seen == report.stages
    assert "Postfix" in report.stages[2].detail  # the banner is Postfix's own
    assert "STARTTLS" in report.stages[3].detail
    data = report.stage("data")
    assert data is not None and data.detail.startswith("250") and "queued as" in data.detail
    assert report.tls is not None
    assert report.tls.version and report.tls.version.startswith("TLSv1.")
    assert report.tls.cipher
    assert report.tls.subject and SERVER_NAME in report.tls.subject
    assert report.tls.verified and not report.tls.insecure_used


async def test_postfix_refuses_relaying_and_an_unknown_ca(postfix: PostfixPeer) -> None:
    relay = await run_smtp_check(
        postfix_target(postfix, cafile=postfix.ca), rcpt="someone@elsewhere.example"
    )
    assert relay.failed_stage == "rcpt"
    assert relay.stage("rcpt").detail.startswith("554")  # type: ignore[union-attr]
    assert relay.hint and "someone@elsewhere.example" in relay.hint

    # The system CA store does not know the test CA: verification fails, with the issuer.
    untrusted = await run_smtp_check(postfix_target(postfix, cafile=None))
    assert untrusted.failed_stage == "starttls"
    assert untrusted.hint and "Postroom Postfix Test CA" in untrusted.hint
