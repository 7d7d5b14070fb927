"""The engine's SMTP sessions against real servers: pipelined where the server offers
PIPELINING, command by command where it does not, with the same outcomes either way.

Servers: aiosmtpd on this test's loop (offering PIPELINING through its EHLO hook, or not;
it reads pipelined commands in order, as any server must), Postfix's ``smtp-sink`` and a
private Postfix with STARTTLS (scripts/postfix-test-server, for TLS under the pipelined
reader).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from app.engine.smtp_pool import ServerPool, ServerSettings
from app.engine.smtp_session import LockstepSession, PipelinedSession, Verdict, message_data
from app.models.base import Encryption
from tests.conftest import peer_missing
from tests.services.test_smtp_postfix import PostfixPeer, postfix  # noqa: F401 (fixture)
from tests.smtp_peers import RecordingHandler, offer_pipelining, start_smtp

SENDER = "bounce@example.com"
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


class Handler(RecordingHandler):
    """aiosmtpd's handler, offering PIPELINING when asked; DATA's final reply settable."""

    def __init__(self, *, pipelining: bool, data_reply: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.pipelining = pipelining
        self.data_reply = data_reply

    async def handle_EHLO(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self.pipelining:
            return offer_pipelining(session, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)


def settings(port: int, **kw: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "id": 1,
        "name": "Relay",
        "host": "127.0.0.1",
        "port": port,
        "encryption": Encryption.NONE,
        "timeout": 10.0,
        "max_connections": 2,
        **kw,
    }
    return ServerSettings(**values)


SESSION_KINDS = {True: PipelinedSession, False: LockstepSession}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
async def test_the_session_kind_follows_what_the_server_offers(pipelining: bool) -> None:
    handler = Handler(pipelining=pipelining)
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port))
    try:
        session = await pool._connect()
        assert type(session) is SESSION_KINDS[pipelining]
        session.close()
        # and a setting turns pipelining off where it is offered
        plain = await ServerPool(settings(peer.port, pipelining=False))._connect()
        assert type(plain) is LockstepSession
        plain.close()
    finally:
        await peer.stop()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
async def test_messages_arrive_whole_on_one_kept_session(pipelining: bool) -> None:
    handler = Handler(pipelining=pipelining)
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port))
    # leading dots, a bare LF and a long line: what DATA must carry unchanged
    body = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\nbare\nend" + b"x" * 900
    try:
        results = [await pool.send(SENDER, f"r{n}@example.com", body) for n in range(5)]
        assert {r.verdict for r in results if r} == {Verdict.SENT}
        assert results[0] and results[0].reply.startswith("250 2.0.0 Message accepted")
        assert pool.open_connections == 1  # one session carried all five
        assert [e.rcpt_tos for e in handler.envelopes] == [[f"r{n}@example.com"] for n in range(5)]
        content = handler.envelopes[0].original_content or b""
        assert content.startswith(b"Subject: dots\r\n\r\n.hidden\r\n..two\r\nbare\r\nend")
        assert handler.envelopes[0].mail_from == SENDER
    finally:
        await pool.close()
        await peer.stop()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
@pytest.mark.parametrize(
    ("refusal", "verdict", "reply"),
    [
        ({"rcpt_reply": "550 5.1.1 No such user here"}, Verdict.PERMANENT, "550 5.1.1 No such"),
        ({"rcpt_reply": "451 4.7.1 Try again later"}, Verdict.TEMPORARY, "451 4.7.1 Try"),
        ({"mail_reply": "553 5.7.1 Sender not allowed"}, Verdict.PERMANENT, "553 5.7.1 Sender"),
        ({"data_reply": "554 5.6.0 Content refused"}, Verdict.PERMANENT, "554 5.6.0 Content"),
    ],
    ids=["rcpt-550", "rcpt-451", "mail-553", "data-554"],
)
async def test_a_refusal_keeps_the_servers_words_and_the_session(
    pipelining: bool, refusal: dict[str, str], verdict: Verdict, reply: str
) -> None:
    handler = Handler(pipelining=pipelining, **refusal)
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port))
    try:
        first = await pool.send(SENDER, "someone@example.com", MESSAGE)
        assert first is not None
        assert (first.verdict, first.reply[: len(reply)]) == (verdict, reply)
        # RSET left the session clean: the next message goes through on it
        handler.mail_reply = handler.rcpt_reply = handler.data_reply = None
        second = await pool.send(SENDER, "other@example.com", MESSAGE)
        assert second is not None and second.verdict is Verdict.SENT
        assert pool.open_connections == 1
        assert [e.rcpt_tos for e in handler.envelopes] == [["other@example.com"]]
    finally:
        await pool.close()
        await peer.stop()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
async def test_an_idle_session_the_server_closed_is_replaced_without_a_failure(
    pipelining: bool,
) -> None:
    handler = Handler(pipelining=pipelining)
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port))
    try:
        first = await pool.send(SENDER, "a@example.com", MESSAGE)
        assert first is not None and first.verdict is Verdict.SENT
        for connection in peer.connections:  # the server hangs up on the idle session
            connection.transport.close()
        await asyncio.sleep(0.05)
        second = await pool.send(SENDER, "b@example.com", MESSAGE)
        assert second is not None and second.verdict is Verdict.SENT, second
        assert [e.rcpt_tos for e in handler.envelopes] == [["a@example.com"], ["b@example.com"]]
    finally:
        await pool.close()
        await peer.stop()


async def test_a_connection_lost_after_the_data_is_a_temporary_failure() -> None:
    """The server may have taken the message: deferred (never retried at once)."""
    loop = asyncio.get_running_loop()
    handler = Handler(pipelining=True)

    async def vanish(server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        handler.envelopes.append(envelope)
        assert server.transport is not None
        server.transport.abort()
        await asyncio.sleep(0.1)
        return "250 too late"

    handler.handle_DATA = vanish  # type: ignore[method-assign]
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port))
    try:
        started = loop.time()
        result = await pool.send(SENDER, "a@example.com", MESSAGE)
        assert result is not None and result.verdict is Verdict.TEMPORARY
        assert "dropped" in result.reply
        assert len(handler.envelopes) == 1  # not tried again on a new session
        assert loop.time() - started < 5
        assert pool.open_connections == 0
    finally:
        await pool.close()
        await peer.stop()


async def test_a_server_that_stops_answering_times_out() -> None:
    handler = Handler(pipelining=True)

    async def stall(server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(30)
        return "250 late"

    handler.handle_DATA = stall  # type: ignore[method-assign]
    peer = await start_smtp(handler)
    pool = ServerPool(settings(peer.port, timeout=0.5))
    try:
        result = await pool.send(SENDER, "a@example.com", MESSAGE)
        assert result is not None and result.verdict is Verdict.TEMPORARY
        assert result.reply.startswith("timed out after 0.5 s")
    finally:
        await pool.close()
        await peer.stop()


def test_message_data_normalises_line_ends_and_doubles_leading_dots() -> None:
    assert message_data(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert message_data(b"") == b"\r\n.\r\n"
    assert message_data(b".a\r\n.\r\nb\r\n") == b"..a\r\n..\r\nb\r\n.\r\n"


@given(st.lists(st.sampled_from([b".", b"..", b"a", b"\r", b"\n", b"\r\n", b" x"]), max_size=30))
def test_message_data_is_what_aiosmtplib_sends(parts: list[bytes]) -> None:
    """Property: the fast path for CRLF messages gives aiosmtplib's bytes for any input."""
    data = b"".join(parts)
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert message_data(data) == expected


# ---------------------------------------------------------------- Postfix


@pytest.fixture(scope="module")
def smtp_sink() -> Iterator[int]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.access(binary, os.X_OK):
        peer_missing("smtp-sink is not installed (Debian package postfix)")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, f"127.0.0.1:{port}", "100"])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "smtp-sink did not listen"
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def test_smtp_sink_takes_pipelined_transactions(smtp_sink: int) -> None:
    pool = ServerPool(settings(smtp_sink, max_connections=4))
    try:
        results = await asyncio.gather(
            *(pool.send(SENDER, f"r{n}@example.com", MESSAGE) for n in range(200))
        )
        assert {r.verdict for r in results if r} == {Verdict.SENT}
        assert len(results) == 200 and pool.open_connections == 4
        assert all(isinstance(s, PipelinedSession) for s, _ in pool._idle)
    finally:
        await pool.close()


async def test_postfix_with_starttls_takes_pipelined_transactions(
    postfix: PostfixPeer,  # noqa: F811
) -> None:
    pool = ServerPool(
        settings(postfix.port, host="localhost", encryption=Encryption.TLS, cafile=str(postfix.ca))
    )
    try:
        results = [await pool.send(SENDER, f"r{n}@postroom.test", MESSAGE) for n in range(3)]
        assert {r.verdict for r in results if r} == {Verdict.SENT}, results
        assert results[0] and results[0].reply.startswith("250 2.0.0 Ok: queued as")
        # a refused recipient (Postfix relays only for its domain) between two sent ones
        refused = await pool.send(SENDER, "someone@example.com", MESSAGE)
        assert refused is not None and refused.verdict is Verdict.PERMANENT
        assert refused.reply.endswith("Relay access denied")
        after = await pool.send(SENDER, "r9@postroom.test", MESSAGE)
        assert after is not None and after.verdict is Verdict.SENT
        [(session, _since)] = pool._idle
        assert isinstance(session, PipelinedSession)
        assert session.transport.get_extra_info("sslcontext") is not None  # still TLS
    finally:
        await pool.close()
