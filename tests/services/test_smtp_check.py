"""The staged SMTP test against real SMTP servers on 127.0.0.1 (see tests/smtp_peers.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from app.models import AuditEntry, DeliveryServer, TestStatus
from app.models.database import Database
from app.services import servers, validation
from app.services.errors import SmtpStageFailed, ValidationError, VaultKeyError
from app.services.smtp_check import record_result, run_smtp_check, target_for_server
from app.services.smtp_report import PasswordRedactor, SmtpCheckReport, SmtpTarget, StageResult
from tests.smtp_peers import (
    EXPIRED_ON,
    LOCALHOST,
    OTHER_NAME,
    SERVER_NAME,
    Accounts,
    Peer,
    Pki,
    RecordingHandler,
    flood_ehlo,
    greet_421,
    make_pki,
    server_context,
    start_raw,
    start_smtp,
    stay_silent,
)

SHORT = 1.0  # seconds: the timeout of tests that wait for one; the least a target accepts
NORMAL = 5.0  # seconds: everything answers at once on 127.0.0.1; this only bounds a hang
USERNAME = "mailer@postroom.test"
PASSWORD = "Zq7!distinctive-Pa55word-4f1e"
RCPT = "someone@postroom.test"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    """Servers started by a test; all stopped (connections closed) at its end."""
    started: list[Peer] = []
    yield started
    for peer in started:
        await peer.stop()


def target(peer: Peer, pki: Pki | None = None, **options: object) -> SmtpTarget:
    settings: dict[str, object] = {
        "host": LOCALHOST,
        "port": peer.port,
        "encryption": "none",
        "timeout": NORMAL,
        "server_hostname": SERVER_NAME,
        "mail_from_domain": "bounces.postroom.test",
        "cafile": str(pki.ca) if pki else None,
    }
    settings.update(options)
    return SmtpTarget(**settings)  # type: ignore[arg-type]


async def check(smtp_target: SmtpTarget, **kwargs: object) -> SmtpCheckReport:
    # A hang guard, not a timing assertion: a broken check fails here instead of hanging CI.
    async with asyncio.timeout(30):
        return await run_smtp_check(smtp_target, **kwargs)  # type: ignore[arg-type]


def names(report: SmtpCheckReport) -> list[str]:
    return [stage.name for stage in report.stages]


def assert_no_password(report: SmtpCheckReport, *texts: str) -> None:
    forms = [
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(b"\0" + USERNAME.encode() + b"\0" + PASSWORD.encode()).decode(),
    ]
    for text in (json.dumps(report.as_dict()), repr(report), *texts):
        for form in forms:
            assert form not in text


# --------------------------------------------------------------------------- success paths


async def test_plain_session_sends_a_real_test_message(peers: list[Peer]) -> None:
    handler = RecordingHandler()
    peers.append(peer := await start_smtp(handler))
    seen: list[StageResult] = []

    report = await check(target(peer), rcpt=RCPT, progress=seen.append)

    assert report.ok, report.as_dict()
    assert names(report) == [
        "resolve",
        "connect",
        "banner",
        "ehlo",
        "mail_from",
        "rcpt",
        "data",
        "quit",
    ]
    assert seen == report.stages  # the GUI saw every stage as it completed
    assert all(stage.ok and stage.ms >= 0 for stage in report.stages)
    assert report.stage("banner").detail.startswith("220 ")  # type: ignore[union-attr]
    assert report.stage("mail_from").detail.startswith("250")  # type: ignore[union-attr]
    assert report.tls is None and report.failed_stage is None and report.hint is None

    (message,) = handler.messages
    assert message["Subject"] == "Postroom SMTP test"
    assert message["From"] == "postroom-test@bounces.postroom.test"
    assert message["To"] == RCPT
    assert message["Message-ID"].endswith("@bounces.postroom.test>")
    assert message["Date"]
    assert handler.envelopes[0].mail_from == "postroom-test@bounces.postroom.test"


async def test_report_dict_has_exactly_the_documented_shape(peers: list[Peer]) -> None:
    peers.append(peer := await start_smtp(RecordingHandler()))
    report = await check(target(peer), mail_from="ops@postroom.test")
    data = json.loads(report.to_json())
    assert set(data) == {"ok", "failed_stage", "hint", "stages", "tls", "auth_mechanisms"}
    assert all(set(stage) == {"name", "ok", "ms", "detail"} for stage in data["stages"])
    assert names(report)[-2:] == ["mail_from", "quit"]  # no rcpt given: no rcpt, no data
    report.raise_for_failure()  # ok: nothing raised


async def test_starttls_verified_against_a_trusted_ca(peers: list[Peer], pki: Pki) -> None:
    peers.append(peer := await start_smtp(RecordingHandler(), starttls=server_context(pki.good)))
    report = await check(target(peer, pki, encryption="tls"), rcpt=RCPT)

    assert report.ok, report.as_dict()
    assert names(report) == [
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
    assert report.tls is not None
    assert report.tls.version and report.tls.version.startswith("TLSv1.")
    assert report.tls.cipher
    assert report.tls.subject and SERVER_NAME in report.tls.subject
    assert report.tls.issuer and "Postroom Test CA" in report.tls.issuer
    assert report.tls.not_after
    assert report.tls.verified and not report.tls.insecure_used
    starttls = report.stage("starttls")
    assert starttls is not None and starttls.detail.startswith("220")
    assert f"verified for {SERVER_NAME}" in starttls.detail


async def test_tls_on_connect_has_its_own_handshake_stage(peers: list[Peer], pki: Pki) -> None:
    peers.append(
        peer := await start_smtp(RecordingHandler(), tls_on_connect=server_context(pki.good))
    )
    report = await check(target(peer, pki, encryption="ssl"), rcpt=RCPT)

    assert report.ok, report.as_dict()
    assert names(report) == [
        "resolve",
        "connect",
        "tls",
        "banner",
        "ehlo",
        "mail_from",
        "rcpt",
        "data",
        "quit",
    ]
    assert report.tls is not None and report.tls.verified
    assert report.tls.subject and SERVER_NAME in report.tls.subject
    assert report.stage("banner").detail.startswith("220 ")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("exclude", "used"), [((), "PLAIN"), (("PLAIN",), "LOGIN")], ids=["plain", "login"]
)
async def test_auth_succeeds_and_never_shows_the_password(
    peers: list[Peer], pki: Pki, caplog: pytest.LogCaptureFixture, exclude: tuple[str], used: str
) -> None:
    caplog.set_level(logging.DEBUG)
    accounts = Accounts(USERNAME, PASSWORD)
    peers.append(
        peer := await start_smtp(
            RecordingHandler(),
            starttls=server_context(pki.good),
            authenticator=accounts,
            auth_exclude=exclude,
        )
    )
    smtp_target = target(peer, pki, encryption="tls", username=USERNAME, password=PASSWORD)
    report = await check(smtp_target, rcpt=RCPT)

    assert report.ok, report.as_dict()
    assert "auth" in names(report)
    assert used in report.auth_mechanisms
    assert accounts.attempts == [used]  # one mechanism tried, not every one offered
    auth = report.stage("auth")
    assert auth is not None and auth.detail.startswith("235") and used in auth.detail
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("app."))
    assert ours  # the check does log its stages
    assert_no_password(report, repr(smtp_target), str(smtp_target), ours)


@pytest.mark.parametrize("echo", [False, True], ids=["plain-535", "535-quoting-the-password"])
async def test_auth_rejected_names_the_credentials_without_the_password(
    peers: list[Peer], pki: Pki, caplog: pytest.LogCaptureFixture, echo: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    accounts = Accounts(USERNAME, "the right one", echo=echo)
    peers.append(
        peer := await start_smtp(
            RecordingHandler(), starttls=server_context(pki.good), authenticator=accounts
        )
    )
    report = await check(target(peer, pki, encryption="tls", username=USERNAME, password=PASSWORD))

    assert not report.ok
    assert report.failed_stage == "auth"
    assert report.stage("auth").detail.startswith("535")  # type: ignore[union-attr]
    assert report.hint and "username or password" in report.hint and "535" in report.hint
    assert len(accounts.attempts) == 1  # a failed test costs the account one failure only
    if echo:  # the server's reply is kept, with the password it quoted blanked out
        assert "Bad password" in report.stage("auth").detail  # type: ignore[union-attr]
    with pytest.raises(SmtpStageFailed) as raised:
        report.raise_for_failure()
    assert raised.value.stage == "auth"
    # caplog.text would include aiosmtpd's own log (the server side): only ours counts.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("app."))
    assert_no_password(report, str(raised.value), repr(raised.value), ours)


async def test_auth_required_but_not_configured(peers: list[Peer], pki: Pki) -> None:
    peers.append(
        peer := await start_smtp(
            RecordingHandler(),
            starttls=server_context(pki.good),
            authenticator=Accounts(USERNAME, PASSWORD),
        )
    )
    report = await check(target(peer, pki, encryption="tls"))

    assert report.failed_stage == "mail_from"
    assert report.stage("mail_from").detail.startswith("530")  # type: ignore[union-attr]
    assert report.hint and report.hint.startswith("AUTH required but not configured")
    assert {"PLAIN", "LOGIN"} <= set(report.auth_mechanisms)


# --------------------------------------------------------------------------- certificates


async def test_self_signed_certificate_fails_verification(peers: list[Peer], pki: Pki) -> None:
    peers.append(
        peer := await start_smtp(RecordingHandler(), starttls=server_context(pki.self_signed))
    )
    report = await check(target(peer, pki, encryption="tls"))

    assert report.failed_stage == "starttls"
    assert "certificate verification failed" in report.stage("starttls").detail  # type: ignore[union-attr]
    assert report.hint and "self-signed" in report.hint
    assert "Allow unverified certificate" in report.hint and "install" in report.hint
    assert report.tls is None


async def test_insecure_accepts_a_self_signed_certificate_and_says_so(
    peers: list[Peer], pki: Pki
) -> None:
    peers.append(
        peer := await start_smtp(RecordingHandler(), starttls=server_context(pki.self_signed))
    )
    report = await check(target(peer, pki, encryption="tls", insecure=True))

    assert report.ok, report.as_dict()
    assert report.tls is not None
    assert report.tls.insecure_used and not report.tls.verified
    assert report.tls.subject and SERVER_NAME in report.tls.subject  # read even unverified
    assert "NOT verified" in report.stage("starttls").detail  # type: ignore[union-attr]


async def test_self_signed_certificate_on_connect(peers: list[Peer], pki: Pki) -> None:
    peers.append(
        peer := await start_smtp(RecordingHandler(), tls_on_connect=server_context(pki.self_signed))
    )
    report = await check(target(peer, pki, encryption="ssl"))
    assert report.failed_stage == "tls"
    assert names(report) == ["resolve", "connect", "tls"]
    assert report.hint and "self-signed" in report.hint


async def test_expired_certificate_hint_names_the_date(peers: list[Peer], pki: Pki) -> None:
    peers.append(peer := await start_smtp(RecordingHandler(), starttls=server_context(pki.expired)))
    report = await check(target(peer, pki, encryption="tls"))

    assert report.failed_stage == "starttls"
    assert report.hint and f"expired on {EXPIRED_ON:%Y-%m-%d}" in report.hint


async def test_certificate_for_another_name_is_named(peers: list[Peer], pki: Pki) -> None:
    peers.append(
        peer := await start_smtp(RecordingHandler(), tls_on_connect=server_context(pki.wrong_name))
    )
    report = await check(target(peer, pki, encryption="ssl"))

    assert report.failed_stage == "tls"
    assert report.hint and OTHER_NAME in report.hint and SERVER_NAME in report.hint


# --------------------------------------------------------------------------- misconfigurations


async def test_421_greeting(peers: list[Peer]) -> None:
    peers.append(peer := await start_raw(greet_421))
    report = await check(target(peer))

    assert report.failed_stage == "banner"
    assert report.stage("banner").detail.startswith("421")  # type: ignore[union-attr]
    assert report.hint and "busy" in report.hint


async def test_silent_server_times_out_at_the_banner(peers: list[Peer]) -> None:
    peers.append(peer := await start_raw(stay_silent))
    report = await check(target(peer, timeout=SHORT))

    assert report.failed_stage == "banner"
    assert names(report) == ["resolve", "connect", "banner"]
    assert report.stage("banner").detail == f"no answer within {SHORT:g} s"  # type: ignore[union-attr]
    assert report.hint and "timeout" in report.hint


async def test_tls_on_connect_server_tested_as_starttls_suggests_ssl(
    peers: list[Peer], pki: Pki
) -> None:
    # The port-465 mistake: TLS from the first byte, configured as TLS (STARTTLS).
    peers.append(
        peer := await start_smtp(RecordingHandler(), tls_on_connect=server_context(pki.good))
    )
    report = await check(target(peer, pki, encryption="tls", timeout=SHORT))

    assert report.failed_stage == "banner"
    assert report.hint and "Encryption to SSL" in report.hint


async def test_plain_server_tested_as_ssl_suggests_starttls(peers: list[Peer], pki: Pki) -> None:
    peers.append(peer := await start_smtp(RecordingHandler()))
    report = await check(target(peer, pki, encryption="ssl"))

    assert report.failed_stage == "tls"
    assert report.hint and "plain text" in report.hint and "TLS (STARTTLS)" in report.hint


async def test_starttls_not_offered(peers: list[Peer], pki: Pki) -> None:
    peers.append(peer := await start_smtp(RecordingHandler()))
    report = await check(target(peer, pki, encryption="tls"))

    assert report.failed_stage == "starttls"
    assert report.hint and "does not offer STARTTLS" in report.hint


async def test_sender_domain_refused(peers: list[Peer]) -> None:
    handler = RecordingHandler(mail_reply="553 5.7.1 Sender domain not allowed")
    peers.append(peer := await start_smtp(handler))
    report = await check(target(peer), rcpt=RCPT)

    assert report.failed_stage == "mail_from"
    assert report.stage("mail_from").detail == "553 5.7.1 Sender domain not allowed"  # type: ignore[union-attr]
    assert report.hint and "bounces.postroom.test" in report.hint and "sender" in report.hint
    assert names(report)[-1] == "mail_from"  # stopped at the first failure


@pytest.mark.parametrize("stage", ["mail_from", "rcpt"])
async def test_greylisting_says_try_later(peers: list[Peer], stage: str) -> None:
    reply = "451 4.7.1 Greylisted, please try again later"
    handler = RecordingHandler(**{f"{stage.split('_')[0]}_reply": reply})
    peers.append(peer := await start_smtp(handler))
    report = await check(target(peer), rcpt=RCPT)

    assert report.failed_stage == stage
    assert report.hint and "greylisting" in report.hint and "again later" in report.hint


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and no one takes it."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        yield sock.getsockname()[1]


async def test_connection_refused(closed_port: int) -> None:
    report = await check(SmtpTarget(LOCALHOST, closed_port, "none", timeout=NORMAL))
    assert report.failed_stage == "connect"
    assert names(report) == ["resolve", "connect"]
    assert report.hint and "refused" in report.hint


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered, as behind a dropping firewall.

    Linux drops a SYN while the listener's accept queue is full: with a backlog of 0 and
    connections that are never accepted, the next one neither succeeds nor is refused.
    """
    with socket.socket() as server:
        server.bind((LOCALHOST, 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex((LOCALHOST, port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


async def test_connect_timeout_points_at_the_firewall(unanswered_port: int) -> None:
    report = await check(SmtpTarget(LOCALHOST, unanswered_port, "none", timeout=SHORT))
    assert report.failed_stage == "connect"
    assert report.stage("connect").detail == f"no answer within {SHORT:g} s"  # type: ignore[union-attr]
    assert report.hint and "firewall" in report.hint and "allow-list" in report.hint
    assert "raise the timeout" in report.hint


async def test_dns_failure() -> None:
    report = await check(SmtpTarget("no-such-host.invalid", 25, "none", timeout=2))
    assert report.failed_stage == "resolve"
    assert report.hint and "DNS" in report.hint


@given(
    password=st.text(min_size=8, max_size=40).filter(lambda p: p.strip("*")),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_redaction_leaves_no_password_in_any_text(password: str, before: str, after: str) -> None:
    # What a server could echo back: the password itself or the AUTH PLAIN payload.
    plain = base64.b64encode(b"\0" + USERNAME.encode() + b"\0" + password.encode()).decode()
    redact = PasswordRedactor(USERNAME, password)
    for text in (before + password + after, f"{before}{plain}{after}", password * 3):
        assert password not in redact(text)
        assert plain not in redact(text)


# --------------------------------------------------------------------------- storage


class FakeCipher:
    def encrypt(self, plaintext: str) -> str:
        return "enc:" + plaintext[::-1]

    def decrypt(self, token: str) -> str:
        return token.removeprefix("enc:")[::-1]


def test_target_for_server_decrypts_only_for_the_session(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as s:
        server = servers.create_server(
            s,
            {
                "name": "Relay",
                "host": "smtp.postroom.test",
                "port": 465,
                "encryption": "ssl",
                "timeout_seconds": 7,
                "username": USERNAME,
                "allow_unverified_certificate": True,
                "mail_from_domain": "bounces.postroom.test",
            },
            password=PASSWORD,
            cipher=FakeCipher(),
        )
        smtp_target = target_for_server(server, FakeCipher())
        assert (smtp_target.host, smtp_target.port, smtp_target.timeout) == (
            "smtp.postroom.test",
            465,
            7.0,
        )
        assert smtp_target.encryption == "ssl" and smtp_target.insecure
        assert (smtp_target.username, smtp_target.password) == (USERNAME, PASSWORD)
        assert smtp_target.mail_from_domain == "bounces.postroom.test"
        assert PASSWORD not in repr(smtp_target)
        with pytest.raises(VaultKeyError):
            target_for_server(server, None)


async def test_record_result_stores_the_report_without_bumping_the_version(
    peers: list[Peer], sqlite_database: Database, pki: Pki
) -> None:
    accounts = Accounts(USERNAME, PASSWORD)
    peers.append(
        peer := await start_smtp(
            RecordingHandler(), starttls=server_context(pki.good), authenticator=accounts
        )
    )
    with sqlite_database.transaction() as s:
        server = servers.create_server(
            s,
            {"name": "Relay", "host": LOCALHOST, "port": peer.port, "username": USERNAME},
            password=PASSWORD,
            cipher=FakeCipher(),
        )
        version = server.version
        smtp_target = target_for_server(server, FakeCipher())
    report = await check(
        SmtpTarget(
            **{**smtp_target.__dict__, "server_hostname": SERVER_NAME, "cafile": str(pki.ca)}
        )
    )
    assert report.ok, report.as_dict()

    with sqlite_database.transaction() as s:
        stored = record_result(s, "Relay", report)
        assert stored.last_test_status == TestStatus.OK  # the loaded object is refreshed
    with sqlite_database.session() as s:
        row = s.scalars(select(DeliveryServer).where(DeliveryServer.name == "Relay")).one()
        assert row.last_test_status == TestStatus.OK
        assert row.last_test_at is not None
        assert row.version == version  # a test is not an edit: open edit forms stay valid
        assert row.last_test_report and PASSWORD not in row.last_test_report
        assert json.loads(row.last_test_report) == report.as_dict()
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "test")).one()
        assert (entry.entity, entry.entity_key) == ("delivery_server", "Relay")
        assert json.loads(entry.details or "{}") == {"ok": True, "failed_stage": None}


async def test_record_result_of_a_failure(
    sqlite_database: Database, closed_port: int, tmp_path: Path
) -> None:
    with sqlite_database.transaction() as s:
        servers.create_server(s, {"name": "Down", "host": LOCALHOST, "port": closed_port})
    report = await check(SmtpTarget(LOCALHOST, closed_port, "none", timeout=NORMAL))
    with sqlite_database.transaction() as s:
        record_result(s, "Down", report)
    with sqlite_database.session() as s:
        row = servers.get_server(s, "Down")
        assert row.last_test_status == TestStatus.FAILED
        assert json.loads(row.last_test_report or "{}")["failed_stage"] == "connect"


# --------------------------------------------------------------------------- refused input

TIMEOUT_REFUSAL = "Timeout: must be a number of seconds from 1 to 600."
UNUSABLE_TIMEOUTS = [float("inf"), "inf", 1e308, "1e308", 1e9, 0, -1, "-1", float("nan"), "nan"]


@pytest.mark.parametrize("timeout", UNUSABLE_TIMEOUTS, ids=repr)
def test_unusable_timeout_is_refused_in_one_sentence(timeout: object) -> None:
    # inf and 1e308 never returned (no stage could time out); 0, -1 and nan were tracebacks.
    with pytest.raises(ValidationError) as refused:
        SmtpTarget(LOCALHOST, 25, "none", timeout=timeout)  # type: ignore[arg-type]
    assert str(refused.value) == TIMEOUT_REFUSAL


@pytest.mark.parametrize("timeout", [1, 1.0, 2.5, "30", 600])
def test_timeouts_stored_servers_allow_are_accepted(timeout: object) -> None:
    smtp_target = SmtpTarget(LOCALHOST, 25, "none", timeout=timeout)  # type: ignore[arg-type]
    assert smtp_target.timeout == float(timeout)  # type: ignore[arg-type]
    assert isinstance(smtp_target.timeout, float)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_smtp_timeout_accepts_exactly_the_stored_range(value: float) -> None:
    in_range = 1 <= value <= 600  # False for NaN
    for given_as in (value, str(value)):
        if in_range:
            assert validation.smtp_timeout(given_as) == float(value)
        else:
            with pytest.raises(ValidationError) as refused:
                validation.smtp_timeout(given_as)
            assert str(refused.value) == TIMEOUT_REFUSAL


@given(st.one_of(st.booleans(), st.none(), st.text().filter(lambda t: not _is_number(t))))
def test_smtp_timeout_refuses_what_is_not_a_number(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        validation.smtp_timeout(value)
    assert str(refused.value) == TIMEOUT_REFUSAL


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


SMUGGLED = [
    "probe@postroom.test\r\nRCPT TO:<victim@example.net>",
    "probe@postroom.test\n",
    "probe@postroom.test\r",
    "probe@\x00postroom.test",
]


@pytest.mark.parametrize("address", SMUGGLED, ids=repr)
@pytest.mark.parametrize(("option", "field"), [("mail_from", "Mail From"), ("rcpt", "Recipient")])
async def test_line_breaks_in_envelope_are_refused_before_connecting(
    peers: list[Peer], option: str, field: str, address: str
) -> None:
    # Before: --mail-from was cut at the line break and the test passed; --rcpt raised at DATA.
    handler = RecordingHandler()
    peers.append(peer := await start_smtp(handler))
    with pytest.raises(ValidationError) as refused:
        await check(target(peer), **{option: address})
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: contains the character U+00")
    assert "\n" not in str(refused.value) and "\r" not in str(refused.value)
    assert peer.connections == []  # nothing was sent, not even a connection made
    assert handler.envelopes == []


async def test_plain_addresses_still_reach_the_server(peers: list[Peer]) -> None:
    handler = RecordingHandler()
    peers.append(peer := await start_smtp(handler))
    report = await check(target(peer), mail_from=" probe@postroom.test ", rcpt=RCPT)
    assert report.ok, report.hint
    assert handler.envelopes[0].mail_from == "probe@postroom.test"
    assert handler.envelopes[0].rcpt_tos == [RCPT]


async def test_endless_ehlo_reply_is_named_for_what_it_is(peers: list[Peer]) -> None:
    # A 100,000-line EHLO reply (tests.smtp_peers.flood_ehlo) was hinted "refused ehlo with -1".
    peers.append(peer := await start_raw(flood_ehlo))
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await check(target(peer))
    assert loop.time() - started < NORMAL  # the client stops reading; it does not wait out
    assert report.failed_stage == "ehlo"
    assert names(report) == ["resolve", "connect", "banner", "ehlo"]
    assert report.hint is not None
    assert "refused" not in report.hint and "-1" not in report.hint
    assert report.hint.startswith("The server's reply to EHLO was too long to be an SMTP reply")
    assert f"port {peer.port}" in report.hint
