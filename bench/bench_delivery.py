"""How fast one send engine delivers 1 KB messages, against Postfix's own SMTP load generator.

    .venv/bin/python bench/bench_delivery.py [--messages 20000] [--sessions 20]
                                             [--postgresql] [--pg-admin-url URL]

Everything goes to one Postfix ``smtp-sink`` on a free loopback port (run with
``-u nobody`` when the bench runs as root, which smtp-sink requires), in this order:

1. the peer: ``smtp-source -d -s SESSIONS -m MESSAGES -l 1024`` (SESSIONS connections in
   parallel, each reused for message after message; no queue, no database);
2. a bare aiosmtplib client: SESSIONS connections on one asyncio loop sending ready-made
   1 KB messages (what the engine's SMTP library costs without the engine);
3. one engine, ``python -m app --database URL engine run --until-idle --concurrency
   SESSIONS``, delivering a started campaign of MESSAGES recipients (a ~1 KB text body)
   through a delivery server whose Max Connections is SESSIONS, every outcome committed;
   on SQLite, and also on a fresh PostgreSQL database with ``--postgresql``.

The engine's rate is its sent count over the time from its "send engine started" log line
to the last item's ``sent_at`` (its start-up, the same for any campaign size, and the time
``--until-idle`` takes to notice the queue is empty are printed apart). Its peak memory is
the child's maximum resident set size as the kernel reports it at exit (``wait4``). Prints
msgs/s of each, the ratios engine / smtp-source (target >= 0.15) and bare / smtp-source,
and the peak RSS (target <= 200 MB). Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

import aiosmtplib
from sqlalchemy import create_engine, text

from tests.engine_harness import (
    POSTROOM,
    REPO_ROOT,
    campaign_status,
    child_env,
    prepare_campaign,
    recipient_list,
)

PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TARGET_RATIO = 0.15
TARGET_RSS_MB = 200
PAYLOAD = 1024  # bytes of body, as smtp-source -l 1024
SENDER = "bench@example.com"
# A 1 KB plain-text body in lines of 72 characters (smtp-source's payload is one such block).
BODY = "\n".join(["Postroom delivery benchmark line, padded to seventy-two chars ......"] * 14)
BODY = (BODY + "\n" + "x" * max(0, PAYLOAD - len(BODY) - 2) + "\n")[:PAYLOAD]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"smtp-sink did not listen on port {port} within {timeout} s"
                ) from None
            time.sleep(0.05)


@contextmanager
def smtp_sink(log: Path) -> Iterator[int]:
    """Postfix's smtp-sink on a free loopback port (backlog 1000) until the block ends."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        raise SystemExit("smtp-sink is not installed (Debian package postfix)")
    port = free_port()
    # As root smtp-sink insists on dropping privileges; -u names whom to become.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, *user, f"127.0.0.1:{port}", "1000"], stdout=out, stderr=out
        )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@dataclass(frozen=True)
class Rate:
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.messages} in {self.seconds:.2f} s = {self.per_second:,.0f} msg/s"


def run_smtp_source(port: int, messages: int, sessions: int) -> Rate:
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    argv = [
        binary,
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(PAYLOAD),
        "-f",
        SENDER,
        "-t",
        "peer@example.com",
        f"127.0.0.1:{port}",
    ]
    print("  $", " ".join(argv[0:1] + argv[1:]))
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed ({done.returncode}): {done.stderr.strip()}")
    return Rate(messages, elapsed)


def ready_message(number: int) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: r{number}@example.com\r\nSubject: Bench\r\n"
        f"Message-ID: <bench.{number}@example.com>\r\n\r\n"
    )
    return head.encode() + BODY.replace("\n", "\r\n").encode()


async def bare_aiosmtplib(port: int, messages: int, sessions: int) -> Rate:
    """SESSIONS reused connections sending ready-made messages: no queue, no database."""
    payloads = [ready_message(n) for n in range(messages)]

    async def session(first: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        for n in range(first, messages, sessions):
            await client.sendmail(SENDER, [f"r{n}@example.com"], payloads[n])
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(session(k) for k in range(sessions)))
    return Rate(messages, time.perf_counter() - started)


@dataclass(frozen=True)
class EngineRun:
    rate: Rate  # "send engine started" to the last item's sent_at
    startup: float  # process start to "send engine started"
    idle_exit: float  # last sent_at to "send engine stopped" (--until-idle noticing)
    wall: float
    peak_rss_mb: float


def last_sent_at(url: str) -> datetime:
    from sqlalchemy import func, select

    from app.models import QueueItem
    from tests.engine_harness import open_database

    with open_database(url) as db, db.session() as session:
        last = session.execute(select(func.max(QueueItem.sent_at))).scalar_one()
    if last is None:
        raise SystemExit("no item has a sent_at")
    return last


def _log_time(line: dict[str, str]) -> datetime:
    return datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))


def run_engine(url: str, env: dict[str, str], messages: int, sessions: int, log: Path) -> EngineRun:
    argv = [
        *POSTROOM,
        "--database",
        url,
        "--log-format",
        "json",
        "engine",
        "run",
        "--engine-id",
        "bench",
        "--until-idle",
        "--concurrency",
        str(sessions),
    ]
    print("  $ python", " ".join(argv[1:]))
    with log.open("wb") as out:
        started = time.perf_counter()
        launched_at = datetime.now().astimezone()
        process = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=REPO_ROOT)
        # wait4 gives this child's own rusage: its peak RSS, not that of other children.
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
    lines = []
    for raw in log.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # not a log object (a traceback would be shown below)
    if process.returncode != 0:
        raise SystemExit(f"the engine exited {process.returncode}:\n{log.read_text()[-3000:]}")
    began = [_log_time(x) for x in lines if "send engine started" in x.get("message", "")]
    ended = [_log_time(x) for x in lines if "send engine stopped" in x.get("message", "")]
    if not began or not ended:
        raise SystemExit(f"no start/stop lines in the engine's log {log}")
    status_now = campaign_status(url, "Bench")
    if status_now["sent"] != messages:
        raise SystemExit(f"the engine did not send everything: {status_now}")
    last = last_sent_at(url)
    return EngineRun(
        rate=Rate(messages, (last - began[0]).total_seconds()),
        startup=(began[0] - launched_at).total_seconds(),
        idle_exit=(ended[-1] - last).total_seconds(),
        wall=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
    )


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"postroom_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def engine_case(label: str, url: str, work: Path, port: int, args: argparse.Namespace) -> EngineRun:
    env = child_env(work / f"env-{label}")
    prepare_campaign(
        url,
        sink_port=port,
        recipients=recipient_list(args.messages),
        max_connections=args.sessions,
        name="Bench",
        body=BODY,
    )
    return run_engine(url, env, args.messages, args.sessions, work / f"engine-{label}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--postgresql", action="store_true", help="also an engine on PostgreSQL")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    if args.messages < 1 or args.sessions < 1:
        parser.error("--messages and --sessions must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="postroom-bench-delivery-"))
    load_before = os.getloadavg()[0]
    engines: dict[str, EngineRun] = {}
    try:
        with smtp_sink(work / "smtp-sink.log") as port:
            print(
                f"smtp-sink on 127.0.0.1:{port}; {args.messages} messages, {args.sessions} "
                f"connections, {PAYLOAD}-byte bodies"
            )
            print("1. smtp-source (peer)")
            peer = run_smtp_source(port, args.messages, args.sessions)
            print(f"   {peer}")
            print("2. bare aiosmtplib")
            bare = asyncio.run(bare_aiosmtplib(port, args.messages, args.sessions))
            print(f"   {bare}")
            print("3. engine on SQLite")
            engines["SQLite"] = engine_case(
                "sqlite", f"sqlite:///{work / 'bench.sqlite3'}", work, port, args
            )
            print(f"   {engines['SQLite'].rate}")
            if args.postgresql:
                print("4. engine on PostgreSQL")
                with postgres_database(args.pg_admin_url) as url:
                    engines["PostgreSQL"] = engine_case("postgresql", url, work, port, args)
                print(f"   {engines['PostgreSQL'].rate}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()[0]
    print()
    print(f"smtp-source      {peer.per_second:9,.0f} msg/s")
    print(
        f"bare aiosmtplib  {bare.per_second:9,.0f} msg/s   ratio bare / smtp-source: "
        f"{bare.per_second / peer.per_second:.2f}"
    )
    for label, run in engines.items():
        ratio = run.rate.per_second / peer.per_second
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"engine, {label:<10}{run.rate.per_second:7,.0f} msg/s   ratio engine / smtp-source: "
            f"{ratio:.3f} (target >= {TARGET_RATIO}: {verdict})"
        )
        print(
            f"    start-up {run.startup:.1f} s, idle exit {run.idle_exit:.1f} s, "
            f"wall {run.wall:.1f} s, peak RSS "
            f"{run.peak_rss_mb:.0f} MB (target <= {TARGET_RSS_MB} MB: "
            f"{'met' if run.peak_rss_mb <= TARGET_RSS_MB else 'NOT met'})"
        )
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after")


if __name__ == "__main__":
    main()
