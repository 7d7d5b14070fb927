"""The delivery queue protocol (DESIGN.md): claim with a lease, renew, acknowledge, rescue.

Every queue item is a row. A send engine claims a small batch of due items of running
campaigns by setting ``status = in_flight`` with its id as ``lease_owner`` and a lease
expiry, all in one short transaction that no other engine can interleave with:

- PostgreSQL: ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) RETURNING``;
  concurrent claimers skip each other's rows instead of waiting for them.
- SQLite: the same UPDATE … RETURNING inside ``BEGIN IMMEDIATE``: one writer at a time.
- MariaDB (no UPDATE … RETURNING): ``SELECT … FOR UPDATE SKIP LOCKED``, then an UPDATE
  that only takes rows still claimable, then a read of what this very claim took.

Each outcome is written as soon as it is known, and only while the lease is still the
engine's (``lease_owner`` matches): a lease that expired and was handed to another engine
is not overwritten. Leases of a dead engine come back: at once when an engine starts with
its id (``take_back``), else when they expire (``rescue_expired``, run by any engine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    column,
    func,
    select,
    text,
    update,
)
from sqlalchemy import values as sa_values
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from app.models import Campaign, QueueItem
from app.models.base import CampaignStatus, QueueStatus, UtcDateTime, utcnow
from app.models.database import WRITE_OPTION
from app.models.sending import CLAIMABLE_WHERE, IN_FLIGHT_WHERE

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES = 5
# MariaDB: deadlock victim, lock wait timeout.
_MARIADB_RETRY_CODES = (1213, 1205)


def _worth_retrying(exc: OperationalError) -> bool:
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MARIADB_RETRY_CODES
    lowered = str(exc.orig).lower()
    return "database is locked" in lowered or "database is busy" in lowered


ITEMS: Table = QueueItem.__table__  # type: ignore[assignment]
CAMPAIGNS: Table = Campaign.__table__  # type: ignore[assignment]
# SMTP replies can be long; what is kept is enough to read why, not the whole transcript.
REPLY_LENGTH = 2000
HELD_REASON_LENGTH = 200


@dataclass(frozen=True)
class ClaimedItem:
    """An item leased to an engine: what the worker needs to build and send it."""

    id: int
    campaign_id: int
    recipient: str
    message_id: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed item, for ``DeliveryQueue.record``."""

    item_id: int
    status: QueueStatus  # SENT, DEFERRED or FAILED
    reply: str | None = None
    server_name: str | None = None
    retry_at: datetime | None = None  # for DEFERRED


def claim_candidates(
    now: datetime, batch: int, running: Iterable[int] | Select[Any]
) -> Select[Any]:
    """The ids a claim takes: due, claimable items of running campaigns, locked or skipped.

    The status test is literal SQL, word for word the claim index's WHERE clause:
    PostgreSQL and SQLite use a partial index only when the query visibly implies its
    condition, which a bound parameter would hide. No ORDER BY: the index's own order
    (deferred, then queued, each by due time) is served without sorting the due rows.
    """
    return (
        select(ITEMS.c.id)
        .where(
            text(CLAIMABLE_WHERE),
            ITEMS.c.next_attempt_at <= now,
            ITEMS.c.campaign_id.in_(running if isinstance(running, Select) else list(running)),
        )
        .limit(batch)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL and MariaDB
    )


def leased_to(engine_id: str, item_ids: Iterable[int] | None = None) -> ColumnElement[bool]:
    """In flight under ``engine_id``'s lease (literal status: the lease index is partial)."""
    condition = and_(ITEMS.c.lease_owner == engine_id, text(IN_FLIGHT_WHERE))
    if item_ids is not None:
        condition = and_(ITEMS.c.id.in_(list(item_ids)), condition)
    return condition


def running_campaigns() -> Select[Any]:
    return select(CAMPAIGNS.c.id).where(CAMPAIGNS.c.status == CampaignStatus.RUNNING)


def _reply(text_: str | None) -> str | None:
    return text_[:REPLY_LENGTH] if text_ is not None else None


class DeliveryQueue:
    """The queue as one engine sees it: every call is one short committed transaction.

    It keeps one database connection, so it belongs to one thread; ``close`` it when done.
    """

    def __init__(self, engine: Engine, engine_id: str) -> None:
        self.engine = engine
        self.engine_id = engine_id
        self.backend = engine.dialect.name
        self._connection: Connection | None = None
        self._only: int | None = None  # claim's campaign filter, for its helpers

    def _connected(self) -> Connection:
        # One connection kept for the queue's life: a pool checkout per transaction costs
        # a liveness ping and a reset, two round trips more than the work itself.
        if self._connection is None or self._connection.closed:
            # BEGIN IMMEDIATE on SQLite (see database._tune_sqlite); harmless elsewhere.
            options: dict[str, Any] = {WRITE_OPTION: True}
            if self.backend in ("mysql", "mariadb"):
                # InnoDB's default REPEATABLE READ locks index gaps; a claim and another
                # engine's acknowledgement then deadlock over rows neither needs.
                options["isolation_level"] = "READ COMMITTED"
            self._connection = self.engine.connect().execution_options(**options)
        return self._connection

    def close(self) -> None:
        """Give the connection back (the queue reconnects if used again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ------------------------------------------------------------ claiming

    def claim(
        self,
        batch: int,
        lease_seconds: float,
        *,
        now: datetime | None = None,
        campaign_id: int | None = None,
    ) -> list[ClaimedItem]:
        """Lease up to ``batch`` due items of running campaigns (or of one) to this engine."""
        now = now or utcnow()
        self._only = campaign_id
        expires = now + timedelta(seconds=lease_seconds)
        claim = (
            self._claim_mariadb if self.backend in ("mysql", "mariadb") else self._claim_returning
        )
        rows = self._transaction(lambda connection: claim(connection, batch, now, expires))
        claimed = [
            ClaimedItem(r.id, r.campaign_id, r.recipient, r.message_id, r.attempts) for r in rows
        ]
        if claimed:
            log.debug("engine %s claimed %d item(s)", self.engine_id, len(claimed))
        return claimed

    def _claim_returning(
        self, connection: Connection, batch: int, now: datetime, expires: datetime
    ) -> Sequence[Any]:
        statement = (
            update(ITEMS)
            .where(ITEMS.c.id.in_(claim_candidates(now, batch, self._running())))
            .values(
                status=QueueStatus.IN_FLIGHT,
                lease_owner=self.engine_id,
                lease_expires_at=expires,
                held_reason=None,
            )
            .returning(
                ITEMS.c.id,
                ITEMS.c.campaign_id,
                ITEMS.c.recipient,
                ITEMS.c.message_id,
                ITEMS.c.attempts,
            )
        )
        return connection.execute(statement).all()

    def _running(self) -> Select[Any]:
        query = running_campaigns()
        if self._only is not None:
            query = query.where(CAMPAIGNS.c.id == self._only)
        return query

    def _claim_mariadb(
        self, connection: Connection, batch: int, now: datetime, expires: datetime
    ) -> Sequence[Any]:
        # Running campaigns first, in a plain read: a locking read that joined campaigns
        # would lock their rows too, and SKIP LOCKED would then hide whole campaigns.
        running = connection.scalars(self._running()).all()
        if not running:
            return []
        ids = connection.scalars(claim_candidates(now, batch, running)).all()
        if not ids:
            return []
        # Conditional: only rows still claimable are taken, so even without the row locks
        # (a reader that raced us) an item cannot be claimed twice.
        connection.execute(
            update(ITEMS)
            .where(ITEMS.c.id.in_(ids), text(CLAIMABLE_WHERE))
            .values(
                status=QueueStatus.IN_FLIGHT,
                lease_owner=self.engine_id,
                lease_expires_at=expires,
                held_reason=None,
            )
        )
        return connection.execute(
            select(
                ITEMS.c.id,
                ITEMS.c.campaign_id,
                ITEMS.c.recipient,
                ITEMS.c.message_id,
                ITEMS.c.attempts,
            ).where(
                ITEMS.c.id.in_(ids),
                ITEMS.c.lease_owner == self.engine_id,
                ITEMS.c.lease_expires_at == expires,
                ITEMS.c.status == QueueStatus.IN_FLIGHT,
            )
        ).all()

    def renew(self, lease_seconds: float, *, now: datetime | None = None) -> int:
        """Extend every lease this engine holds (the heartbeat); how many it holds."""
        expires = (now or utcnow()) + timedelta(seconds=lease_seconds)
        return self._update(self._mine(), lease_expires_at=expires)

    # ------------------------------------------------------------ outcomes

    def _mine(self, item_ids: Iterable[int] | None = None) -> ColumnElement[bool]:
        return leased_to(self.engine_id, item_ids)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, again if the database asked for that.

        SQLite's busy handler polls, it does not queue: under load, engines that take the
        write lock back to back can starve one waiter past the busy timeout. InnoDB picks
        a deadlock victim now and then. The work is one short statement group whose
        conditions hold on a retry, so starting it again is safe and soon succeeds.
        """
        for attempt in range(1, RETRIES + 1):
            connection = self._connected()
            try:
                with connection.begin():
                    return work(connection)
            except OperationalError as exc:
                if not _worth_retrying(exc) or attempt == RETRIES:
                    self.close()  # a lost server: the next call starts on a fresh connection
                    raise
                log.debug("engine %s: database busy (%s), trying again", self.engine_id, exc.orig)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _update(self, condition: ColumnElement[bool], **values: Any) -> int:
        statement = update(ITEMS).where(condition).values(**values)
        return self._transaction(lambda connection: int(connection.execute(statement).rowcount))

    def mark_sent(
        self, item: ClaimedItem, reply: str, server_name: str | None, *, now: datetime | None = None
    ) -> bool:
        """The server accepted it (250); False if the lease was no longer this engine's."""
        return self.record([Outcome(item.id, QueueStatus.SENT, reply, server_name)], now=now) == 1

    def mark_deferred(
        self,
        item: ClaimedItem,
        reply: str,
        retry_at: datetime,
        server_name: str | None = None,
    ) -> bool:
        """A temporary failure: back in the queue, due again at ``retry_at``."""
        outcome = Outcome(item.id, QueueStatus.DEFERRED, reply, server_name, retry_at)
        return self.record([outcome]) == 1

    def mark_failed(self, item: ClaimedItem, reply: str, server_name: str | None = None) -> bool:
        """A permanent failure (5xx, no route, too many attempts), with the reason."""
        return self.record([Outcome(item.id, QueueStatus.FAILED, reply, server_name)]) == 1

    def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        now: datetime | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> int:
        """Write several outcomes in one transaction; how many leases were still ours.

        ``also`` runs in the same transaction (the engine adds the sends to the limit
        ledgers there, so a count and its outcome are committed together or not at all).
        """
        when = now or utcnow()
        for outcome in outcomes:
            if outcome.status not in (QueueStatus.SENT, QueueStatus.DEFERRED, QueueStatus.FAILED):
                raise ValueError(f"not an outcome status: {outcome.status}")

        # One UPDATE per outcome kind, executed with every item's parameters at once
        # (executemany): a statement per item costs a round trip and SQLAlchemy's work each.
        groups: dict[QueueStatus, list[dict[str, Any]]] = {}
        for outcome in outcomes:
            groups.setdefault(outcome.status, []).append(
                {
                    "item_id": outcome.item_id,
                    "reply": _reply(outcome.reply),
                    "server": outcome.server_name,
                    "retry_at": outcome.retry_at or when,
                }
            )

        def write(connection: Connection) -> int:
            done = 0
            for status, params in groups.items():
                values: dict[str, Any] = {
                    "status": status,
                    "attempts": ITEMS.c.attempts + 1,
                    "lease_owner": None,
                    "lease_expires_at": None,
                }
                if status is QueueStatus.SENT:
                    values["sent_at"] = when
                mine = (ITEMS.c.lease_owner == self.engine_id, text(IN_FLIGHT_WHERE))
                shared = {(p["reply"], p["server"], p["retry_at"]) for p in params}
                if len(shared) == 1:
                    # The same words for every item (a batch failed for one reason): one
                    # statement over the ids, whose compiled form SQLAlchemy caches.
                    reply, server, retry_at = shared.pop()
                    values |= {"last_reply": reply, "server_name": server}
                    if status is QueueStatus.DEFERRED:
                        values["next_attempt_at"] = retry_at
                    ids = [p["item_id"] for p in params]
                    statement = update(ITEMS).where(ITEMS.c.id.in_(ids), *mine).values(**values)
                    done += int(connection.execute(statement).rowcount)
                    continue
                if self.backend == "postgresql":
                    # One statement joining a VALUES list: a batch costs one round trip.
                    rows = sa_values(
                        column("item_id", Integer),
                        column("reply", Text),
                        column("server", String),
                        column("retry_at", UtcDateTime()),
                        name="outcomes",
                    ).data([(p["item_id"], p["reply"], p["server"], p["retry_at"]) for p in params])
                    values |= {"last_reply": rows.c.reply, "server_name": rows.c.server}
                    if status is QueueStatus.DEFERRED:
                        values["next_attempt_at"] = rows.c.retry_at
                    statement = (
                        update(ITEMS).where(ITEMS.c.id == rows.c.item_id, *mine).values(**values)
                    )
                    done += int(connection.execute(statement).rowcount)
                    continue
                # Elsewhere executemany: in-process for SQLite, batched by PyMySQL.
                values |= {"last_reply": bindparam("reply"), "server_name": bindparam("server")}
                if status is QueueStatus.DEFERRED:
                    values["next_attempt_at"] = bindparam("retry_at", type_=UtcDateTime())
                statement = (
                    update(ITEMS).where(ITEMS.c.id == bindparam("item_id"), *mine).values(**values)
                )
                done += int(connection.execute(statement, params).rowcount)
            if also is not None:
                also(connection)
            return done

        return self._transaction(write)

    def hold(self, item: ClaimedItem, reason: str, *, until: datetime | None = None) -> bool:
        """A limit or quota stops it now: held with the reason, not attempted, lease given up.

        ``until`` is when the window allows it again (``release_held`` with ``now``).
        """
        return (
            self._update(
                self._mine([item.id]),
                status=QueueStatus.HELD,
                held_reason=reason[:HELD_REASON_LENGTH],
                next_attempt_at=until,
                lease_owner=None,
                lease_expires_at=None,
            )
            == 1
        )

    def hold_many(
        self, item_ids: Sequence[int], reason: str, *, until: datetime | None = None
    ) -> int:
        """``hold`` for several claimed items with one reason, in one statement."""
        if not item_ids:
            return 0
        return self._update(
            self._mine(item_ids),
            status=QueueStatus.HELD,
            held_reason=reason[:HELD_REASON_LENGTH],
            next_attempt_at=until,
            lease_owner=None,
            lease_expires_at=None,
        )

    def hold_waiting(
        self, campaign_ids: Sequence[int], reason: str, *, until: datetime | None = None
    ) -> int:
        """Hold every queued or deferred item of these campaigns (a limit reached for all).

        Claiming them one batch at a time only to hold them again would churn through the
        whole campaign; one UPDATE parks them until ``until`` (``release_held``).
        """
        if not campaign_ids:
            return 0
        return self._update(
            and_(text(CLAIMABLE_WHERE), ITEMS.c.campaign_id.in_(list(campaign_ids))),
            status=QueueStatus.HELD,
            held_reason=reason[:HELD_REASON_LENGTH],
            next_attempt_at=until,
        )

    def release_held(
        self,
        *,
        reason: str | None = None,
        campaign_id: int | None = None,
        now: datetime | None = None,
    ) -> int:
        """Held items back to the queue: those of one reason / campaign, or whose window came.

        With ``now`` only items held until a time at or before it (or with no time) go.
        """
        conditions: list[ColumnElement[bool]] = [ITEMS.c.status == QueueStatus.HELD]
        if reason is not None:
            conditions.append(ITEMS.c.held_reason == reason)
        if campaign_id is not None:
            conditions.append(ITEMS.c.campaign_id == campaign_id)
        if now is not None:
            conditions.append(
                (ITEMS.c.next_attempt_at.is_(None)) | (ITEMS.c.next_attempt_at <= now)
            )
        return self._update(
            and_(*conditions),
            status=QueueStatus.QUEUED,
            held_reason=None,
            next_attempt_at=now or utcnow(),
        )

    # ------------------------------------------------------------ leases coming back

    def release(self) -> int:
        """Give back every item this engine holds but has not sent (a graceful stop)."""
        count = self._return(self._mine())
        if count:
            log.info("engine %s released %d unsent item(s)", self.engine_id, count)
        return count

    def take_back(self) -> int:
        """At start: the leases a previous engine of this id left behind go back at once."""
        count = self._return(self._mine())
        if count:
            log.warning(
                "engine %s took back %d item(s) its previous run left in flight",
                self.engine_id,
                count,
            )
        return count

    def rescue_expired(self, *, now: datetime | None = None) -> int:
        """Other engines' expired leases back to the queue (their engine died or hung)."""
        condition = and_(
            text(IN_FLIGHT_WHERE),
            ITEMS.c.lease_expires_at < (now or utcnow()),
            ITEMS.c.lease_owner != self.engine_id,
        )
        count = self._return(condition)
        if count:
            log.warning(
                "engine %s returned %d expired lease(s) to the queue", self.engine_id, count
            )
        return count

    def _return(self, condition: ColumnElement[bool]) -> int:
        # next_attempt_at is left as it was: the item was due when claimed, so it is due now.
        return self._update(
            condition, status=QueueStatus.QUEUED, lease_owner=None, lease_expires_at=None
        )

    # ------------------------------------------------------------ campaigns

    def complete_finished_campaigns(self, *, now: datetime | None = None) -> int:
        """Running campaigns whose every item is sent or failed become completed."""
        unfinished = (
            select(ITEMS.c.id)
            .where(
                ITEMS.c.campaign_id == CAMPAIGNS.c.id,
                ITEMS.c.status.not_in([QueueStatus.SENT, QueueStatus.FAILED]),
            )
            .exists()
        )
        statement = (
            update(CAMPAIGNS)
            .where(CAMPAIGNS.c.status == CampaignStatus.RUNNING, ~unfinished)
            .values(
                status=CampaignStatus.COMPLETED,
                finished_at=now or utcnow(),
                version=CAMPAIGNS.c.version + 1,  # the console's optimistic lock
            )
        )
        return self._transaction(lambda connection: int(connection.execute(statement).rowcount))


def queue_counts(engine: Engine) -> dict[str, int]:
    """Items per status over every campaign (for logs and the dashboard)."""
    with engine.connect() as connection:
        rows = connection.execute(select(ITEMS.c.status, func.count()).group_by(ITEMS.c.status))
        return {QueueStatus(status).value: int(count) for status, count in rows}
