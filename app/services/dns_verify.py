"""Live DNS checks of stored sender domains: the results stored, one domain or many.

Decisions:

* The checks themselves are in dns_record_checks (records) and dns_auth_checks (SPF, DKIM,
  DMARC advice); this module reads the domains, runs the checks and stores the outcome.
* Only ``ok`` enables a pending domain, and an ``error`` never marks an enabled domain as
  broken: a local network outage is not the customer's fault.
* Storing a check result does not bump the domain's version: a check is not an edit, and a
  background recheck must not make an administrator's open edit form stale. A status
  change (approval pending -> enabled) is an edit and does.
* A bulk check stores its results in batches while the checks go on, and reads the
  domains with Core queries, not ORM objects: thousands of domains are checked in seconds,
  and building or updating mapped objects cost more than checking them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.models import DomainStatus, SenderDomain, SenderDomainRecord, TemplateKind
from app.models.base import utcnow
from app.models.database import Database
from app.services import audit, validation
from app.services.dns_lookup import DEFAULT_TIMEOUT, Discovery, DnsLookup
from app.services.dns_record_checks import check_domain
from app.services.dns_records import CheckWarning, DnsExpectations, DomainReport, ExpectedRecord
from app.services.dns_settings import EffectiveDnsSettings, get_settings
from app.services.dns_wire import Server
from app.services.errors import PostroomError, ValidationError
from app.services.sender_domains import ENTITY, get_sender_domain

__all__ = [
    "ProgressCallback",
    "recheck_enabled",
    "recheck_enabled_once",
    "verify_many",
    "verify_sender_domain",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, DomainReport], None]

_WRITE_BATCH = 100  # domains stored per write transaction during a bulk check
_QUERY_CHUNK = 500  # names per IN (...) list, well below every backend's parameter limit
DEFAULT_CONCURRENCY = 50  # domains checked at once by a bulk check


@dataclass(frozen=True)
class _Snapshot:
    """What a check needs of a stored domain, read in one short session."""

    id: int
    domain: str
    kind: TemplateKind
    status: DomainStatus
    record_ids: tuple[int, ...]
    records: tuple[ExpectedRecord, ...]


def _snapshots(session: Session, condition: ColumnElement[bool]) -> list[_Snapshot]:
    """The domains matching ``condition``, with their records, read as plain rows.

    Two Core queries instead of ORM objects: a bulk check loads thousands of domains, and
    building mapped objects for them cost more than checking them.
    """
    domains = session.execute(
        select(SenderDomain.id, SenderDomain.domain, SenderDomain.kind, SenderDomain.status)
        .where(condition)
        .order_by(SenderDomain.domain, SenderDomain.kind)
    ).all()
    ids = [row.id for row in domains]
    records: dict[int, list[Any]] = {domain_id: [] for domain_id in ids}
    for start in range(0, len(ids), _QUERY_CHUNK):
        query = (
            select(
                SenderDomainRecord.sender_domain_id,
                SenderDomainRecord.id,
                SenderDomainRecord.host,
                SenderDomainRecord.type,
                SenderDomainRecord.value,
            )
            .where(SenderDomainRecord.sender_domain_id.in_(ids[start : start + _QUERY_CHUNK]))
            .order_by(SenderDomainRecord.position, SenderDomainRecord.id)
        )
        for row in session.execute(query):
            records[row.sender_domain_id].append(row)
    return [
        _Snapshot(
            id=row.id,
            domain=row.domain,
            kind=row.kind,
            status=row.status,
            record_ids=tuple(r.id for r in records[row.id]),
            records=tuple(ExpectedRecord(r.host, r.type, r.value) for r in records[row.id]),
        )
        for row in domains
    ]


def _load_one(
    db: Database, domain: str, kind: TemplateKind | str
) -> tuple[_Snapshot, EffectiveDnsSettings]:
    with db.session() as session:
        found = get_sender_domain(session, domain, kind)  # NotFoundError names the domain
        (snapshot,) = _snapshots(session, SenderDomain.id == found.id)
        return snapshot, get_settings(session)


def _load_many(
    db: Database, names: Sequence[str]
) -> tuple[dict[tuple[str, TemplateKind], _Snapshot], EffectiveDnsSettings]:
    found: dict[tuple[str, TemplateKind], _Snapshot] = {}
    with db.session() as session:
        for start in range(0, len(names), _QUERY_CHUNK):
            chunk = names[start : start + _QUERY_CHUNK]
            for snapshot in _snapshots(session, SenderDomain.domain.in_(chunk)):
                found[(snapshot.domain, snapshot.kind)] = snapshot
        return found, get_settings(session)


def _load_enabled(db: Database) -> tuple[list[_Snapshot], EffectiveDnsSettings]:
    with db.session() as session:
        enabled = _snapshots(session, SenderDomain.status == DomainStatus.ENABLED)
        # A domain without records (empty template) has nothing that could break.
        return [s for s in enabled if s.records], get_settings(session)


def _was_broken(stored_report: str | None) -> bool:
    if not stored_report:
        return False
    try:
        previous = json.loads(stored_report)
    except ValueError:
        return False
    return isinstance(previous, dict) and previous.get("broken") is True


def _store(
    db: Database,
    results: Sequence[tuple[_Snapshot, DomainReport]],
    *,
    audit_all: bool,
    actor: str | None,
) -> None:
    """Record check results; enable pending domains whose records all pass; flag broken ones.

    ``audit_all=False`` (the periodic recheck) writes an audit entry only when something
    changed (status, or broken/not broken), so a schedule doesn't flood the log.

    Rows are read and written with Core statements, one executemany per kind of change:
    ORM objects and per-row UPDATEs made storing a bulk check slower than checking it.
    """
    now = utcnow()
    domains = SenderDomain.metadata.tables[SenderDomain.__tablename__]
    records = SenderDomainRecord.metadata.tables[SenderDomainRecord.__tablename__]
    with db.transaction() as session:
        # Locked (PostgreSQL/MariaDB; SQLite's write transaction is exclusive anyway), so
        # no edit lands between reading a status and moving it.
        current = {
            row.id: row
            for row in session.execute(
                select(domains.c.id, domains.c.status, domains.c.last_check_report)
                .where(domains.c.id.in_([snapshot.id for snapshot, _ in results]))
                .with_for_update()
            )
        }
        checks: list[dict[str, Any]] = []
        enabled: list[dict[str, Any]] = []
        outcomes: list[dict[str, Any]] = []
        for snapshot, report in results:
            row = current.get(snapshot.id)
            if row is None:
                continue  # deleted while it was being checked: nothing left to update
            old_status = DomainStatus(row.status)
            new_status = old_status
            if report.status == "ok" and old_status is DomainStatus.APPROVAL_PENDING:
                new_status = DomainStatus.ENABLED
                enabled.append({"b_id": snapshot.id})
            report.broken = old_status is DomainStatus.ENABLED and report.status == "failed"
            stored = {**report.as_dict(), "broken": report.broken, "checked_at": now.isoformat()}
            checks.append(
                {"b_id": snapshot.id, "b_at": now, "b_report": json.dumps(stored, sort_keys=True)}
            )
            outcomes.extend(
                {"b_id": record_id, "b_ok": result.ok}
                for record_id, result in zip(snapshot.record_ids, report.records, strict=True)
                # An unanswered question says nothing about the record: keep the last result.
                if result.problem != "lookup_failed"
            )
            changed = new_status is not old_status
            if audit_all or changed or report.broken != _was_broken(row.last_check_report):
                details: dict[str, Any] = {
                    "kind": snapshot.kind.value,
                    "result": report.status,
                    "failed": [r.host for r in report.records if not r.ok],
                    "broken": report.broken,
                }
                if changed:
                    details["status"] = [old_status.value, new_status.value]
                audit.record(session, "verify", ENTITY, snapshot.domain, details, actor=actor)
        if checks:
            # Leaves version and updated_at alone: a check is not an edit.
            session.execute(
                update(domains)
                .where(domains.c.id == bindparam("b_id"))
                .values(
                    last_check_at=bindparam("b_at"),
                    last_check_report=bindparam("b_report"),
                    updated_at=domains.c.updated_at,
                ),
                checks,
            )
        if enabled:
            # A status change is an edit: it bumps the version as the ORM would, so a form
            # opened before it is refused on save (VersionedMixin).
            session.execute(
                update(domains)
                .where(domains.c.id == bindparam("b_id"))
                .values(
                    status=DomainStatus.ENABLED,
                    verified_at=now,
                    updated_at=now,
                    version=domains.c.version + 1,
                ),
                enabled,
            )
        if outcomes:
            session.execute(
                update(records)
                .where(records.c.id == bindparam("b_id"))
                .values(last_ok=bindparam("b_ok")),
                outcomes,
            )


async def _verify_snapshot(
    lookup: DnsLookup, snapshot: _Snapshot, settings: DnsExpectations
) -> DomainReport:
    report = await check_domain(lookup, snapshot.domain, snapshot.records, settings)
    report.kind = snapshot.kind.value
    # Provisional until stored, where the row's current status decides.
    report.broken = snapshot.status is DomainStatus.ENABLED and report.status == "failed"
    return report


async def verify_sender_domain(
    db: Database,
    domain: str,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    *,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    actor: str | None = None,
) -> DomainReport:
    """Check a stored domain's records and store the result (the "Verify DNS Records" button).

    All records passing moves approval_pending to enabled; an enabled domain that fails
    stays enabled with ``broken`` set; every check writes an audit entry.
    """
    loop = asyncio.get_running_loop()
    snapshot, settings = await loop.run_in_executor(None, _load_one, db, domain, kind)
    async with DnsLookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:
        report = await _verify_snapshot(lookup, snapshot, settings)
    store = functools.partial(_store, db, [(snapshot, report)], audit_all=True, actor=actor)
    await loop.run_in_executor(None, store)
    return report


class _ResultWriter:
    """Stores bulk results in batches while the checks go on, one transaction at a time."""

    def __init__(self, db: Database, *, audit_all: bool, actor: str | None) -> None:
        self._db = db
        self._audit_all = audit_all
        self._actor = actor
        self._pending: list[tuple[_Snapshot, DomainReport]] = []
        self._lock = asyncio.Lock()
        self._writes: list[asyncio.Task[None]] = []

    def add(self, snapshot: _Snapshot, report: DomainReport) -> None:
        self._pending.append((snapshot, report))
        if len(self._pending) >= _WRITE_BATCH:
            self._spawn()

    def _spawn(self) -> None:
        batch, self._pending = self._pending, []
        self._writes.append(asyncio.ensure_future(self._write(batch)))

    async def _write(self, batch: list[tuple[_Snapshot, DomainReport]]) -> None:
        store = functools.partial(
            _store, self._db, batch, audit_all=self._audit_all, actor=self._actor
        )
        async with self._lock:  # FIFO: batches commit in the order they were finished
            await asyncio.get_running_loop().run_in_executor(None, store)

    async def close(self) -> None:
        if self._pending:
            self._spawn()
        await asyncio.gather(*self._writes)

    def abandon(self) -> None:
        for write in self._writes:
            write.cancel()


def _not_found_report(domain: str, kind: str, message: str) -> DomainReport:
    return DomainReport(
        domain=domain,
        kind=kind,
        error=message,
        warnings=[CheckWarning("domain", domain, "not_found", message)],
    )


async def _run_bulk(
    db: Database,
    items: Sequence[tuple[str, str, _Snapshot | None, str]],
    settings: DnsExpectations,
    *,
    concurrency: int,
    progress: ProgressCallback | None,
    nameserver: Server | None,
    discovery: Discovery | None,
    cancel: asyncio.Event | None,
    timeout: float,
    audit_all: bool,
    actor: str | None,
) -> list[DomainReport]:
    if concurrency < 1:
        raise ValidationError("Concurrency", "must be at least 1.")
    total = len(items)
    results: list[DomainReport | None] = [None] * total
    done = 0
    semaphore = asyncio.Semaphore(concurrency)
    writer = _ResultWriter(db, audit_all=audit_all, actor=actor)

    async with DnsLookup(nameserver=nameserver, discovery=discovery, timeout=timeout) as lookup:

        async def check(
            index: int, name: str, kind: str, snapshot: _Snapshot | None, why: str
        ) -> None:
            nonlocal done
            async with semaphore:
                if cancel is not None and cancel.is_set():
                    return  # cancelled: domains not started yet are left out of the result
                if snapshot is None:
                    report = _not_found_report(name, kind, why)
                else:
                    report = await _verify_snapshot(lookup, snapshot, settings)
                    writer.add(snapshot, report)
            results[index] = report
            done += 1
            if progress is not None:
                progress(done, total, report)

        tasks = [asyncio.ensure_future(check(index, *item)) for index, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A failing progress callback or a cancelled caller: stop the rest, and let the
            # caller see the original exception rather than a group of them.
            for task in tasks:
                task.cancel()
            writer.abandon()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    await writer.close()
    return [report for report in results if report is not None]


async def verify_many(
    db: Database,
    domains: Sequence[str | tuple[str, TemplateKind | str]],
    *,
    kind: TemplateKind | str = TemplateKind.CAMPAIGN,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    actor: str | None = None,
) -> list[DomainReport]:
    """Verify many stored domains, at most ``concurrency`` at a time, storing as they finish.

    ``domains`` are names (of ``kind``) or (name, kind) pairs. ``progress(done, total,
    report)`` is called on the event loop after each domain. Setting ``cancel`` stops
    starting new domains; the reports of those finished are stored and returned, in
    input order. An unknown domain gets a report with status ``error``.
    """
    wanted: list[tuple[str, str, str | None, str]] = []  # shown, kind, name, why unknown
    for item in domains:
        shown, item_kind = (item, kind) if isinstance(item, str) else item
        domain_kind = validation.choice(item_kind, "Domain kind", TemplateKind).value
        try:
            name: str | None = validation.domain(shown, "Sender domain")
            why = (
                f"No {domain_kind} sender domain named {name!r} exists; check the name with "
                "the list command."
            )
        except ValidationError as exc:
            name, why = None, str(exc)
        wanted.append((shown, domain_kind, name, why))
    names = sorted({name for _, _, name, _ in wanted if name is not None})
    loop = asyncio.get_running_loop()
    snapshots, settings = await loop.run_in_executor(None, _load_many, db, names)
    items = [
        (
            name or shown,
            domain_kind,
            snapshots.get((name, TemplateKind(domain_kind))) if name else None,
            why,
        )
        for shown, domain_kind, name, why in wanted
    ]
    return await _run_bulk(
        db,
        items,
        settings,
        concurrency=concurrency,
        progress=progress,
        nameserver=nameserver,
        discovery=discovery,
        cancel=cancel,
        timeout=timeout,
        audit_all=True,
        actor=actor,
    )


async def recheck_enabled_once(
    db: Database,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    actor: str | None = None,
) -> list[DomainReport]:
    """Re-verify every enabled domain once; returns the reports of those whose records broke."""
    loop = asyncio.get_running_loop()
    snapshots, settings = await loop.run_in_executor(None, _load_enabled, db)
    reports = await _run_bulk(
        db,
        [(s.domain, s.kind.value, s, "") for s in snapshots],
        settings,
        concurrency=concurrency,
        progress=progress,
        nameserver=nameserver,
        discovery=discovery,
        cancel=cancel,
        timeout=timeout,
        audit_all=False,
        actor=actor,
    )
    return [report for report in reports if report.broken]


async def recheck_enabled(
    db: Database,
    *,
    interval_seconds: float,
    stop: asyncio.Event | None = None,
    on_broken: Callable[[list[DomainReport]], None] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    nameserver: Server | None = None,
    discovery: Discovery | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    actor: str | None = None,
) -> None:
    """Run :func:`recheck_enabled_once` every ``interval_seconds`` until ``stop`` is set."""
    if interval_seconds <= 0:
        raise ValidationError("Recheck interval", "must be more than 0 seconds.")
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            broken = await recheck_enabled_once(
                db,
                concurrency=concurrency,
                nameserver=nameserver,
                discovery=discovery,
                cancel=stop,
                timeout=timeout,
                actor=actor,
            )
        except PostroomError as exc:
            logger.warning("DNS recheck pass failed: %s", exc)
        except Exception:
            # A schedule must outlive one bad pass (database briefly unreachable, ...); the
            # failure goes to the log and the next pass tries again.
            logger.exception("DNS recheck pass failed")
        else:
            if broken and on_broken is not None:
                on_broken(broken)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
