"""How long the staged SMTP test takes against local servers, and how well timeouts hold.

    .venv/bin/python bench/bench_smtp_check.py [--runs N] [--timeout SECONDS]

Prints, for plain, STARTTLS and TLS-on-connect aiosmtpd servers on 127.0.0.1, the whole
check's median / 95th percentile / max time and each stage's median; then how long a
check against a server that never greets takes compared to its timeout (the bound every
stage must keep). Figures only: the test suite makes no timing assertions.

Peer, measured in the same run and against the same servers: the same session (connect,
EHLO, [STARTTLS, EHLO], MAIL FROM, RCPT, DATA, QUIT, certificate verified against the
private CA) done with the standard library's smtplib, in a thread (``asyncio.to_thread``:
the servers run on this event loop). Check and peer runs alternate, so both see the same
machine load; each case prints "ratio: staged check / smtplib session" of the medians.
The staged check does more (a timing and a detail per stage, the certificate's facts), so
a ratio near 1-3 is expected; the target is a whole check well under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session

from app.services.smtp_check import TEST_LOCAL_PART, TEST_SUBJECT, run_smtp_check
from app.services.smtp_report import SmtpTarget
from tests.smtp_peers import (
    LOCALHOST,
    SERVER_NAME,
    Peer,
    RecordingHandler,
    make_pki,
    server_context,
    start_raw,
    start_smtp,
    stay_silent,
)

MAIL_FROM_DOMAIN = "bounces.postroom.test"
SENDER = f"{TEST_LOCAL_PART}@{MAIL_FROM_DOMAIN}"  # what the check sends as MAIL FROM
RCPT = "someone@postroom.test"
# smtplib checks the certificate against the host it connects to; "localhost" is in the
# good certificate and resolves to the servers' 127.0.0.1, so the peer verifies it too.
PEER_HOST = "localhost"
TARGET_TIME = 1.0  # "well under a second" for a whole check


class _Forgetful(RecordingHandler):
    """Accepts every message and keeps none.

    aiosmtpd reads every attribute of its handler (``inspect.getmembers``) for each new
    connection, and RecordingHandler.messages parses every message kept so far: with kept
    messages, each connection would cost more than the one before, and the figures would
    depend on the number of runs.
    """

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 Message accepted for delivery"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _expect(reply: tuple[int, bytes], code: int, command: str) -> None:
    if reply[0] != code:
        raise smtplib.SMTPResponseException(reply[0], reply[1] + f" (to {command})".encode())


def _message() -> bytes:
    """A message like the check's, built per session as the check builds it."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RCPT
    message["Subject"] = TEST_SUBJECT
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(TEST_LOCAL_PART, domain=MAIL_FROM_DOMAIN)
    message.set_content("This message was sent by the smtplib peer of the SMTP benchmark.\n")
    return message.as_bytes()


def _smtplib_session(port: int, encryption: str, cafile: str) -> None:
    """The check's session with smtplib: blocking, so it runs in a thread."""
    # A verifying context per session, as the check makes one per check.
    context = ssl.create_default_context(cafile=cafile) if encryption != "none" else None
    # gethostname() for EHLO, as the check does: smtplib's default (getfqdn) may do DNS.
    local = socket.gethostname()
    if encryption == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            PEER_HOST, port, local_hostname=local, timeout=10.0, context=context
        )
    else:
        smtp = smtplib.SMTP(PEER_HOST, port, local_hostname=local, timeout=10.0)
    try:
        _expect(smtp.ehlo(), 250, "EHLO")
        if encryption == "tls":
            smtp.starttls(context=context)  # raises unless 220
            _expect(smtp.ehlo(), 250, "EHLO")
        _expect(smtp.mail(SENDER), 250, "MAIL FROM")
        _expect(smtp.rcpt(RCPT), 250, "RCPT TO")
        smtp.data(_message())  # raises unless 250
        _expect(smtp.quit(), 221, "QUIT")
    finally:
        smtp.close()


async def _measure(
    label: str, peer: Peer, target: SmtpTarget, runs: int, encryption: str, cafile: str
) -> float:
    """Prints the figures of one case; returns the check's median, in seconds."""
    totals: list[float] = []
    peer_totals: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)

    async def check() -> None:
        started = time.perf_counter()
        report = await run_smtp_check(target, rcpt=RCPT)
        totals.append(time.perf_counter() - started)
        if not report.ok:
            raise SystemExit(f"{label}: check failed at {report.failed_stage}: {report.hint}")
        for stage in report.stages:
            stages[stage.name].append(stage.ms)

    async def session() -> None:
        started = time.perf_counter()
        await asyncio.to_thread(_smtplib_session, peer.port, encryption, cafile)
        peer_totals.append(time.perf_counter() - started)

    async def settled() -> None:
        # The server closes a finished session in later loop callbacks: let it, so neither
        # side is timed while the other's connection is still being torn down.
        while any(conn.open for conn in peer.connections):
            await asyncio.sleep(0.001)

    # One untimed round each: the thread pool's worker starts, and neither side is timed cold.
    await check()
    await settled()
    await session()
    totals.clear()
    peer_totals.clear()
    stages.clear()
    for run in range(runs):
        # Alternating, and in turn first: both see the same load and the same warm caches.
        first, second = (check, session) if run % 2 == 0 else (session, check)
        await settled()
        await first()
        await settled()
        await second()
    await peer.stop()
    median, peer_median = statistics.median(totals), statistics.median(peer_totals)
    print(
        f"{label:16} whole check:     median {_ms(median)}, "
        f"p95 {_ms(_p95(totals))}, max {_ms(max(totals))}  ({runs} runs)"
    )
    per_stage = ", ".join(f"{name} {statistics.median(ms):.1f}" for name, ms in stages.items())
    print(f"{'':16} stage medians (ms): {per_stage}")
    print(
        f"{'':16} smtplib session: median {_ms(peer_median)}, "
        f"p95 {_ms(_p95(peer_totals))}, max {_ms(max(peer_totals))}  ({runs} runs)"
    )
    print(f"{'':16} ratio: staged check / smtplib session = {median / peer_median:.2f}x")
    return median


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=1.0, help="for the silent server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp))

        def target(peer: Peer, encryption: str, timeout: float = 10.0) -> SmtpTarget:
            return SmtpTarget(
                LOCALHOST,
                peer.port,
                encryption,
                timeout=timeout,
                server_hostname=SERVER_NAME,
                cafile=str(pki.ca),
                mail_from_domain=MAIL_FROM_DOMAIN,
            )

        cafile = str(pki.ca)
        medians: list[float] = []
        peer = await start_smtp(_Forgetful())
        medians.append(
            await _measure("plain", peer, target(peer, "none"), args.runs, "none", cafile)
        )
        peer = await start_smtp(_Forgetful(), starttls=server_context(pki.good))
        medians.append(
            await _measure("STARTTLS", peer, target(peer, "tls"), args.runs, "tls", cafile)
        )
        peer = await start_smtp(_Forgetful(), tls_on_connect=server_context(pki.good))
        medians.append(
            await _measure("TLS on connect", peer, target(peer, "ssl"), args.runs, "ssl", cafile)
        )
        print(
            "(the staged check does more than the smtplib session: a timing and a detail per "
            "stage, the certificate's facts; a ratio near 1-3 is expected)"
        )
        print(
            f"target: a whole check well under {TARGET_TIME:g} s "
            f"(slowest median here {max(medians) * 1000:.1f} ms)"
        )

        peer = await start_raw(stay_silent)
        started = time.perf_counter()
        report = await run_smtp_check(target(peer, "none", args.timeout))
        elapsed = time.perf_counter() - started
        await peer.stop()
        banner = report.stage("banner")
        print(
            f"{'silent server':16} timeout {args.timeout:g} s: banner stage "
            f"{banner.ms if banner else float('nan'):.1f} ms, whole check {_ms(elapsed)} "
            "(includes the probe for a TLS-on-connect server, also bounded by the timeout)"
        )


if __name__ == "__main__":
    asyncio.run(main())
