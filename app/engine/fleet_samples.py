"""What ``status`` and ``stats`` read: Docker's stats samples, ``supervisorctl status``,
the engines' heartbeats and the queue.

The arithmetic follows what ``docker stats`` shows, so both agree: CPU % is the container's
CPU time over the host's between the sample and the one before it (``precpu_stats``), times
the CPUs online; memory is the usage less the inactive file cache, which the kernel can drop.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, func, select

from app.models import Campaign, EngineHeartbeat, QueueItem
from app.models.base import CampaignStatus, QueueStatus, utcnow

if TYPE_CHECKING:
    from app.models.database import Database

HEARTBEATS: Table = EngineHeartbeat.__table__  # type: ignore[assignment]
CAMPAIGNS: Table = Campaign.__table__  # type: ignore[assignment]
ITEMS: Table = QueueItem.__table__  # type: ignore[assignment]
# A heartbeat older than this is an engine that stopped without saying so (killed).
FRESH_BEAT_S = 60.0
RUNNING = "running"
QUEUE_STATES = (QueueStatus.QUEUED, QueueStatus.IN_FLIGHT, QueueStatus.DEFERRED, QueueStatus.HELD)


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """CPU use between this sample and the previous one, 100 % per CPU."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    cpus = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if system_delta <= 0 or cpu_delta < 0:
        return 0.0
    return round(float(cpu_delta) / float(system_delta) * int(cpus) * 100.0, 2)


def cpu_percent_between(previous: dict[str, Any], current: dict[str, Any]) -> float | None:
    """CPU use between two samples we took ourselves (``one_shot`` samples carry no
    ``precpu_stats``): the same arithmetic, with our earlier sample as the one before."""
    if not previous or not current:
        return None
    return cpu_percent(
        {"cpu_stats": current.get("cpu_stats"), "precpu_stats": previous.get("cpu_stats")}
    )


def memory_bytes(stats: dict[str, Any]) -> int | None:
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    details = memory.get("stats") or {}
    # cgroup v1 names it total_inactive_file, v2 inactive_file
    inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
    return int(usage - inactive) if inactive < usage else int(usage)


def network_bytes(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """Bytes received and sent; None with host networking, where a container has no
    interface of its own to count."""
    networks = stats.get("networks")
    if not networks:
        return None, None
    rx = sum(int(n.get("rx_bytes", 0)) for n in networks.values())
    tx = sum(int(n.get("tx_bytes", 0)) for n in networks.values())
    return rx, tx


def health_of(attrs: dict[str, Any]) -> str:
    """healthy, unhealthy, starting, or none (no health check, or not running)."""
    health = (attrs.get("State") or {}).get("Health") or {}
    return str(health.get("Status") or "none")


def uptime_of(attrs: dict[str, Any], now: datetime) -> float | None:
    state = attrs.get("State") or {}
    if not state.get("Running"):
        return None
    started = parse_docker_time(str(state.get("StartedAt") or ""))
    return round((now - started).total_seconds(), 1) if started else None


def parse_docker_time(value: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, more than fromisoformat takes."""
    if not value or value.startswith("0001-"):
        return None
    value = value.replace("Z", "+00:00")
    # fractions to microseconds: fromisoformat takes at most six digits
    value = re.sub(r"\.(\d{1,6})\d*", r".\1", value)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# `status` asks supervisord in every container at once. `supervisorctl` is a Python program
# that imports much of supervisor and pkg_resources (a quarter second of CPU each, which ten
# containers on a small host feel); this asks the same XML-RPC method over supervisord's
# socket with the standard library only (python3 -I -S: no site, no environment), printing
# "NAME STATE" lines as `supervisorctl status` does.
SUPERVISOR_SOCKET = "/tmp/supervisor.sock"
PROGRAMS_PROBE = f"""
import re, socket
body = (b"<?xml version='1.0'?><methodCall><methodName>supervisor.getAllProcessInfo"
        b"</methodName><params></params></methodCall>")
connection = socket.socket(socket.AF_UNIX)
connection.settimeout(10)
connection.connect({SUPERVISOR_SOCKET!r})
connection.sendall(b"POST /RPC2 HTTP/1.0\\r\\nContent-Type: text/xml\\r\\n"
                   + b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
data = b""
while True:
    chunk = connection.recv(65536)
    if not chunk:
        break
    data += chunk
for struct in re.findall(r"<struct>(.*?)</struct>", data.decode("utf-8", "replace"), re.S):
    fields = dict(re.findall(r"<name>(\\w+)</name>\\s*<value>(?:<\\w+>)?([^<]*)", struct))
    group, name = fields.get("group", ""), fields.get("name", "")
    print(name if group in ("", name) else group + ":" + name, fields.get("statename", ""))
"""

# `status` also asks each engine's own cgroup (mounted privately in the container, v1 or v2)
# for its CPU time and memory, in the same exec: the Docker API needs two of its one-second
# collector readings for a CPU %, which made `status` of ten engines take over two seconds.
# CPU % is CPU time over wall time in a short window (100 % a CPU, as docker stats counts);
# memory is usage less the inactive file cache (as docker stats) less this probe's own
# anonymous memory, which the engine does not use.
USAGE_WINDOW_S = 0.3
USAGE_START = """
import time
def cpu_ns():
    for path in ("/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/cpuacct/cpuacct.usage",
                 "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
        try:
            text = open(path).read()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            usec = [l.split()[1] for l in text.splitlines() if l.startswith("usage_usec ")]
            return int(usec[0]) * 1000 if usec else None
        return int(text)
    return None
def memory():
    for current, stat, key in (
        ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
        ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat",
         "total_inactive_file")):
        try:
            usage = int(open(current).read())
            stats = dict(l.split()[:2] for l in open(stat) if l.strip())
        except (OSError, ValueError):
            continue
        inactive = int(stats.get(key, 0))
        return usage - inactive if inactive < usage else usage
    return None
def own_anonymous():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0
started_cpu, started = cpu_ns(), time.monotonic()
"""
USAGE_END = f"""
time.sleep(max(0.0, {USAGE_WINDOW_S} - (time.monotonic() - started)))
ended_cpu, ended = cpu_ns(), time.monotonic()
if started_cpu is not None and ended_cpu is not None:
    print("@cpu_percent", round((ended_cpu - started_cpu) / ((ended - started) * 1e9) * 100, 2))
used = memory()
if used is not None:
    print("@memory_bytes", max(0, used - own_anonymous()))
"""
ENGINE_PROBE = USAGE_START + PROGRAMS_PROBE + USAGE_END


@dataclass(frozen=True)
class EngineInside:
    """What ``ENGINE_PROBE`` found in one engine."""

    programs: list[dict[str, str]]
    cpu_percent: float | None
    memory_bytes: int | None


def parse_engine_probe(output: str) -> EngineInside:
    numbers: dict[str, float] = {}
    for line in output.splitlines():
        name, _, value = line.partition(" ")
        if name in ("@cpu_percent", "@memory_bytes"):
            try:
                numbers[name[1:]] = float(value)
            except ValueError:
                continue
    memory = numbers.get("memory_bytes")
    return EngineInside(
        programs=parse_supervisor_status(output),
        cpu_percent=numbers.get("cpu_percent"),
        memory_bytes=int(memory) if memory is not None else None,
    )


def parse_supervisor_status(output: str) -> list[dict[str, str]]:
    """``supervisorctl status`` lines (``NAME  STATE  description``) as name and state."""
    programs = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isupper() and parts[1].isalpha():
            programs.append({"name": parts[0], "state": parts[1]})
    return programs


def engine_campaigns(database: Database) -> dict[str, dict[str, int]]:
    """Engine id → campaign name → workers, from fresh heartbeats of running campaigns."""
    since = utcnow() - timedelta(seconds=FRESH_BEAT_S)
    query = (
        select(HEARTBEATS.c.engine, CAMPAIGNS.c.name, HEARTBEATS.c.workers)
        .join(CAMPAIGNS, CAMPAIGNS.c.id == HEARTBEATS.c.campaign_id)
        .where(
            and_(
                HEARTBEATS.c.campaign_id.is_not(None),
                HEARTBEATS.c.state == RUNNING,
                HEARTBEATS.c.last_beat_at >= since,
            )
        )
    )
    found: dict[str, dict[str, int]] = defaultdict(dict)
    with database.engine.connect() as connection:
        for engine_id, name, workers in connection.execute(query):
            found[engine_id][name] = int(workers or 0)
    return found


def campaigns_of(found: dict[str, dict[str, int]], engine_id: str) -> list[dict[str, Any]]:
    """The campaigns one container works on: its engine's and its extra workers'
    (``ENGINE-cID``), workers added up per campaign."""
    totals: dict[str, int] = defaultdict(int)
    for owner, campaigns in found.items():
        if owner == engine_id or owner.startswith(f"{engine_id}-c"):
            for name, workers in campaigns.items():
                totals[name] += workers
    return [{"name": name, "workers": workers} for name, workers in sorted(totals.items())]


def queue_depths(database: Database) -> list[dict[str, Any]]:
    """Items waiting or in flight per running or paused campaign."""
    active = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
    query = (
        select(CAMPAIGNS.c.name, ITEMS.c.status, func.count())
        .select_from(CAMPAIGNS.outerjoin(ITEMS, ITEMS.c.campaign_id == CAMPAIGNS.c.id))
        .where(CAMPAIGNS.c.status.in_([s.value for s in active]))
        .group_by(CAMPAIGNS.c.name, ITEMS.c.status)
    )
    depths: dict[str, dict[str, int]] = {}
    with database.engine.connect() as connection:
        for name, status, count in connection.execute(query):
            row = depths.setdefault(name, {s.value: 0 for s in QUEUE_STATES})
            key = QueueStatus(status).value if status is not None else None
            if key in row:
                row[key] = int(count)
    return [{"campaign": name, **counts} for name, counts in sorted(depths.items())]


def campaign_totals(database: Database) -> list[dict[str, Any]]:
    """Per running or paused campaign: its id, name, status, a count per item status and
    ``attempts`` (every delivery try so far; tries less sent and failed are deferrals).

    One query for what the dashboard shows every 2 s: queue depth, progress, and, from two
    of these, the sent, deferred and failed rates.
    """
    active = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
    query = (
        select(
            CAMPAIGNS.c.id,
            CAMPAIGNS.c.name,
            CAMPAIGNS.c.status,
            ITEMS.c.status,
            func.count(ITEMS.c.id),
            func.coalesce(func.sum(ITEMS.c.attempts), 0),
        )
        .select_from(CAMPAIGNS.outerjoin(ITEMS, ITEMS.c.campaign_id == CAMPAIGNS.c.id))
        .where(CAMPAIGNS.c.status.in_([s.value for s in active]))
        .group_by(CAMPAIGNS.c.id, CAMPAIGNS.c.name, CAMPAIGNS.c.status, ITEMS.c.status)
    )
    found: dict[int, dict[str, Any]] = {}
    with database.engine.connect() as connection:
        for campaign_id, name, status, item_status, count, attempts in connection.execute(query):
            row = found.setdefault(
                int(campaign_id),
                {
                    "id": int(campaign_id),
                    "name": str(name),
                    "status": CampaignStatus(status).value,
                    **{s.value: 0 for s in QueueStatus},
                    "attempts": 0,
                },
            )
            if item_status is not None:
                row[QueueStatus(item_status).value] = int(count)
                row["attempts"] += int(attempts or 0)
    return sorted(found.values(), key=lambda row: str(row["name"]))


def fresh_consumers(database: Database) -> int:
    """Engines (their own heartbeat rows) running with a beat in the last minute."""
    since = utcnow() - timedelta(seconds=FRESH_BEAT_S)
    query = select(func.count(func.distinct(HEARTBEATS.c.engine))).where(
        and_(
            HEARTBEATS.c.campaign_id.is_(None),
            HEARTBEATS.c.state == RUNNING,
            HEARTBEATS.c.last_beat_at >= since,
        )
    )
    with database.engine.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


def find_campaign(database: Database, name: str) -> tuple[int, str]:
    """The campaign's id and exact name; ``NotFound`` (one sentence) when there is none."""
    from app.services.campaigns import get_campaign

    with database.session() as session:
        campaign = get_campaign(session, name)
        return int(campaign.id), str(campaign.name)
