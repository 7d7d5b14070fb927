"""Which claimed items may go now: the campaign's plan, the user's limits, the server's quotas.

Runs in the engine's database thread right after a claim. Items whose campaign cannot send
fail with the plan's sentence; items a limit or quota stops are held with the reason until
the window opens (``DeliveryQueue.release_held`` brings them back); the rest go to the
workers. When a limit has no room left at all, the campaign's other waiting items are held
in one statement too, instead of being claimed and held one batch after another.

The limits count the ledgers (what was sent and recorded) plus what this engine holds in
flight. Another engine's in-flight messages are not seen, so engines sharing a user or a
server may pass a limit by at most what they have in flight together.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.engine.plans import CampaignPlan
from app.engine.queue import HELD_REASON_LENGTH, ClaimedItem, DeliveryQueue
from app.models.base import utcnow
from app.services.quotas import Allowance, server_allowance, user_allowance

log = logging.getLogger(__name__)

# A hold with no end of its own (a lifetime limit, a missing vault key) is looked at again
# after this long, so raising the limit or fixing the engine lets mail go without a restart.
HOLD_RECHECK_SECONDS = 300.0


@dataclass(frozen=True)
class GateDecision:
    item: ClaimedItem
    plan: CampaignPlan | None
    held: bool = False
    failure: str | None = None
    # The room left under a limit is taken by this engine's messages in flight: the item
    # stays leased and is decided again once they are recorded (one may fail and free it).
    wait: bool = False


def short_reason(reason: str) -> str:
    """The held reason stored per item: the sentence's first clause (which limit, how far).

    The whole sentence (with when it frees and which setting raises it) goes to the log;
    the queue keeps what groups well in ``held_reasons`` and fits its column.
    """
    first = reason.split("; ", 1)[0].rstrip(".")
    if len(first) >= HELD_REASON_LENGTH:
        first = first[: HELD_REASON_LENGTH - 2].rsplit(" ", 1)[0] + "…"
        return first
    return first + "."


@dataclass
class _Room:
    """What one limit still allows in this claim."""

    allowance: Allowance
    left: int | None  # None: unlimited

    def give_back(self) -> None:
        if self.left is not None:
            self.left += 1

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Gate:
    def __init__(self, queue: DeliveryQueue) -> None:
        self.queue = queue

    def decide(
        self,
        session: Session,
        claimed: Sequence[ClaimedItem],
        plans: Mapping[int, CampaignPlan | None],
        in_flight: tuple[Counter[int], Counter[int]],
        *,
        now: datetime | None = None,
    ) -> list[GateDecision]:
        now = now or utcnow()
        users_in_flight, servers_in_flight = in_flight
        user_rooms: dict[tuple[int, bool], _Room] = {}
        server_rooms: dict[int, _Room] = {}
        holds: dict[tuple[str, datetime], list[int]] = defaultdict(list)
        exhausted: dict[tuple[str, datetime], set[int]] = defaultdict(set)
        decisions: list[GateDecision] = []

        def until_of(allowance: Allowance) -> datetime:
            return allowance.until or now + timedelta(seconds=HOLD_RECHECK_SECONDS)

        for item in claimed:
            plan = plans.get(item.campaign_id)
            if plan is None or plan.failure is not None:
                decisions.append(GateDecision(item, plan, failure=plan.failure if plan else None))
                continue
            if plan.hold is not None:
                key = (plan.hold, now + timedelta(seconds=HOLD_RECHECK_SECONDS))
                holds[key].append(item.id)
                decisions.append(GateDecision(item, plan, held=True))
                continue
            blocked: _Room | None = None
            if plan.user_limited:
                user_key = (plan.user_id, plan.via_default_domain)
                room = user_rooms.get(user_key)
                if room is None:
                    allowance = user_allowance(
                        session,
                        plan.user_id,
                        via_default_domain=plan.via_default_domain,
                        now=now,
                    )
                    room = user_rooms[user_key] = _Room(
                        allowance, _left(allowance, users_in_flight[plan.user_id])
                    )
                if not room.take():
                    blocked = room
            if blocked is None and plan.server_limited and plan.server is not None:
                server_room = server_rooms.get(plan.server.id)
                if server_room is None:
                    allowance = server_allowance(session, plan.server.id, now=now)
                    server_room = server_rooms[plan.server.id] = _Room(
                        allowance, _left(allowance, servers_in_flight[plan.server.id])
                    )
                if not server_room.take():
                    blocked = server_room
                    if plan.user_limited:  # give back the user's unit taken above
                        user_rooms[(plan.user_id, plan.via_default_domain)].give_back()
            if blocked is None:
                decisions.append(GateDecision(item, plan))
                continue
            if blocked.allowance.remaining != 0:
                decisions.append(GateDecision(item, plan, wait=True))
                continue
            reason = blocked.allowance.reason or "A sending limit is reached."
            key = (reason, until_of(blocked.allowance))
            holds[key].append(item.id)
            exhausted[key].add(plan.campaign_id)
            decisions.append(GateDecision(item, plan, held=True))

        for (reason, until), item_ids in holds.items():
            log.info("holding %d item(s): %s", len(item_ids), reason)
            self.queue.hold_many(item_ids, short_reason(reason), until=until)
        for (reason, until), campaign_ids in exhausted.items():
            self.queue.hold_waiting(sorted(campaign_ids), short_reason(reason), until=until)
        return decisions


def _left(allowance: Allowance, in_flight: int) -> int | None:
    if allowance.remaining is None:
        return None
    return max(0, allowance.remaining - in_flight)
