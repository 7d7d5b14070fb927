"""The recording sink the reliability tests trust: its faults and its record, over real SMTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest

from tests.engine_harness import Delivery, SinkProcess, SinkReport, duplicates_per_kill
from tests.mail_sink import (
    REJECT_TEXT,
    Fault,
    FaultPlan,
    RecordingSink,
    message_id_of,
    start_sink,
)

SENDER = "engine@bounces.example.com"


def message(recipient: str, number: int) -> bytes:
    return (
        f"From: news@example.com\r\nTo: {recipient}\r\nSubject: Sink\r\n"
        f"Message-ID: <sink.{number}@example.com>\r\n\r\nHello.\r\n"
    ).encode()


def first_with(plan: FaultPlan, fault: Fault) -> str:
    return next(a for n in range(10_000) if plan.fault_for(a := f"r{n}@example.com") is fault)


@dataclass
class RunningSink:
    port: int
    record: Path
    handler: RecordingSink


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[RunningSink]:
    plan = FaultPlan(tempfail=20, drop=20, reject=20, seed=7)
    handler = RecordingSink(tmp_path / "record.tsv", plan)
    server = await start_sink(handler)
    try:
        yield RunningSink(server.sockets[0].getsockname()[1], tmp_path / "record.tsv", handler)
    finally:
        server.close()
        await server.wait_closed()
        handler.close()


async def send(port: int, recipient: str, number: int) -> str:
    """One message on a fresh connection; the reply, or the error's class and text."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await client.connect()
    try:
        _refused, reply = await client.sendmail(SENDER, [recipient], message(recipient, number))
        await client.quit()
        return f"250 {reply}"
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return " ".join(f"{e.code} {e.message}" for e in exc.recipients)
    except aiosmtplib.SMTPServerDisconnected as exc:
        return f"disconnected: {exc}"
    finally:
        client.close()


async def test_each_fault_behaves_as_documented(sink: RunningSink) -> None:
    plan = sink.handler.plan
    greylisted = first_with(plan, Fault.TEMPFAIL)
    dropped = first_with(plan, Fault.DROP)
    rejected = first_with(plan, Fault.REJECT)
    plain = first_with(plan, Fault.NONE)

    assert (await send(sink.port, greylisted, 1)).startswith("451 ")
    assert (await send(sink.port, greylisted, 1)).startswith("250 ")
    assert (await send(sink.port, dropped, 2)).startswith("disconnected")
    assert (await send(sink.port, dropped, 2)).startswith("250 ")
    for _ in range(2):
        reply = await send(sink.port, rejected, 3)
        assert reply.startswith("550 ") and REJECT_TEXT in reply
    assert (await send(sink.port, plain, 4)).startswith("250 ")

    lines = sink.record.read_text().splitlines()
    assert lines == [
        f"<sink.1@example.com>\t{greylisted}",
        f"<sink.2@example.com>\t{dropped}",
        f"<sink.4@example.com>\t{plain}",
    ]
    assert sink.handler.counts == Counter(accepted=3, tempfailed=1, dropped=1, rejected=2)


async def test_connections_are_reused_and_concurrent(sink: RunningSink) -> None:
    """Many messages on a few long sessions, as an engine sends them, all recorded."""
    addresses = (f"p{n}@example.com" for n in range(2_000))
    plain = [a for a in addresses if sink.handler.plan.fault_for(a) is Fault.NONE][:200]

    async def session(first: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=10)
        await client.connect()
        for n in range(first, len(plain), 4):
            await client.sendmail(SENDER, [plain[n]], message(plain[n], n))
        await client.quit()

    await asyncio.gather(*(session(k) for k in range(4)))
    lines = sink.record.read_text().splitlines()
    report = SinkReport.of(Delivery(*line.split("\t")) for line in lines)
    assert sorted(report.per_recipient) == sorted(plain)
    assert report.duplicates == 0


def test_fault_plan_is_deterministic_and_near_its_shares() -> None:
    plan = FaultPlan(tempfail=10, drop=5, reject=5, seed=42)
    addresses = [f"r{n}@example.com" for n in range(20_000)]
    faults = Counter(plan.fault_for(a) for a in addresses)
    shares = {fault: faults[fault] / len(addresses) * 100 for fault in Fault}
    for fault, wanted in ((Fault.TEMPFAIL, 10), (Fault.DROP, 5), (Fault.REJECT, 5)):
        assert abs(shares[fault] - wanted) < 1.0, shares
    assert [plan.fault_for(a) for a in addresses[:500]] == [
        FaultPlan(tempfail=10, drop=5, reject=5, seed=42).fault_for(a.upper())
        for a in addresses[:500]
    ]
    other_seed = FaultPlan(tempfail=10, drop=5, reject=5, seed=43)
    assert [plan.fault_for(a) for a in addresses] != [other_seed.fault_for(a) for a in addresses]
    with pytest.raises(ValueError, match="add up to at most 100"):
        FaultPlan(tempfail=60, drop=30, reject=20)


def test_message_id_is_read_from_the_header_block_only() -> None:
    content = (
        b"Subject: x\r\nMESSAGE-ID:  <a.1@example.com>\r\n\r\n"
        b"Message-ID: <not.this@example.com>\r\n"
    )
    assert message_id_of(content) == "<a.1@example.com>"
    assert message_id_of(b"Subject: none\r\n\r\nbody\r\n") == "-"


def test_the_sink_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    sink = SinkProcess.start(tmp_path / "sink", "--reject", "100")
    try:
        reply = asyncio.run(send(sink.port, "anyone@example.com", 1))
        assert reply.startswith("550 ") and REJECT_TEXT in reply
    finally:
        log = sink.stop()
    assert sink.process.returncode == 0, log
    assert "rejected=1" in log
    assert sink.deliveries() == []


def test_duplicates_are_charged_to_the_kill_that_lost_their_outcome() -> None:
    ids = ["a", "b", "c", "d", "c", "d", "e", "f", "e", "g"]
    deliveries = [Delivery(f"<{i}@x>", f"{i}@example.com") for i in ids]
    # Killed once with 4 lines recorded (c and d went out again), once with 7 (e did).
    assert duplicates_per_kill(deliveries, [4, 7]) == [2, 1, 0]
    assert duplicates_per_kill(deliveries[:4], [4]) == [0, 0]
    assert duplicates_per_kill(deliveries, []) == [3]
