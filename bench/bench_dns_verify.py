"""How fast a bulk DNS verification is, against a sequential ``kdig`` loop over the same records.

    .venv/bin/python bench/bench_dns_verify.py [--domains N] [--concurrency N] [--runs N]
                                               [--kdig-sample N]

Creates N sender domains (default 1,000) with the Default template's 5 records in a fresh
SQLite database, writes them into one zone served by NSD on 127.0.0.1 (through
scripts/dns-test-server), then times

1. ``verify_many`` over all domains with the nameserver override: every record, the SPF,
   DKIM and DMARC checks, and storing every result (status moves, audit entries); run
   ``--runs`` times, every domain set back to approval pending before each, median shown;
2. one ``kdig @127.0.0.1 -p PORT NAME TYPE +short`` process per record, one after the other
   (all records, or ``--kdig-sample`` of them extrapolated linearly, printed as such).

Target: 1,000 domains in at most 2 s, and at least 8x faster than the kdig loop.
Figures only: the test suite makes no timing assertions. Needs nsd and knot-dnsutils.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select, update

from app.models import DomainStatus, Installation, SenderDomain, User, UserGroup
from app.models.database import Database
from app.services.dns_settings import update_settings
from app.services.dns_verify import verify_many
from app.services.sender_domains import create_sender_domain
from tests.dns_peer import DnsPeer, missing_reason, record_line, start_server, zone_text

ZONE = "bench.test"
TARGET = f"mailer.{ZONE}"
TARGET_TIME = 2.0
TARGET_RATIO = 8.0


def _dkim_key() -> str:
    """A real public key, so the DKIM check does its full parse."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def _seed(db: Database, count: int) -> list[str]:
    """``count`` pending campaign domains rendered from the Default template."""
    names = [f"d{i:05d}.{ZONE}" for i in range(count)]
    with db.transaction() as session:
        update_settings(
            session,
            {
                "spf_include": f"include:spf.{ZONE}",
                "dkim_selector": "key1",
                "sender_domain_target": TARGET,
                "link_tracker_target": f"track.{TARGET}",
                "open_tracker_target": f"track.{TARGET}",
            },
        )
        group = UserGroup(name="Bench", sender_domain_management=True)
        session.add(group)
        session.add(User(username="bench", email="bench@example.com", group=group))
        session.flush()
        session.execute(update(Installation).values(hash_secret="bench-secret"))
        for name in names:
            create_sender_domain(session, "bench", name, actor="bench")
    return names


def _zone(db: Database, names: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """The zone text publishing every stored record, and the (name, type) questions."""
    body = [
        record_line(TARGET, "A", "192.0.2.10"),
        record_line(TARGET, "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
        record_line(f"key1._domainkey.{TARGET}", "TXT", f"v=DKIM1; k=rsa; p={_dkim_key()}"),
        record_line(f"_dmarc.{TARGET}", "TXT", "v=DMARC1; p=none;"),
        record_line(f"track.{TARGET}", "A", "192.0.2.20"),
        record_line(f"spf.{ZONE}", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    ]
    questions: list[tuple[str, str]] = []
    with db.session() as session:
        rows = session.scalars(select(SenderDomain).where(SenderDomain.domain.in_(names))).all()
        for row in rows:
            body.append(record_line(row.domain, "TXT", f"v=spf1 include:spf.{ZONE} ~all"))
            for record in row.records:
                body.append(record_line(record.host, record.type, record.value))
                questions.append((record.host, record.type))
    return zone_text(ZONE, body), questions


def _kdig_loop(peer: DnsPeer, questions: list[tuple[str, str]]) -> tuple[float, int]:
    kdig = shutil.which("kdig")
    if kdig is None:
        raise SystemExit("kdig is not installed (apt-get install -y knot-dnsutils)")
    answered = 0
    started = time.perf_counter()
    for name, rtype in questions:
        result = subprocess.run(
            [kdig, "@127.0.0.1", "-p", str(peer.port), name, rtype, "+short"],
            capture_output=True,
            text=True,
            check=False,
        )
        answered += bool(result.stdout.strip())
    return time.perf_counter() - started, answered


def _reset(db: Database) -> None:
    """Every domain pending again, so each timed run does the same work."""
    with db.transaction() as session:
        session.execute(
            update(SenderDomain).values(status=DomainStatus.APPROVAL_PENDING, verified_at=None)
        )


async def _verify(
    db: Database, names: list[str], peer: DnsPeer, concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds of one verify_many (CPU: all threads of this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    reports = await verify_many(db, names, nameserver=peer.address, concurrency=concurrency)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    statuses = Counter(report.status for report in reports)
    warnings = sum(len(report.warnings) for report in reports)
    if statuses != Counter(ok=len(names)) or warnings:
        raise SystemExit(f"verify_many did not pass every domain: {statuses}, {warnings} warnings")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--kdig-sample",
        type=int,
        default=0,
        help="time kdig on this many random records and extrapolate (0 = every record)",
    )
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        raise SystemExit(reason)

    with tempfile.TemporaryDirectory(prefix="postroom-dns-bench-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        started = time.perf_counter()
        names = _seed(db, args.domains)
        zone, questions = _zone(db, names)
        peer = start_server(Path(tmp) / "zones", {ZONE: zone})
        print(
            f"setup: {len(names)} domains, {len(questions)} records, zone served by NSD on "
            f"127.0.0.1:{peer.port} ({time.perf_counter() - started:.1f} s)"
        )
        try:
            runs: list[tuple[float, float]] = []
            for _ in range(max(1, args.runs)):
                _reset(db)
                runs.append(asyncio.run(_verify(db, names, peer, args.concurrency)))
            sample = questions
            if 0 < args.kdig_sample < len(questions):
                sample = random.Random(1).sample(questions, args.kdig_sample)
            kdig_time, answered = _kdig_loop(peer, sample)
        finally:
            peer.stop()
            db.dispose()

    if answered != len(sample):
        raise SystemExit(f"kdig got answers for only {answered} of {len(sample)} records")
    kdig_total = kdig_time * len(questions) / len(sample)
    kdig_label = (
        f"{kdig_total:.2f} s"
        if sample is questions
        else f"{kdig_total:.2f} s (extrapolated from {len(sample)} records in {kdig_time:.2f} s)"
    )
    median = statistics.median(wall for wall, _ in runs)
    ratio = kdig_total / median
    print(
        f"verify_many, {len(names)} domains (pending -> enabled), concurrency "
        f"{args.concurrency}: median {median:.2f} s, {len(names) / median:.0f} domains/s "
        f"(runs: {', '.join(f'{wall:.2f}' for wall, _ in runs)} s; CPU time of this process: "
        f"{', '.join(f'{cpu:.2f}' for _, cpu in runs)} s)"
    )
    print(f"kdig loop, one process per record, {len(questions)} records: {kdig_label}")
    print(f"ratio: verify_many is {ratio:.1f}x faster than the kdig loop")
    print(
        "(verify_many also checks SPF/DKIM/DMARC, and stores every result with audit entries; "
        "kdig only asks)"
    )
    within = median <= TARGET_TIME * len(names) / 1000 and ratio >= TARGET_RATIO
    print(
        f"target (<= {TARGET_TIME:g} s per 1,000 domains, >= {TARGET_RATIO:g}x): "
        + ("met" if within else "NOT met")
    )


if __name__ == "__main__":
    main()
