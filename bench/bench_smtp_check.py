"""How long the staged SMTP test takes against local servers, and how well timeouts hold.

    .venv/bin/python bench/bench_smtp_check.py [--runs N] [--timeout SECONDS]

Prints, for plain, STARTTLS and TLS-on-connect aiosmtpd servers on 127.0.0.1, the whole
check's median / 95th percentile / max time and each stage's median; then how long a
check against a server that never greets takes compared to its timeout (the bound every
stage must keep). Figures only: the test suite makes no timing assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from app.services.smtp_check import SmtpTarget, run_smtp_check
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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _measure(label: str, peer: Peer, target: SmtpTarget, runs: int) -> None:
    totals: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        started = time.perf_counter()
        report = await run_smtp_check(target, rcpt="someone@postroom.test")
        totals.append(time.perf_counter() - started)
        if not report.ok:
            raise SystemExit(f"{label}: check failed at {report.failed_stage}: {report.hint}")
        for stage in report.stages:
            stages[stage.name].append(stage.ms)
    await peer.stop()
    print(
        f"{label:16} whole check: median {_ms(statistics.median(totals))}, "
        f"p95 {_ms(_p95(totals))}, max {_ms(max(totals))}  ({runs} runs)"
    )
    per_stage = ", ".join(f"{name} {statistics.median(ms):.1f}" for name, ms in stages.items())
    print(f"{'':16} stage medians (ms): {per_stage}")


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
                mail_from_domain="bounces.postroom.test",
            )

        peer = await start_smtp(RecordingHandler())
        await _measure("plain", peer, target(peer, "none"), args.runs)
        peer = await start_smtp(RecordingHandler(), starttls=server_context(pki.good))
        await _measure("STARTTLS", peer, target(peer, "tls"), args.runs)
        peer = await start_smtp(RecordingHandler(), tls_on_connect=server_context(pki.good))
        await _measure("TLS on connect", peer, target(peer, "ssl"), args.runs)

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
