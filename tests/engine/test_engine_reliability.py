"""The send engine as real processes against a recording SMTP sink: nothing is lost.

Each test runs ``python -m app … engine run`` processes (killed with SIGKILL, stopped with
SIGTERM, or left to exit with ``--until-idle``) against ``tests/mail_sink.py``, a real
aiosmtpd server that appends the Message-ID and recipient of every message it accepts to
a file before answering 250. The database is a real SQLite file or PostgreSQL database,
fresh for each test; the PostgreSQL-restart test runs a cluster of its own so that the
shared server is never restarted.

Kill points are random; the seed is in every failure message and can be fixed with
POSTROOM_TEST_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_database_url, peer_missing
from tests.engine_harness import (
    UNFINISHED,
    EngineProcess,
    Postroom,
    PrivatePostgres,
    SinkProcess,
    SinkReport,
    campaign_status,
    child_env,
    describe,
    duplicates_per_kill,
    finished,
    postgres_bin,
    prepare_campaign,
    recipient_list,
    start_campaign,
    terminate_all,
    wait_until,
)
from tests.mail_sink import REJECT_TEXT, Fault, FaultPlan

KILL_RECIPIENTS = 20_000
DUPLICATES_PER_KILL = 10  # what was in flight, or delivered but not yet recorded
PARALLEL_RECIPIENTS = 1_000
RESTART_RECIPIENTS = 3_000
# Generous: how long a whole campaign may take on a loaded two-core machine. A pass
# takes a fraction; these only turn a hang into a failure with the engines' logs.
CAMPAIGN_TIMEOUT = 240.0
ENGINE_START_TIMEOUT = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL database (dropped afterwards)."""
    yield from make_database_url(request.param, tmp_path)


@pytest.fixture
def sqlite_only_url(tmp_path: Path) -> Iterator[str]:
    yield from make_database_url("sqlite", tmp_path)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return child_env(tmp_path / "env")


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("POSTROOM_TEST_SEED") or time.time_ns() % 1_000_000)


class Processes:
    """The sinks and engines a test started; all stopped at teardown, whatever happened."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sinks: list[SinkProcess] = []
        self.engines: list[EngineProcess] = []

    def sink(self, *options: str) -> SinkProcess:
        sink = SinkProcess.start(self.directory / f"sink{len(self.sinks)}", *options)
        self.sinks.append(sink)
        return sink

    def engine(self, cli: Postroom, engine_id: str, *options: str, **kw: Any) -> EngineProcess:
        engine = EngineProcess.start(cli, engine_id, self.directory / "logs", *options, **kw)
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            engine.ensure_stopped()
        for sink in self.sinks:
            sink.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path / "run")
    try:
        yield running
    finally:
        running.close()


def bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>")


def assert_all_sent(cli: Postroom, campaign: str, total: int, context: str) -> None:
    """The contract's own report (``campaigns status --json``) says every item was sent."""
    status = cli.status(campaign)
    expected = {key: 0 for key in (*UNFINISHED, "held", "failed")}
    assert {key: status[key] for key in expected} == expected, f"{status}\n{context}"
    assert (status["total"], status["sent"]) == (total, total), f"{status}\n{context}"


def assert_ids_match_results(cli: Postroom, campaign: str, report: SinkReport) -> None:
    """Each recipient's message carried the Message-ID its item reports, on every try."""
    several = report.recipients_with_several_ids()
    assert not several, f"retries changed the Message-ID of {len(several)}: {several[:5]}"
    wrong = [
        (row["recipient"], row["message_id"], sorted(report.per_recipient[row["recipient"]]))
        for row in cli.results(campaign)
        if row["recipient"] in report.per_recipient
        and {bare(m) for m in report.per_recipient[row["recipient"]]} != {bare(row["message_id"])}
    ]
    assert not wrong, f"{len(wrong)} item(s) report another Message-ID than was sent: {wrong[:5]}"


# --------------------------------------------------------------------------- kill -9


def test_kill9_and_restart_lose_no_message(
    sqlite_only_url: str, env: dict[str, str], processes: Processes, seed: int
) -> None:
    """SIGKILL the engine 3-4 times during a 20,000-recipient campaign, restart it with the
    same id each time, finish with --until-idle: every recipient got the message, and at
    most DUPLICATES_PER_KILL messages per kill went out twice.

    SQLite only: this one test takes a minute or two on a shared two-core machine, and
    PostgreSQL's claims and reconnection are covered by the parallel and restart tests.
    """
    url = sqlite_only_url
    rng = random.Random(seed)
    cli = Postroom(url, env)
    sink = processes.sink()
    recipients = recipient_list(KILL_RECIPIENTS)
    campaign = prepare_campaign(url, sink_port=sink.port, recipients=recipients, max_connections=4)
    kills = rng.choice((3, 4))
    points = sorted(rng.sample(range(KILL_RECIPIENTS // 10, KILL_RECIPIENTS * 8 // 10), kills))
    context = f"seed {seed}, kills after {points} accepted messages"
    options = ("--concurrency", "4", "--lease-seconds", "30")

    counts_at_kills: list[int] = []
    for point in points:
        engine = processes.engine(cli, "killed", *options)
        wait_until(
            lambda: engine.has_started() and sink.count() >= point,  # noqa: B023
            CAMPAIGN_TIMEOUT,
            f"{point} messages at the sink ({context})",
            interval=0.02,
            explain=lambda: describe(url, campaign, processes.engines),
        )
        engine.kill9()
        counts_at_kills.append(sink.count())

    last = processes.engine(cli, "killed", *options, "--until-idle")
    status = last.wait(CAMPAIGN_TIMEOUT)
    assert status == 0, f"{context}\n{describe(url, campaign, [last])}"

    assert_all_sent(cli, campaign, KILL_RECIPIENTS, context)
    report = SinkReport.of(sink.deliveries())
    missing = report.missing(recipients)
    assert not missing, (
        f"{len(missing)} recipient(s) never got the message: {missing[:5]}; {context}"
    )
    assert set(report.per_recipient) == set(recipients), f"mail to strangers; {context}"
    per_kill = duplicates_per_kill(sink.deliveries(), counts_at_kills)
    assert max(per_kill[:-1]) <= DUPLICATES_PER_KILL and per_kill[-1] == 0, (
        f"duplicates per kill {per_kill[:-1]} (limit {DUPLICATES_PER_KILL}), "
        f"{per_kill[-1]} after the last; the sink had {counts_at_kills} lines at the kills; "
        f"{context}"
    )
    assert_ids_match_results(cli, campaign, report)


# --------------------------------------------------------------------------- a faulty sink


def test_faulty_sink_every_item_ends_sent_or_failed_with_the_servers_words(
    sqlite_only_url: str, env: dict[str, str], processes: Processes, seed: int
) -> None:
    """451 then accept, a connection reset at DATA, and 550: each item ends sent (the first
    two after a retry) or failed with the sink's 550 text; nothing stays unfinished."""
    url = sqlite_only_url
    plan = FaultPlan(tempfail=10, drop=5, reject=5, seed=seed)
    cli = Postroom(url, env)
    sink = processes.sink("--tempfail", "10", "--drop", "5", "--reject", "5", "--seed", str(seed))
    recipients = recipient_list(400)
    faults = {r: plan.fault_for(r) for r in recipients}
    assert all(list(faults.values()).count(f) for f in Fault), f"seed {seed} lacks a fault"
    campaign = prepare_campaign(url, sink_port=sink.port, recipients=recipients, max_connections=4)
    engine = processes.engine(
        cli, "faulty", "--concurrency", "4", "--retry-after", "0.5", "--max-attempts", "4"
    )
    explain = lambda: describe(url, campaign, [engine])  # noqa: E731
    wait_until(
        lambda: engine.has_started() and finished(campaign_status(url, campaign)),
        CAMPAIGN_TIMEOUT,
        f"every item sent or failed (seed {seed})",
        interval=0.25,
        explain=explain,
    )
    assert engine.terminate() == 0, explain()
    # A run after everything is done finds nothing to do, and changes nothing.
    idle = processes.engine(cli, "faulty", "--until-idle")
    assert idle.wait(ENGINE_START_TIMEOUT) == 0, idle.tail()

    rows = {row["recipient"]: row for row in cli.results(campaign)}
    assert set(rows) == set(recipients)
    expected = {
        Fault.NONE: ("sent", 1),
        Fault.TEMPFAIL: ("sent", 2),
        Fault.DROP: ("sent", 2),
        Fault.REJECT: ("failed", 1),
    }
    wrong = [
        (r, fault.value, rows[r]["status"], rows[r]["attempts"], rows[r]["reply"])
        for r, fault in faults.items()
        if (rows[r]["status"], rows[r]["attempts"]) != expected[fault]
    ]
    assert not wrong, f"{len(wrong)} item(s) ended otherwise (seed {seed}): {wrong[:5]}"
    unexplained = [
        (r, rows[r]["reply"])
        for r, fault in faults.items()
        if fault is Fault.REJECT and REJECT_TEXT not in (rows[r]["reply"] or "")
    ]
    assert not unexplained, f"failed without the server's words: {unexplained[:5]}"

    report = SinkReport.of(sink.deliveries())
    delivered = [r for r, fault in faults.items() if fault is not Fault.REJECT]
    assert sorted(report.per_recipient) == sorted(delivered)
    assert report.duplicates == 0, f"{report.duplicates} duplicate(s) with no kill (seed {seed})"
    assert_ids_match_results(cli, campaign, report)


def test_greylisting_past_max_attempts_fails_with_the_last_reply(
    sqlite_only_url: str, env: dict[str, str], processes: Processes
) -> None:
    """A recipient answered 451 on every try fails after --max-attempts, with that 451."""
    url = sqlite_only_url
    cli = Postroom(url, env)
    sink = processes.sink("--tempfail", "100", "--tempfail-attempts", "1000")
    recipients = recipient_list(20)
    campaign = prepare_campaign(url, sink_port=sink.port, recipients=recipients, max_connections=2)
    options = ("--concurrency", "2", "--retry-after", "0.2", "--max-attempts", "3")
    engine = processes.engine(cli, "greylisted", *options)
    wait_until(
        lambda: engine.has_started() and finished(campaign_status(url, campaign)),
        CAMPAIGN_TIMEOUT,
        "every item failed",
        interval=0.25,
        explain=lambda: describe(url, campaign, [engine]),
    )
    assert engine.terminate() == 0, engine.tail()
    rows = cli.results(campaign)
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 3)] * len(recipients)
    assert all("Greylisted by the test sink" in (r["reply"] or "") for r in rows), rows[:3]
    assert sink.deliveries() == []


# --------------------------------------------------------------------------- several engines


@pytest.mark.parametrize("engine_count", [2, 4])
def test_parallel_engines_send_each_message_once(
    url: str, env: dict[str, str], processes: Processes, engine_count: int
) -> None:
    """Engines started together on one database share the campaign without overlap."""
    cli = Postroom(url, env)
    sink = processes.sink()
    recipients = recipient_list(PARALLEL_RECIPIENTS)
    campaign = prepare_campaign(
        url, sink_port=sink.port, recipients=recipients, max_connections=4, start=False
    )
    engines = [
        processes.engine(cli, f"parallel-{n}", "--concurrency", "4", json=True)
        for n in range(engine_count)
    ]
    explain = lambda: describe(url, campaign, engines)  # noqa: E731
    # All are claiming before there is anything to claim: they really compete.
    wait_until(
        lambda: all(e.has_started() for e in engines),
        ENGINE_START_TIMEOUT,
        "the engines to start",
        explain=explain,
    )
    start_campaign(url, campaign)
    wait_until(
        lambda: finished(campaign_status(url, campaign)),
        CAMPAIGN_TIMEOUT,
        "the campaign to finish",
        interval=0.25,
        explain=explain,
    )
    assert terminate_all(engines) == [0] * engine_count, explain()

    assert_all_sent(cli, campaign, PARALLEL_RECIPIENTS, explain())
    report = SinkReport.of(sink.deliveries())
    assert report.missing(recipients) == []
    twice = [mid for mid, n in report.per_message_id.items() if n > 1]
    assert not twice, f"{len(twice)} message(s) delivered twice: {twice[:5]}"
    sent = [e.totals()["sent"] for e in engines]
    assert sum(sent) == PARALLEL_RECIPIENTS, sent
    assert sum(1 for n in sent if n) >= 2, f"one engine did all the work: {sent}"


# --------------------------------------------------------------------------- PostgreSQL restart


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        peer_missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
        return
    cluster = PrivatePostgres.create(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_postgresql_restart_mid_campaign_the_engine_waits_and_finishes(
    private_postgres: PrivatePostgres, env: dict[str, str], processes: Processes
) -> None:
    url = private_postgres.url
    cli = Postroom(url, env)
    sink = processes.sink()
    recipients = recipient_list(RESTART_RECIPIENTS)
    campaign = prepare_campaign(url, sink_port=sink.port, recipients=recipients, max_connections=4)
    engine = processes.engine(cli, "survivor", "--concurrency", "4")
    explain = lambda: describe(url, campaign, [engine])  # noqa: E731
    wait_until(
        lambda: engine.has_started() and sink.count() >= RESTART_RECIPIENTS // 4,
        CAMPAIGN_TIMEOUT,
        "a quarter of the campaign at the sink",
        interval=0.05,
        explain=explain,
    )
    private_postgres.stop("fast")
    time.sleep(3)  # long enough for the engine to hit the closed port more than once
    assert engine.running, f"the engine gave up while PostgreSQL was down:\n{engine.tail()}"
    private_postgres.start()
    wait_until(
        lambda: finished(campaign_status(url, campaign)),
        CAMPAIGN_TIMEOUT,
        "the campaign to finish after the restart",
        interval=0.25,
        explain=explain,
    )
    assert engine.terminate() == 0, engine.tail()
    # Whatever the wording, the engine said it lost the database (on the closed port).
    noticed = [w for w in engine.warnings() if str(private_postgres.port) in w]
    assert noticed, f"the engine never noticed the restart, so nothing was tested:\n{engine.tail()}"
    assert_all_sent(cli, campaign, RESTART_RECIPIENTS, explain())
    report = SinkReport.of(sink.deliveries())
    assert report.missing(recipients) == []
    assert report.duplicates <= DUPLICATES_PER_KILL, f"{report.duplicates} duplicate(s)"
    assert_ids_match_results(cli, campaign, report)
