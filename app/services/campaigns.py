"""Campaigns: creating one with its recipients queued in bulk, and its life cycle.

A campaign is created as a draft with one queue item per valid, distinct recipient; start,
pause, resume and cancel move it through its states; send engines claim the items of
running campaigns only (``app.engine.queue``). A single transactional message is a
campaign of one item, created running.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, selectinload

from app.models import (
    AuditEntry,
    Campaign,
    DomainStatus,
    QueueItem,
    QueueStatus,
    SenderDomain,
    User,
)
from app.models.base import CampaignStatus, Channel, utcnow
from app.services import audit, validation
from app.services.coerce import ensure_unique, flush, get_by_name
from app.services.errors import ValidationError
from app.services.routing import parse_channel
from app.services.users import get_user

ENTITY = "campaign"
RECIPIENTS = "Recipients"
MAX_BODY_LENGTH = 5_000_000
SUBJECT_LENGTH = 998  # RFC 5322's line limit
ENQUEUE_CHUNK = 10_000

# A recipient line as read: its 1-based line number in the file and the text found there.
RecipientLine = tuple[int, str]


# ---------------------------------------------------------------- reading recipient files


def parse_recipients(lines: Iterable[str]) -> Iterator[RecipientLine]:
    """Addresses with their line numbers: one address a line, or CSV with an "email" column.

    The first non-blank line decides: if one of its comma-separated cells is ``email``
    (any case), the text is CSV and that column is read; otherwise every non-blank line
    is one address. A line whose CSV row has no such cell yields an empty value, which
    the enqueue reports as rejected rather than skipping it silently.
    """
    numbered = iter(enumerate(lines, start=1))
    for number, line in numbered:
        if not line.strip():
            continue
        header = next(csv.reader([line]), [])
        column = next((i for i, cell in enumerate(header) if cell.strip().lower() == "email"), None)
        if column is None:
            yield number, line.strip()
            yield from ((n, text.strip()) for n, text in numbered if text.strip())
        else:
            yield from _csv_column(numbered, column)
        return


def _csv_column(numbered: Iterator[tuple[int, str]], column: int) -> Iterator[RecipientLine]:
    for number, line in numbered:
        if not line.strip():
            continue
        # One record a line: a quoted line break inside a cell stays in the value, where it
        # is refused (header injection) instead of silently joining two lines.
        row = next(csv.reader([line.rstrip("\r\n")]), [])
        yield number, (row[column].strip() if column < len(row) else "")


def read_recipients(path: str | Path) -> Iterator[RecipientLine]:
    """The recipients of a file (UTF-8, a byte-order mark allowed), see ``parse_recipients``."""
    file = Path(path)
    try:
        handle = file.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ValidationError(
            RECIPIENTS, f"cannot read {file}: {exc.strerror or exc}; check the path."
        ) from None
    with handle:
        try:
            yield from parse_recipients(line.rstrip("\r\n") for line in handle)
        except UnicodeDecodeError:
            raise ValidationError(
                RECIPIENTS, f"{file} is not UTF-8 text; save it as UTF-8 and try again."
            ) from None


# ---------------------------------------------------------------- recipient addresses

# Plain dot-atom local parts, the overwhelming majority, take the fast path; anything else
# goes to the full validator, which stays the one authority on what an address is.
_COMMON_LOCAL = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*")


@lru_cache(maxsize=65_536)
def _mail_domain(host: str) -> str:
    # IDNA checks cost ~100 us; a list of a million addresses has far fewer domains.
    return validation.domain(host, RECIPIENTS)


def normalise_recipient(value: str) -> str:
    """The address as queued (domain in lower-case ASCII), or ValidationError saying why not.

    The same answer as ``validation.email_address``, faster for common addresses.
    """
    local, at, host = value.partition("@")
    if at and _COMMON_LOCAL.fullmatch(local) and len(local) <= 64 and "@" not in host:
        address = f"{local}@{_mail_domain(host)}"
        if len(address) <= 254:
            return address
    return validation.email_address(value, RECIPIENTS)


@dataclass(frozen=True)
class Rejected:
    line: int
    value: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "value": self.value, "reason": self.reason}


def message_id_prefix(campaign_id: int) -> str:
    """What every Message-ID of one campaign starts with: its id and a random token.

    The token keeps ids unique across databases (two installations both have a campaign 1);
    it is drawn once per campaign, and each item's id is stored, so a retry reuses it.
    """
    return f"<{campaign_id}.{secrets.token_hex(6)}."


def message_id(prefix: str, sequence: int, host: str) -> str:
    """The Message-ID of the campaign's ``sequence``-th recipient: ``<id.token.seq@host>``."""
    return f"{prefix}{sequence}@{host}>"


_COLUMNS = ("campaign_id", "recipient", "status", "attempts", "next_attempt_at", "message_id")
QueueRow = tuple[int, str, object, int, object, str]


def _queue_chunks(
    fixed: tuple[int, object, int, object],
    recipients: Iterable[str | RecipientLine],
    host: str,
    rejected: list[Rejected],
) -> Iterator[list[QueueRow]]:
    """Rows of the valid, first-seen addresses in chunks; the rest into ``rejected``.

    One flat loop on purpose: at a million recipients every call per row costs a second.
    """
    campaign_id, status, attempts, due = fixed
    prefix = message_id_prefix(campaign_id)
    suffix = f"@{host}>"
    seen: set[str] = set()
    chunk: list[QueueRow] = []
    for position, entry in enumerate(recipients, start=1):
        line, value = (position, entry) if isinstance(entry, str) else entry
        if "\n" in value or "\r" in value:
            raise ValidationError(
                RECIPIENTS,
                f"line {line} holds a line break inside an address; remove it (a line break "
                "in an address could add headers to the message).",
            )
        try:
            address = normalise_recipient(value)
        except ValidationError as exc:
            rejected.append(Rejected(line, value, exc.reason))
            continue
        if address in seen:
            continue
        seen.add(address)
        chunk.append((campaign_id, address, status, attempts, due, f"{prefix}{len(seen)}{suffix}"))
        if len(chunk) >= ENQUEUE_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_recipients(recipients: Iterable[str | RecipientLine]) -> dict[str, Any]:
    """What ``create_campaign`` would queue, without a database: ``{valid, duplicates,
    rejected: [{line, value, reason}]}``; the same rules, so a form can show the rejected
    lines before anything is created."""
    rejected: list[Rejected] = []
    seen: set[str] = set()
    duplicates = 0
    for position, entry in enumerate(recipients, start=1):
        line, value = (position, entry) if isinstance(entry, str) else entry
        if "\n" in value or "\r" in value:
            rejected.append(
                Rejected(line, value, "holds a line break; remove it (it could add headers).")
            )
            continue
        try:
            address = normalise_recipient(value)
        except ValidationError as exc:
            rejected.append(Rejected(line, value, exc.reason))
            continue
        if address in seen:
            duplicates += 1
        seen.add(address)
    return {
        "valid": len(seen),
        "duplicates": duplicates,
        "rejected": [r.as_dict() for r in rejected],
    }


def _db_value(connection: Connection, column: str, value: object) -> object:
    """``value`` as the driver takes it for ``queue_items.column`` (type processing applied)."""
    processor = QueueItem.__table__.c[column].type.bind_processor(connection.dialect)
    return processor(value) if processor else value


def bulk_enqueue(
    connection: Connection,
    campaign_id: int,
    recipients: Iterable[str | RecipientLine],
    host: str,
    *,
    status: QueueStatus = QueueStatus.QUEUED,
    due: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, list[Rejected]]:
    """Queue the valid, distinct recipients in the caller's transaction; (count, rejected).

    Rows go in through the driver in chunks (COPY on PostgreSQL, executemany elsewhere):
    a million ORM objects would take minutes; this takes seconds (docs/PERFORMANCE.md).
    ``progress(queued_so_far)`` is called after each chunk; an exception it raises (a
    cancel) stops the enqueue and so rolls back the caller's transaction.
    """
    rejected: list[Rejected] = []
    fixed = (
        campaign_id,
        _db_value(connection, "status", status),
        0,
        _db_value(connection, "next_attempt_at", due or utcnow()),
    )
    if connection.dialect.name == "sqlite" and isinstance(fixed[3], datetime):
        # The sqlite3 module turns a datetime into text for every row (its default adapter,
        # isoformat with a space): a second per million rows for one and the same value.
        fixed = (*fixed[:3], fixed[3].isoformat(" "))
    if connection.dialect.name == "postgresql":
        write = _copy_writer(connection)
    else:
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        insert = f"INSERT INTO queue_items ({', '.join(_COLUMNS)}) VALUES ({', '.join([mark] * 6)})"

        driver = connection.connection.driver_connection
        assert driver is not None

        def write(values: Sequence[tuple[object, ...]]) -> None:
            # The driver's own executemany, inside the session's transaction: SQLAlchemy's
            # per-row parameter handling would double the time of a million rows.
            cursor = driver.cursor()
            try:
                cursor.executemany(insert, values)
            finally:
                cursor.close()

    count = 0
    for chunk in _queue_chunks(fixed, recipients, host, rejected):
        write(chunk)
        count += len(chunk)
        if progress is not None:
            progress(count)
    return count, rejected


def _copy_writer(connection: Connection) -> Callable[[Sequence[tuple[object, ...]]], None]:
    driver = connection.connection.driver_connection
    assert driver is not None

    def write(values: Sequence[tuple[object, ...]]) -> None:
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY queue_items ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in values:
                copy.write_row(row)

    return write


# ---------------------------------------------------------------- creating


def allowed_from_domains(session: Session, user: User) -> list[str] | None:
    """The domains ``user`` may send From, or None when the group leaves From free.

    When the group manages sender domains: the user's enabled sender domains, then the
    group's default sender domain when that is turned on (lower-case, each once).
    """
    group = user.group
    if not group.sender_domain_management:
        return None
    allowed = sorted(
        domain.lower()
        for domain in session.scalars(
            select(SenderDomain.domain).where(
                SenderDomain.user_id == user.id, SenderDomain.status == DomainStatus.ENABLED
            )
        ).all()
    )
    if group.default_sender_domain_enabled and group.default_sender_domain:
        allowed.append(group.default_sender_domain.lower())
    return list(dict.fromkeys(allowed))


def _check_from(session: Session, user: User, from_email: str) -> None:
    """When the group manages sender domains, From must be at one the user may send from."""
    allowed = allowed_from_domains(session, user)
    if allowed is None:
        return
    domain = from_email.rpartition("@")[2]
    if domain.lower() in allowed:
        return
    if not allowed:
        raise ValidationError(
            "From",
            f"{user.username!r} has no enabled sender domain to send from; add and verify one "
            "(postroom domains add) or turn on the group's default sender domain.",
        )
    raise ValidationError(
        "From",
        f"{domain} is not one of {user.username!r}'s enabled sender domains; use an address "
        f"at {', '.join(allowed)}.",
    )


def sender_choices(session: Session) -> list[dict[str, Any]]:
    """The active users a campaign can be created for, with what From may be.

    ``username``, ``group``, ``email`` and ``domains``: None when the group leaves From
    free, else the list ``allowed_from_domains`` gives (possibly empty).
    """
    users = session.scalars(
        select(User)
        .where(User.is_active.is_(True))
        .options(selectinload(User.group))
        .order_by(User.username)
    ).all()
    return [
        {
            "username": user.username,
            "group": user.group.name,
            "email": user.email,
            "domains": allowed_from_domains(session, user),
        }
        for user in users
    ]


@dataclass(frozen=True)
class Content:
    """What every item of a campaign carries, validated."""

    from_email: str
    from_name: str | None
    subject: str
    text: str | None
    html: str | None


def check_content(
    from_email: str, from_name: str | None, subject: str, text: str | None, html: str | None
) -> Content:
    """Refuse CR/LF in header fields (header injection) and a message without a body."""
    address = validation.email_address(from_email, "From")
    name = validation.header_value(from_name, "From name") if from_name else None
    subject_text = validation.header_value(subject, "Subject", max_length=SUBJECT_LENGTH)
    if not subject_text:
        raise ValidationError("Subject", "must not be empty.")
    text_body = validation.multiline_text(text, "Text body", MAX_BODY_LENGTH) if text else None
    html_body = validation.multiline_text(html, "HTML body", MAX_BODY_LENGTH) if html else None
    if text_body is None and html_body is None:
        raise ValidationError("Body", "is empty; give a text body, an HTML body or both.")
    return Content(address, name or None, subject_text, text_body, html_body)


def create_campaign(
    session: Session,
    name: str,
    username: str,
    channel: Channel | str,
    from_email: str,
    from_name: str | None,
    subject: str,
    text: str | None,
    html: str | None,
    recipients: Iterable[str | RecipientLine],
    *,
    status: CampaignStatus = CampaignStatus.DRAFT,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """A draft campaign with its recipients queued: ``{name, id, status, recipients, rejected}``.

    ``recipients`` are addresses (numbered by position) or ``(line, address)`` pairs as
    ``read_recipients`` gives them. Invalid ones are listed in ``rejected`` with their line.
    """
    campaign_name = validation.name(name, "Name")
    user = get_user(session, username)
    if not user.is_active:
        raise ValidationError(
            "User", f"{user.username!r} is inactive; activate the user or choose another."
        )
    parsed_channel = parse_channel(channel)
    content = check_content(from_email, from_name, subject, text, html)
    _check_from(session, user, content.from_email)
    ensure_unique(
        session,
        Campaign,
        "name",
        campaign_name,
        f"A campaign named {campaign_name!r} already exists; choose another name.",
    )
    now = utcnow()
    campaign = Campaign(
        name=campaign_name,
        user=user,
        channel=parsed_channel,
        status=status,
        from_email=content.from_email,
        from_name=content.from_name,
        subject=content.subject,
        body_text=content.text,
        body_html=content.html,
        started_at=now if status is CampaignStatus.RUNNING else None,
    )
    session.add(campaign)
    flush(session, ENTITY, campaign_name)
    host = content.from_email.rpartition("@")[2]
    count, rejected = bulk_enqueue(
        session.connection(), campaign.id, recipients, host, due=now, progress=progress
    )
    if count == 0:
        first = f" (line {rejected[0].line}: {rejected[0].reason})" if rejected else ""
        raise ValidationError(
            RECIPIENTS, f"no valid address was found{first}; give at least one recipient."
        )
    audit.record(
        session,
        "create",
        ENTITY,
        campaign_name,
        {
            "user": user.username,
            "channel": parsed_channel.value,
            "status": status.value,
            "recipients": count,
            "rejected": len(rejected),
        },
        actor=actor,
    )
    return {
        "name": campaign.name,
        "id": campaign.id,
        "status": campaign.status.value,
        "recipients": count,
        "rejected": [r.as_dict() for r in rejected],
    }


def send_message(
    session: Session,
    username: str,
    channel: Channel | str,
    from_email: str,
    to: str,
    subject: str,
    text: str | None,
    html: str | None,
    *,
    from_name: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """One transactional message: a running campaign of one item; returns its result row."""
    recipient = validation.email_address(to, "To")
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    name = f"send {stamp} {secrets.token_hex(4)}"
    created = create_campaign(
        session,
        name,
        username,
        channel,
        from_email,
        from_name,
        subject,
        text,
        html,
        [recipient],
        status=CampaignStatus.RUNNING,
        actor=actor,
    )
    rows = campaign_results(session, created["name"])
    return {"campaign": created["name"], **rows[0]}


# ---------------------------------------------------------------- life cycle

# What each command may start from, and the sentence for every other state.
_TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "start": (frozenset({CampaignStatus.DRAFT}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "cancel": (
        frozenset({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.CANCELLED,
    ),
}
_ADVICE = {
    ("start", CampaignStatus.RUNNING): "it is already running",
    ("start", CampaignStatus.PAUSED): "it is paused; resume it instead",
    ("pause", CampaignStatus.DRAFT): "it has not started; start it first",
    ("pause", CampaignStatus.PAUSED): "it is already paused",
    ("resume", CampaignStatus.DRAFT): "it has not started; start it instead",
    ("resume", CampaignStatus.RUNNING): "it is already running",
}


def get_campaign(session: Session, name: str, *, lock: bool = False) -> Campaign:
    campaign = get_by_name(session, Campaign, "name", name, ENTITY)
    if lock:
        session.refresh(campaign, with_for_update=True)
    return campaign


def change_status(
    session: Session, name: str, action: str, *, actor: str | None = None
) -> dict[str, Any]:
    """Apply ``start``, ``pause``, ``resume`` or ``cancel``; a sentence for any other state."""
    allowed, target = _TRANSITIONS[action]
    campaign = get_campaign(session, name, lock=True)
    current = campaign.status
    if current not in allowed:
        advice = _ADVICE.get(
            (action, current),
            f"it is {current.value}, and a {current.value} campaign cannot change; "
            "create a new campaign to send again",
        )
        raise ValidationError("Campaign", f"cannot {action} {campaign.name!r}: {advice}.")
    campaign.status = target
    now = utcnow()
    if action == "start":
        campaign.started_at = now
    if target is CampaignStatus.CANCELLED:
        campaign.finished_at = now
    flush(session, ENTITY, campaign.name)
    audit.record(
        session,
        action,
        ENTITY,
        campaign.name,
        {"status": [current.value, target.value]},
        actor=actor,
    )
    return {"name": campaign.name, "status": target.value}


def start_campaign(session: Session, name: str, *, actor: str | None = None) -> dict[str, Any]:
    return change_status(session, name, "start", actor=actor)


def pause_campaign(session: Session, name: str, *, actor: str | None = None) -> dict[str, Any]:
    return change_status(session, name, "pause", actor=actor)


def resume_campaign(session: Session, name: str, *, actor: str | None = None) -> dict[str, Any]:
    return change_status(session, name, "resume", actor=actor)


def cancel_campaign(session: Session, name: str, *, actor: str | None = None) -> dict[str, Any]:
    return change_status(session, name, "cancel", actor=actor)


RETRYABLE = (QueueStatus.FAILED, QueueStatus.HELD)


def retry_items(
    session: Session,
    name: str,
    statuses: Sequence[QueueStatus | str] = RETRYABLE,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Queue the campaign's failed and/or held items again: ``{name, status, retried}``.

    Each gets a fresh set of attempts (its last reply stays until the next outcome). A
    completed campaign runs again; a cancelled one is refused (create a new campaign).
    """
    wanted = sorted({validation.choice(s, "Status", QueueStatus) for s in statuses})
    if not wanted or any(status not in RETRYABLE for status in wanted):
        raise ValidationError("Status", "must be failed or held; only those can be retried.")
    campaign = get_campaign(session, name, lock=True)
    if campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.DRAFT):
        raise ValidationError(
            "Campaign",
            f"cannot retry {campaign.name!r}: it is {campaign.status.value}; "
            + (
                "start it instead."
                if campaign.status is CampaignStatus.DRAFT
                else "create a new campaign to send again."
            ),
        )
    retried = cast(
        CursorResult[Any],
        session.execute(
            update(QueueItem)
            .where(QueueItem.campaign_id == campaign.id, QueueItem.status.in_(wanted))
            .values(
                status=QueueStatus.QUEUED,
                attempts=0,
                held_reason=None,
                next_attempt_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    before = campaign.status
    if retried and campaign.status is CampaignStatus.COMPLETED:
        campaign.status = CampaignStatus.RUNNING
        campaign.finished_at = None
    flush(session, ENTITY, campaign.name)
    audit.record(
        session,
        "retry",
        ENTITY,
        campaign.name,
        {"retried": [0, retried], "status": [before.value, campaign.status.value]},
        actor=actor,
    )
    return {"name": campaign.name, "status": campaign.status.value, "retried": retried}


# ---------------------------------------------------------------- reading


def _counts(
    session: Session, campaign_ids: Sequence[int] | None = None
) -> dict[int, dict[str, int]]:
    query = select(QueueItem.campaign_id, QueueItem.status, func.count()).group_by(
        QueueItem.campaign_id, QueueItem.status
    )
    if campaign_ids is not None:
        query = query.where(QueueItem.campaign_id.in_(campaign_ids))
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, status, count in session.execute(query):
        counts.setdefault(campaign_id, {})[QueueStatus(status).value] = int(count)
    return counts


AUTO_PAUSE = "failures"  # the audit "reason_kind" of a pause for a failure spike


def paused_reasons(session: Session, names: Sequence[str]) -> dict[str, str]:
    """Why each of these paused campaigns was paused automatically (name -> sentence).

    Read from the audit log: the campaign's latest start, pause or resume entry, when it
    is a pause that gave a reason (``pause_if_failing`` writes one; a person's pause has
    none, and a campaign resumed since has no reason left).
    """
    if not names:
        return {}
    entries = session.execute(
        select(AuditEntry.entity_key, AuditEntry.action, AuditEntry.details)
        .where(
            AuditEntry.entity == ENTITY,
            AuditEntry.entity_key.in_(list(names)),
            AuditEntry.action.in_(("start", "pause", "resume")),
        )
        .order_by(AuditEntry.id)
    ).all()
    latest: dict[str, tuple[str, str | None]] = {}
    for key, action, details in entries:
        latest[key] = (action, details)
    reasons: dict[str, str] = {}
    for key, (action, details) in latest.items():
        if action != "pause" or not details:
            continue
        try:
            reason = json.loads(details).get("reason")
        except (ValueError, AttributeError):
            continue
        if isinstance(reason, str) and reason:
            reasons[key] = reason
    return reasons


def _paused_reason(session: Session, campaign: Campaign) -> str | None:
    if campaign.status is not CampaignStatus.PAUSED:
        return None
    return paused_reasons(session, [campaign.name]).get(campaign.name)


def campaign_status(session: Session, name: str) -> dict[str, Any]:
    """Counts per item status and why items are held: the ``campaigns status`` report."""
    campaign = get_campaign(session, name)
    return _status_of(session, campaign)


def _status_of(session: Session, campaign: Campaign) -> dict[str, Any]:
    counts = _counts(session, [campaign.id]).get(campaign.id, {})
    held = session.execute(
        select(QueueItem.held_reason, func.count())
        .where(QueueItem.campaign_id == campaign.id, QueueItem.status == QueueStatus.HELD)
        .group_by(QueueItem.held_reason)
    ).all()
    return {
        "name": campaign.name,
        "status": campaign.status.value,
        "total": sum(counts.values()),
        **{status.value: counts.get(status.value, 0) for status in QueueStatus},
        "held_reasons": {(reason or "unknown"): int(count) for reason, count in held},
    }


def campaign_report(session: Session, name: str) -> dict[str, Any]:
    """``campaign_status`` plus what the console shows beside it: ``paused_reason`` (the
    sentence of an automatic pause, else None), user, channel, From, subject and times."""
    campaign = get_campaign(session, name)
    return {
        **_status_of(session, campaign),
        "paused_reason": _paused_reason(session, campaign),
        "user": campaign.user.username,
        "channel": campaign.channel.value,
        "from_email": campaign.from_email,
        "from_name": campaign.from_name,
        "subject": campaign.subject,
        "created_at": campaign.created_at.isoformat(),
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
    }


def campaign_results(
    session: Session, name: str, *, status: QueueStatus | str | None = None
) -> list[dict[str, Any]]:
    """One row per recipient, in queue order, optionally of one item status."""
    keys = ("recipient", "status", "attempts", "reply", "server", "message_id", "sent_at")
    return [
        {key: row[key] for key in keys} for row in recipient_results(session, name, status=status)
    ]


def recipient_results(
    session: Session,
    name: str,
    *,
    status: QueueStatus | str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """``campaign_results`` rows plus ``queued_seconds`` and ``held_reason``, for the console.

    ``queued_seconds`` is the time in queue of a sent item: its ``sent_at`` less the
    campaign's start (its creation when it was created running); None until it is sent.
    ``limit`` keeps the first rows only (a console shows a page, not a million rows).
    """
    campaign = get_campaign(session, name)
    query = (
        select(
            QueueItem.recipient,
            QueueItem.status,
            QueueItem.attempts,
            QueueItem.last_reply,
            QueueItem.server_name,
            QueueItem.message_id,
            QueueItem.sent_at,
            QueueItem.held_reason,
        )
        .where(QueueItem.campaign_id == campaign.id)
        .order_by(QueueItem.id)
    )
    if status is not None:
        query = query.where(QueueItem.status == validation.choice(status, "Status", QueueStatus))
    if limit is not None:
        query = query.limit(max(int(limit), 0))
    began = campaign.started_at or campaign.created_at
    return [
        {
            "recipient": row.recipient,
            "status": QueueStatus(row.status).value,
            "attempts": row.attempts,
            "reply": row.last_reply,
            "server": row.server_name,
            "message_id": row.message_id,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "queued_seconds": (
                max((row.sent_at - began).total_seconds(), 0.0) if row.sent_at else None
            ),
            "held_reason": row.held_reason,
        }
        for row in session.execute(query)
    ]


def list_campaigns(session: Session) -> list[dict[str, Any]]:
    """The campaigns, newest first, with how far each got: a count per item status."""
    campaigns = session.execute(
        select(Campaign, User.username).join(User).order_by(Campaign.id.desc())
    ).all()
    counts = _counts(session)
    paused = paused_reasons(
        session, [c.name for c, _user in campaigns if c.status is CampaignStatus.PAUSED]
    )
    rows = []
    for campaign, username in campaigns:
        mine = counts.get(campaign.id, {})
        rows.append(
            {
                "name": campaign.name,
                "id": campaign.id,
                "user": username,
                "channel": campaign.channel.value,
                "status": campaign.status.value,
                "recipients": sum(mine.values()),
                **{status.value: mine.get(status.value, 0) for status in QueueStatus},
                "paused_reason": paused.get(campaign.name),
                "created_at": campaign.created_at.isoformat(),
                "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
                "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
            }
        )
    return rows


def pause_if_failing(
    session: Session,
    name: str,
    threshold_percent: float,
    min_items: int,
    *,
    actor: str | None = None,
) -> dict[str, Any] | None:
    """Pause a running campaign whose failures spiked; None when it stays as it is.

    Once at least ``min_items`` of its items have finished (sent or failed), a failed
    share of ``threshold_percent`` or more pauses it, with an audit entry whose reason
    the console shows beside the campaign. Meant for a send engine to call after it
    records outcomes; a person resumes the campaign after fixing the cause (or retries
    the failed recipients, which lowers the share again).
    """
    try:
        threshold = float(threshold_percent)
    except (TypeError, ValueError):
        threshold = -1.0
    if not 0 < threshold <= 100:
        raise ValidationError("Threshold", "must be a percentage above 0 and at most 100.")
    if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 1:
        raise ValidationError("Minimum items", "must be a whole number of at least 1.")
    campaign = get_campaign(session, name, lock=True)
    if campaign.status is not CampaignStatus.RUNNING:
        return None
    counts = _counts(session, [campaign.id]).get(campaign.id, {})
    failed = counts.get(QueueStatus.FAILED.value, 0)
    finished = failed + counts.get(QueueStatus.SENT.value, 0)
    if finished < min_items or failed * 100 < threshold * finished:
        return None
    share = failed * 100 / finished
    reason = (
        f"Paused automatically: {failed:,} of {finished:,} finished messages failed "
        f"({share:.0f}%, the threshold is {threshold:g}%); read the failed recipients' "
        "replies, fix the cause, then resume or retry the failed ones."
    )
    campaign.status = CampaignStatus.PAUSED
    flush(session, ENTITY, campaign.name)
    audit.record(
        session,
        "pause",
        ENTITY,
        campaign.name,
        {
            "status": [CampaignStatus.RUNNING.value, CampaignStatus.PAUSED.value],
            "reason": reason,
            "reason_kind": AUTO_PAUSE,
            "failed": failed,
            "finished": finished,
            "threshold_percent": threshold,
        },
        actor=actor,
    )
    return {"name": campaign.name, "status": campaign.status.value, "reason": reason}


def read_body(path: str | Path | None, field: str) -> str | None:
    """A body file's text (UTF-8), or ValidationError naming the option and the problem."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ValidationError(field, f"cannot read {path}: {reason}; check the file.") from None


__all__ = [
    "Rejected",
    "allowed_from_domains",
    "bulk_enqueue",
    "campaign_report",
    "campaign_results",
    "campaign_status",
    "cancel_campaign",
    "change_status",
    "check_recipients",
    "create_campaign",
    "get_campaign",
    "list_campaigns",
    "message_id",
    "normalise_recipient",
    "parse_recipients",
    "pause_campaign",
    "pause_if_failing",
    "paused_reasons",
    "read_body",
    "read_recipients",
    "recipient_results",
    "resume_campaign",
    "send_message",
    "sender_choices",
    "start_campaign",
]
