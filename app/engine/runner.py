"""The send engine: claim queue items, deliver them, record every outcome, never lose one.

One process, one asyncio loop, and (for PostgreSQL and MariaDB) one database thread:

* The **feeder** claims small batches of due items under a lease (``DeliveryQueue``), looks
  up each campaign's ``CampaignPlan`` (cached), applies the limits and quotas (``gate``),
  and hands what may go to the workers. It keeps a few batches leased, so a busy engine
  never waits for a claim; leased but unsent items are no risk when it is killed.
* ``concurrency`` **workers** build each message from the prepared campaign and deliver it
  through the server's ``ServerPool`` (connections reused, never more than its Max
  Connections) or write it to the outbox (SaveToDisk).
* The **recorder** writes outcomes as they come, many per transaction, together with the
  limit ledgers. An outcome waits in memory until its transaction commits; a lost database
  only delays it. Workers wait while as many outcomes as there are workers are unrecorded,
  which bounds what a kill -9 can make the engine send twice.
* **Maintenance**, every few seconds: renew this engine's leases, beat the heartbeat,
  return other engines' expired leases, release held items whose window opened, mark
  finished campaigns completed.
* The scheduled **DNS re-check** of enabled sender domains, so broken records are flagged
  even when no console is open.

Database calls to a server run in the one database thread (``DeliveryQueue`` keeps its
connection there), so the loop goes on talking SMTP during the round trips. SQLite calls
run in the loop itself: they are in-process and short, and handing each one to a thread
and back costs more than it (measured: about 11 % of the delivery rate, bench_delivery).
A database error is logged and retried with backoff: the engine waits for PostgreSQL to
come back rather than exiting.

Stopping (SIGTERM, SIGINT or ``request_stop``): claiming stops, workers finish the message
they are sending, every outcome is recorded, the items still leased go back to the queue,
the heartbeat says stopped, and ``run`` returns. ``until_idle`` stops the same way once
nothing is sendable now.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import signal
import socket
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.engine import heartbeats
from app.engine.gate import Gate, GateDecision
from app.engine.outbox import default_outbox, save_eml
from app.engine.plans import PLAN_SECONDS, CampaignPlan, EngineSetup, load_plan, tracking_key
from app.engine.queue import ClaimedItem, DeliveryQueue, Outcome
from app.engine.smtp_pool import ServerPool, Verdict
from app.engine.tracking import TrackingKey
from app.models.base import CampaignStatus, QueueStatus, utcnow
from app.models.database import Database
from app.services.campaigns import get_campaign, pause_if_failing
from app.services.dns_verify import recheck_enabled
from app.services.errors import PostroomError
from app.services.logs import log_context
from app.services.quotas import Delivery, record_deliveries
from app.services.vault import open_vault

log = logging.getLogger(__name__)
T = TypeVar("T")

SAVETODISK = "savetodisk"
# The longest wait between two attempts of one item, however many attempts it has had.
MAX_BACKOFF_SECONDS = 6 * 3600.0
DEFAULT_RECHECK_SECONDS = 6 * 3600.0
# The first DNS re-check waits this long after start (engines restart often in tests and
# deployments; a pass per restart is wasted lookups).
RECHECK_FIRST_DELAY = 120.0
_DB_RETRY_MAX_SECONDS = 10.0
RECORD_GATHER_SECONDS = 0.005
# The database thread gives the GIL back at every driver call; the loop (and then the
# database thread) would otherwise wait up to Python's default 5 ms for it each time.
SWITCH_INTERVAL_SECONDS = 0.0005


def default_engine_id() -> str:
    """POSTROOM_ENGINE_ID, else the host name (a container's is its id)."""
    return os.environ.get("POSTROOM_ENGINE_ID") or socket.gethostname() or "engine"


@dataclass(frozen=True)
class EngineOptions:
    engine_id: str
    concurrency: int = 10
    lease_seconds: float = 60.0
    retry_after: float = 60.0
    max_attempts: int = 8
    until_idle: bool = False
    batch: int | None = None  # items a claim takes; None: claim_batch's rule
    outbox: Path = field(default_factory=default_outbox)
    cafile: str | None = None
    recheck_seconds: float = DEFAULT_RECHECK_SECONDS  # 0: no DNS re-check in this engine
    poll_seconds: float = 1.0  # how often an idle engine looks for due items
    campaign: str | None = None  # only this campaign's items (extra workers for it)
    recheck_first_delay: float = RECHECK_FIRST_DELAY
    # A running campaign whose finished items are this many percent failed (once at least
    # pause_min_items finished) is paused, with the reason (0: never).
    pause_failure_percent: float = 50.0
    pause_min_items: int = 100
    nameserver: tuple[str, int] | None = None  # the DNS re-check asks it, not the zones' own
    install_signal_handlers: bool = True

    @property
    def claim_batch(self) -> int:
        # Five items a worker, at least 50: a claim is a transaction, and a busy engine on
        # a network database spends its time in them (20 workers on PostgreSQL: 4-15 % more
        # messages a second with 100 than with 50; docs/PERFORMANCE.md).
        return self.batch if self.batch is not None else max(50, 5 * self.concurrency)

    @property
    def beat_seconds(self) -> float:
        # Three beats per lease: one lost beat never lets a lease run out.
        return max(0.5, min(10.0, self.lease_seconds / 3))


@dataclass
class EngineTotals:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    held: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "held": self.held,
        }


@dataclass(frozen=True)
class _Done:
    """One finished item waiting for the recorder."""

    outcome: Outcome
    item: ClaimedItem
    plan: CampaignPlan


class SendEngine:
    def __init__(self, db: Database, options: EngineOptions) -> None:
        if options.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.db = db
        self.options = options
        self.totals = EngineTotals()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="postroom-db")
        self._queue = DeliveryQueue(db.engine, options.engine_id)
        self._inline_db = db.engine.dialect.name == "sqlite"
        self._plans: dict[int, tuple[float, CampaignPlan]] = {}
        self._key: TrackingKey | None = None
        self._setup: EngineSetup | None = None
        self._gate: Gate | None = None
        self._pools: dict[int, ServerPool] = {}
        self._work: asyncio.Queue[tuple[ClaimedItem, CampaignPlan]] = asyncio.Queue()
        # Leased and outcome not yet committed, with the plan each was sent with.
        self._taken: dict[int, CampaignPlan] = {}
        # Leased but waiting for room under a limit that this engine's in-flight messages
        # hold (see gate.GateDecision.wait); decided again as outcomes are recorded.
        self._waiting: dict[int, ClaimedItem] = {}
        self._workers_done = False
        self._done: list[_Done] = []
        self._done_ready = asyncio.Event()
        # Delivered but not yet committed (waiting or in the commit under way): what a kill
        # would send twice. Workers wait before sending more once it reaches the bound.
        self._unrecorded = 0
        self._recorded = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._busy: Counter[int] = Counter()  # campaign id -> workers sending for it now
        self._peak_workers: Counter[int] = Counter()
        self._campaign_totals: dict[int, Counter[str]] = defaultdict(Counter)
        self._stop_reason = ""
        self._campaign_id: int | None = None
        self._failures_seen: dict[int, int] = {}  # campaign id -> failures already checked

    # ------------------------------------------------------------ the database thread

    async def _db(self, work: Callable[..., T], *args: Any) -> T:
        if self._inline_db:
            return work(*args)
        loop = asyncio.get_running_loop()
        # The caller's log context (engine, campaign) goes along to the database thread.
        context = contextvars.copy_context()
        call = functools.partial(context.run, work, *args)
        return await loop.run_in_executor(self._executor, call)

    async def _db_retrying(self, what: str, work: Callable[..., T], *args: Any) -> T:
        """``_db`` until it succeeds: a database that went away is waited for."""
        delay = 0.5
        while True:
            try:
                return await self._db(work, *args)
            except SQLAlchemyError as exc:
                await self._db(self._queue.close)
                log.warning(
                    "database unavailable while %s (%s); trying again in %.1f s",
                    what,
                    _first_line(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(_DB_RETRY_MAX_SECONDS, delay * 2)

    def _sync_start(self) -> int:
        with self.db.session() as session:
            self._key = tracking_key(session)
            if self.options.campaign is not None:
                self._campaign_id = get_campaign(session, self.options.campaign).id
        cipher, problem = None, None
        try:
            with self.db.transaction() as session:
                cipher = open_vault(session, create=False)
        except PostroomError as exc:
            # Servers without a password still send; those with one hold their items.
            problem = str(exc)
            log.warning("no vault key: %s", problem)
        self._setup = EngineSetup(cipher, problem, self.options.outbox, self.options.cafile)
        self._gate = Gate(self._queue)
        return self._queue.take_back()

    def _plan(self, session: Session, campaign_id: int, now: float) -> CampaignPlan | None:
        cached = self._plans.get(campaign_id)
        if cached is not None and now - cached[0] < PLAN_SECONDS:
            return cached[1]
        assert self._setup is not None and self._key is not None
        plan = load_plan(session, campaign_id, self._setup, self._key)
        if plan is None:
            self._plans.pop(campaign_id, None)
        else:
            self._plans[campaign_id] = (now, plan)
        return plan

    def _sync_claim(
        self, count: int, clock: float, in_flight: tuple[Counter[int], Counter[int]]
    ) -> list[GateDecision]:
        claimed = self._queue.claim(
            count, self.options.lease_seconds, campaign_id=self._campaign_id
        )
        return self._sync_decide(claimed, clock, in_flight) if claimed else []

    def _sync_decide(
        self,
        items: list[ClaimedItem],
        clock: float,
        in_flight: tuple[Counter[int], Counter[int]],
    ) -> list[GateDecision]:
        """The gate's decision on leased items (just claimed, or waiting for room)."""
        assert self._gate is not None
        with self.db.session() as session:
            plans: dict[int, CampaignPlan | None] = {}
            for item in items:
                if item.campaign_id not in plans:
                    plans[item.campaign_id] = self._plan(session, item.campaign_id, clock)
            return self._gate.decide(session, items, plans, in_flight)

    def _in_flight_counts(self) -> tuple[Counter[int], Counter[int]]:
        """Items leased and not yet recorded, per user and per server (limits count them).

        Read in the loop's thread, which owns ``_taken``; the plans are the ones the items
        were given to the workers with.
        """
        users: Counter[int] = Counter()
        servers: Counter[int] = Counter()
        for item_id, plan in self._taken.items():
            if item_id in self._waiting:
                continue
            users[plan.user_id] += 1
            if plan.server is not None:
                servers[plan.server.id] += 1
        return users, servers

    def _sync_record(self, done: list[_Done]) -> int:
        deliveries = [
            Delivery(
                d.plan.user_id,
                d.plan.server.id if d.plan.server is not None else None,
                d.plan.via_default_domain,
                1,
            )
            for d in done
            if d.outcome.status is QueueStatus.SENT
        ]

        def ledgers(connection: Connection) -> None:
            if deliveries:
                record_deliveries(connection, deliveries)

        return self._queue.record([d.outcome for d in done], also=ledgers)

    def _sync_maintain(
        self, campaigns: dict[int, heartbeats.CampaignBeat], failing: list[str]
    ) -> None:
        queue, now = self._queue, utcnow()
        queue.renew(self.options.lease_seconds, now=now)
        queue.rescue_expired(now=now)
        finished = queue.complete_finished_campaigns(now=now)
        if finished:
            log.info("%d campaign(s) completed", finished)
        # After completing: a campaign with nothing left to send is done, not paused.
        for name in failing:
            self._pause_if_failing(name)
        released = queue.release_held(now=now)
        if released:
            log.info("%d held item(s) released: their window opened", released)
        self._beat(heartbeats.RUNNING, campaigns, now)

    def _pause_if_failing(self, name: str) -> None:
        options = self.options
        with self.db.transaction() as session:
            paused = pause_if_failing(
                session,
                name,
                options.pause_failure_percent,
                options.pause_min_items,
                actor=f"engine {options.engine_id}",
            )
        if paused is not None:
            with log_context(campaign=name):
                log.warning("%s", paused["reason"])

    def _failing_campaigns(self) -> tuple[list[str], dict[int, int]]:
        """Campaigns with new failures since the last look (the auto-pause checks them),
        and the failure counts to remember once that look has been taken."""
        if self.options.pause_failure_percent <= 0:
            return [], {}
        names, seen = [], {}
        for campaign_id, totals in self._campaign_totals.items():
            failed = totals["failed"]
            cached = self._plans.get(campaign_id)
            if failed > self._failures_seen.get(campaign_id, 0) and cached is not None:
                seen[campaign_id] = failed
                names.append(cached[1].name)
        return names, seen

    def _campaign_beats(self) -> dict[int, heartbeats.CampaignBeat]:
        """Per campaign: totals and the most workers busy on it since the last beat.

        Made in the loop's thread (which owns the counters) and handed to the database one.
        """
        campaigns = {
            campaign_id: heartbeats.CampaignBeat(
                sent=totals["sent"],
                failed=totals["failed"],
                workers=self._peak_workers.get(campaign_id, 0),
            )
            for campaign_id, totals in self._campaign_totals.items()
        }
        self._peak_workers = Counter(self._busy)
        return campaigns

    def _beat(
        self, state: str, campaigns: dict[int, heartbeats.CampaignBeat], now: datetime
    ) -> None:
        heartbeats.beat(
            self.db.engine,
            self.options.engine_id,
            state=state,
            sent=self.totals.sent,
            failed=self.totals.failed,
            campaigns=campaigns,
            now=now,
        )

    def _sync_stop(self, campaigns: dict[int, heartbeats.CampaignBeat]) -> int:
        released = self._queue.release()
        self._beat(heartbeats.STOPPED, campaigns, utcnow())
        self._queue.close()
        return released

    # ------------------------------------------------------------ running

    def request_stop(self, reason: str = "asked to stop") -> None:
        if not self._stopping.is_set():
            self._stop_reason = reason
            log.info("stopping: %s; finishing the messages in flight", reason)
            self._stopping.set()
            self._room.set()
            self._recorded.set()

    async def run(self) -> EngineTotals:
        """Send until stopped (or idle with ``until_idle``); the totals of this run."""
        options = self.options
        with log_context(engine=options.engine_id):
            loop = asyncio.get_running_loop()
            if options.install_signal_handlers:
                for number in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(number, self.request_stop, f"signal {number.name}")
            try:
                taken_back = await self._db_retrying("starting", self._sync_start)
                if taken_back:
                    log.warning("took back %d item(s) left in flight by a previous run", taken_back)
                log.info(
                    "send engine started: %d worker(s), lease %g s, retry after %g s",
                    options.concurrency,
                    options.lease_seconds,
                    options.retry_after,
                )
                await self._run_tasks()
            finally:
                if options.install_signal_handlers:
                    for number in (signal.SIGTERM, signal.SIGINT):
                        loop.remove_signal_handler(number)
                for pool in self._pools.values():
                    await pool.close()
                self._executor.shutdown(wait=True)
            log.info(
                "send engine stopped (%s): sent %d, deferred %d, failed %d, held %d",
                self._stop_reason or "done",
                self.totals.sent,
                self.totals.deferred,
                self.totals.failed,
                self.totals.held,
            )
            return self.totals

    async def _run_tasks(self) -> None:
        workers = [
            asyncio.create_task(self._worker(), name=f"worker-{n}")
            for n in range(self.options.concurrency)
        ]
        recorder = asyncio.create_task(self._recorder(), name="recorder")
        helpers = [asyncio.create_task(self._maintenance(), name="maintenance")]
        # One DNS re-check schedule per engine, not per extra campaign worker.
        recheck = self.options.campaign is None and not self.options.until_idle
        if self.options.recheck_seconds > 0 and recheck:
            helpers.append(asyncio.create_task(self._dns_recheck(), name="dns-recheck"))
        try:
            await self._feeder()
            # Claiming stopped: let the workers empty their queue only if still running;
            # once stopping, unsent items stay leased and go back below.
            if not self._stopping.is_set():
                await self._work.join()
        finally:
            self._stopping.set()
            # Messages being sent now are finished (each bounded by the server's timeout);
            # the workers are waiting for more by the time the busy count is zero.
            while self._busy.total() > 0:
                await asyncio.sleep(0.02)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._workers_done = True
            self._done_ready.set()
            await recorder  # records what the workers finished, then returns
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            released = await self._db_retrying("stopping", self._sync_stop, self._campaign_beats())
            if released:
                log.info("released %d unsent item(s) back to the queue", released)

    def _capacity(self) -> int:
        # Enough leased that workers never wait for a claim, and claims come in batches
        # (each is a transaction); leased-but-unsent items are no risk when killed, they
        # only wait for the lease to expire.
        return max(3 * self.options.concurrency, 2 * self.options.claim_batch)

    async def _feeder(self) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        idle_checks = 0
        while not self._stopping.is_set():
            room = self._capacity() - len(self._taken)
            if room < min(self.options.claim_batch, self._capacity() // 2):
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), options.poll_seconds)
                continue
            decisions = await self._db_retrying(
                "claiming",
                self._sync_claim,
                min(options.claim_batch, room),
                loop.time(),
                self._in_flight_counts(),
            )
            if decisions:
                idle_checks = 0
                await self._apply(decisions)
                continue
            if options.until_idle and not self._taken and not self._done:
                # Nothing due now: one maintenance pass (held items whose window opened,
                # expired leases) and one more look before calling it idle.
                idle_checks += 1
                if idle_checks >= 2:
                    self.request_stop("nothing left to send now")
                    return
                failing, seen = self._failing_campaigns()
                await self._db_retrying(
                    "maintenance", self._sync_maintain, self._campaign_beats(), failing
                )
                self._failures_seen.update(seen)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), options.poll_seconds)

    async def _apply(self, decisions: list[GateDecision]) -> None:
        for decision in decisions:
            item, plan = decision.item, decision.plan
            if decision.held:
                self.totals.held += 1
                self._taken.pop(item.id, None)
                continue
            if decision.wait and plan is not None:
                self._taken[item.id] = plan
                self._waiting[item.id] = item
                continue
            if plan is None:
                # The campaign was deleted under us: nothing to send; give the lease back.
                self._finish(item, None, Outcome(item.id, QueueStatus.FAILED, "campaign deleted"))
            elif decision.failure is not None:
                with log_context(campaign=plan.name, item=item.id):
                    log.warning("failed: %s", decision.failure)
                self._finish(item, plan, Outcome(item.id, QueueStatus.FAILED, decision.failure))
            else:
                self._taken[item.id] = plan
                self._work.put_nowait((item, plan))

    async def _worker(self) -> None:
        while True:
            item, plan = await self._work.get()
            try:
                while self._unrecorded >= self.options.concurrency and not self._stopping.is_set():
                    self._recorded.clear()
                    await self._recorded.wait()
                if self._stopping.is_set():
                    continue  # not started: its lease is released at the stop
                self._busy[plan.campaign_id] += 1
                self._peak_workers[plan.campaign_id] = max(
                    self._peak_workers[plan.campaign_id], self._busy[plan.campaign_id]
                )
                try:
                    with log_context(campaign=plan.name, item=item.id):
                        outcome = await self._deliver(item, plan)
                finally:
                    self._busy[plan.campaign_id] -= 1
                if outcome is not None:
                    self._finish(item, plan, outcome)
            finally:
                self._work.task_done()

    async def _deliver(self, item: ClaimedItem, plan: CampaignPlan) -> Outcome | None:
        """The item's outcome; None when the engine stopped before it was attempted."""
        assert plan.prepared is not None
        try:
            built = plan.prepared.build(item.id, item.recipient, item.message_id)
            data = built.as_bytes()
        except PostroomError as exc:
            return Outcome(item.id, QueueStatus.FAILED, f"message not built: {exc}")
        if plan.server is None:
            return await self._save(item, plan, built.envelope_from, data)
        pool = self._pools.get(plan.server.id)
        if pool is None or pool.settings != plan.server:
            if pool is not None:
                await pool.close()  # settings changed: new sessions from now on
            pool = self._pools[plan.server.id] = ServerPool(plan.server)
        result = await pool.send(built.envelope_from, item.recipient, data, stopping=self._stopping)
        if result is None:
            return None
        server = plan.server.name
        if result.verdict is Verdict.SENT:
            log.debug("sent: %s", result.reply)
            return Outcome(item.id, QueueStatus.SENT, result.reply, server)
        if result.verdict is Verdict.PERMANENT:
            log.info("failed: %s", result.reply)
            return Outcome(item.id, QueueStatus.FAILED, result.reply, server)
        return self._temporary(item, result.reply, server)

    def _temporary(self, item: ClaimedItem, reply: str, server: str | None) -> Outcome:
        attempts = item.attempts + 1
        if attempts >= self.options.max_attempts:
            log.info("failed after %d attempts: %s", attempts, reply)
            return Outcome(
                item.id,
                QueueStatus.FAILED,
                f"gave up after {attempts} attempts; last reply: {reply}",
                server,
            )
        wait = min(MAX_BACKOFF_SECONDS, self.options.retry_after * 2**item.attempts)
        log.info("deferred for %g s: %s", wait, reply)
        return Outcome(
            item.id, QueueStatus.DEFERRED, reply, server, utcnow() + timedelta(seconds=wait)
        )

    async def _save(
        self, item: ClaimedItem, plan: CampaignPlan, envelope_from: str, data: bytes
    ) -> Outcome:
        assert plan.outbox is not None
        try:
            path = await asyncio.to_thread(
                save_eml,
                plan.outbox,
                plan.campaign_id,
                item.id,
                envelope_from,
                item.recipient,
                data,
            )
        except OSError as exc:
            return self._temporary(item, f"cannot write to the outbox folder: {exc}", SAVETODISK)
        return Outcome(item.id, QueueStatus.SENT, f"saved to {path}", SAVETODISK)

    def _finish(self, item: ClaimedItem, plan: CampaignPlan | None, outcome: Outcome) -> None:
        if plan is None:
            plan = CampaignPlan(item.campaign_id, "?", CampaignStatus.CANCELLED, 0, "none")
        self._taken[item.id] = plan
        self._done.append(_Done(outcome, item, plan))
        self._unrecorded += 1
        self._done_ready.set()

    async def _regate(self) -> None:
        """Decide again on the items waiting for room under a limit."""
        items = list(self._waiting.values())
        self._waiting.clear()
        loop = asyncio.get_running_loop()
        decisions = await self._db_retrying(
            "checking limits", self._sync_decide, items, loop.time(), self._in_flight_counts()
        )
        await self._apply(decisions)

    async def _recorder(self) -> None:
        while True:
            if not self._done:
                if self._workers_done:
                    return
                if self._waiting and len(self._taken) == len(self._waiting):
                    await self._regate()  # nothing of ours in flight holds their room now
                    continue
                self._done_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done_ready.wait(), 0.5)
                continue
            if len(self._done) < self.options.concurrency and not self._stopping.is_set():
                # A moment to gather more: every transaction costs the loop the GIL a few
                # times, and a few more outcomes per commit cost nothing. The window in
                # which a delivered message is not yet recorded stays a few milliseconds.
                await asyncio.sleep(RECORD_GATHER_SECONDS)
            batch, self._done = self._done, []
            try:
                await self._db(self._sync_record, batch)
            except SQLAlchemyError as exc:
                # Kept for the next try: an outcome is only forgotten once committed.
                self._done = batch + self._done
                await self._db(self._queue.close)
                log.warning("could not record %d outcome(s) (%s)", len(batch), _first_line(exc))
                await asyncio.sleep(1.0)
                continue
            for entry in batch:
                self._count(entry)
                self._taken.pop(entry.item.id, None)
            self._unrecorded -= len(batch)
            self._recorded.set()
            self._room.set()
            if self._waiting and not self._stopping.is_set():
                await self._regate()

    def _count(self, entry: _Done) -> None:
        status = entry.outcome.status
        per_campaign = self._campaign_totals[entry.plan.campaign_id]
        if status is QueueStatus.SENT:
            self.totals.sent += 1
            per_campaign["sent"] += 1
        elif status is QueueStatus.FAILED:
            self.totals.failed += 1
            per_campaign["failed"] += 1
        else:
            self.totals.deferred += 1
            per_campaign["deferred"] += 1

    async def _maintenance(self) -> None:
        last = EngineTotals()
        while True:
            await asyncio.sleep(self.options.beat_seconds)
            failing, seen = self._failing_campaigns()
            try:
                await self._db(self._sync_maintain, self._campaign_beats(), failing)
            except SQLAlchemyError as exc:
                await self._db(self._queue.close)
                log.warning("maintenance pass failed (%s); next beat tries again", _first_line(exc))
                continue
            # Only a pass that ran has looked: a failed one leaves them for the next.
            self._failures_seen.update(seen)
            now = self.totals
            if now != last:
                log.info(
                    "progress: sent %d, deferred %d, failed %d, held %d; %d in flight",
                    now.sent,
                    now.deferred,
                    now.failed,
                    now.held,
                    len(self._taken),
                )
                last = EngineTotals(**now.as_dict())

    async def _dns_recheck(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.options.recheck_first_delay)
            return

        def flagged(reports: list[Any]) -> None:
            for report in reports:
                log.warning("sender domain %s: its DNS records no longer verify", report.domain)

        await recheck_enabled(
            self.db,
            interval_seconds=self.options.recheck_seconds,
            stop=self._stopping,
            on_broken=flagged,
            nameserver=self.options.nameserver,
            actor=f"engine {self.options.engine_id}",
        )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def run_engine(db: Database, options: EngineOptions) -> EngineTotals:
    """Run a send engine on a new event loop until it stops (the CLI's entry point)."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    return asyncio.run(SendEngine(db, options).run())
