"""The Send Engines page's tables: a snapshot's engines, campaigns and programs as rows,
with their columns. Plain functions (no widgets), so tests feed them recorded snapshots.
"""

from __future__ import annotations

from app.engine.fleet_monitor import CampaignSample, EngineSample, FleetSnapshot
from app.views import theme
from app.views.table_model import Column, Row

HOST_NETWORK = "n/a (host network)"


def human_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def network_text(engine: EngineSample) -> str:
    if engine.state != "running":
        return "–"
    if engine.host_network:
        return HOST_NETWORK
    rates = (engine.net_rx_rate, engine.net_tx_rate)
    if None in rates:
        return f"{human_bytes(engine.net_rx_bytes)} in / {human_bytes(engine.net_tx_bytes)} out"
    return f"{human_bytes(rates[0])}/s in / {human_bytes(rates[1])}/s out"


def short_name(container: str) -> str:
    """``postroom-sendengine-2`` reads ``sendengine-2`` (every engine has the prefix)."""
    return container.removeprefix("postroom-")


def engine_row(engine: EngineSample) -> Row:
    return {
        "name": engine.name,
        "short_name": short_name(engine.name),
        "instance": engine.instance,
        "state": engine.state,
        "health": engine.health,
        "uptime_s": engine.uptime_s,
        "uptime": human_duration(engine.uptime_s),
        "cpu_percent": engine.cpu_percent,
        "cpu": "…"
        if engine.cpu_percent is None and engine.state == "running"
        else ("–" if engine.cpu_percent is None else f"{engine.cpu_percent:.1f} %"),
        "memory_bytes": engine.memory_bytes,
        "memory": human_bytes(engine.memory_bytes),
        "net": network_text(engine),
        "node": engine.node or "",
        "campaigns": ", ".join(f"{name} ({workers})" for name, workers in engine.campaigns),
    }


def _health_colour(row: Row) -> str | None:
    if row["health"] == "unhealthy" or row["state"] in ("exited", "dead", "restarting"):
        return theme.error_colour()
    if row["health"] == "starting":
        return theme.warning_colour()
    if row["health"] == "healthy":
        return theme.success_colour()
    return None


ENGINE_COLUMNS = (
    Column("instance", "#", align_right=True),
    Column(
        "name",
        "Engine",
        text=lambda row: row["short_name"],
        sort_value=lambda row: row["instance"],
        tooltip=lambda row: f"{row['name']}: {row['campaigns'] or 'no campaign now'}",
    ),
    Column("state", "State", colour=_health_colour),
    Column("health", "Health", colour=_health_colour),
    Column("cpu", "CPU", sort_value=lambda row: row["cpu_percent"] or 0.0, align_right=True),
    Column("memory", "Memory", sort_value=lambda row: row["memory_bytes"] or 0, align_right=True),
    Column("uptime", "Uptime", sort_value=lambda row: row["uptime_s"] or 0.0, align_right=True),
    Column("net", "Network"),
    Column("node", "Node"),
)
NODE_COLUMN = len(ENGINE_COLUMNS) - 1


def progress_text(campaign: CampaignSample) -> str:
    total = campaign.recipients
    done = campaign.counts["sent"] + campaign.counts["failed"]
    share = 100 * done / total if total else 0.0
    return f"{share:.0f}% of {total:,}"


def campaign_row(campaign: CampaignSample) -> Row:
    engines = ", ".join(f"{engine} ({workers})" for engine, workers in campaign.engines)
    return {
        "name": campaign.name,
        "status": campaign.status,
        "engines": engines or "none",
        "engines_short": (
            f"{len(campaign.engines)} ({campaign.workers} workers)" if campaign.engines else "none"
        ),
        "workers": campaign.workers,
        "progress": progress_text(campaign),
        "share": (
            (campaign.counts["sent"] + campaign.counts["failed"]) / campaign.recipients
            if campaign.recipients
            else 0.0
        ),
        "paused_reason": campaign.paused_reason,
        **campaign.counts,
    }


COUNTS = ("queued", "in_flight", "deferred", "held", "sent", "failed")


def _count(key: str, title: str, colour: str | None = None) -> Column:
    return Column(
        key,
        title,
        align_right=True,
        text=lambda row: f"{int(row[key]):,}",
        colour=(lambda row: colour if row[key] else None) if colour else None,
    )


CAMPAIGN_COLUMNS = (
    Column("name", "Campaign", tooltip=lambda row: row.get("paused_reason")),
    Column(
        "status",
        "Status",
        text=lambda row: str(row["status"]).title(),
        colour=lambda row: theme.warning_colour() if row["status"] == "paused" else None,
        tooltip=lambda row: row.get("paused_reason"),
    ),
    Column(
        "progress",
        "Progress",
        sort_value=lambda row: row["share"],
        tooltip=lambda row: (
            f"{row['sent'] + row['failed']:,} of {sum(row[k] for k in COUNTS):,} "
            "finished (sent or failed)"
        ),
    ),
    _count("sent", "Sent"),
    _count("deferred", "Deferred"),
    _count("failed", "Failed"),
    _count("held", "Held"),
    _count("queued", "Queued"),
    Column(
        "engines",
        "Engines",
        text=lambda row: row["engines_short"],
        sort_value=lambda row: row["workers"],
        tooltip=lambda row: f"Engine (workers): {row['engines']}",
    ),
)

PROGRAM_COLUMNS = (
    Column("name", "Program"),
    Column(
        "state",
        "State",
        colour=lambda row: (
            theme.success_colour()
            if row["state"] == "RUNNING"
            else theme.error_colour()
            if row["state"] in ("FATAL", "BACKOFF", "EXITED", "UNKNOWN")
            else None
        ),
    ),
)


def engine_rows(snapshot: FleetSnapshot) -> list[Row]:
    return [engine_row(engine) for engine in snapshot.engines]


def campaign_rows(snapshot: FleetSnapshot) -> list[Row]:
    return [campaign_row(campaign) for campaign in snapshot.campaigns]


def program_rows(snapshot: FleetSnapshot, instance: int | None) -> list[Row]:
    engine = snapshot.engine(instance) if instance is not None else None
    if engine is None:
        return []
    return [{"name": name, "state": state} for name, state in engine.programs]


def summary_text(snapshot: FleetSnapshot) -> str:
    """The status line after a sample."""
    running = sum(1 for e in snapshot.engines if e.state == "running")
    healthy = sum(1 for e in snapshot.engines if e.health == "healthy")
    rate = snapshot.sent_rate
    words = [
        f"{len(snapshot.engines)} engine{'s' if len(snapshot.engines) != 1 else ''}",
        f"{running} running",
        f"{healthy} healthy",
        f"{len(snapshot.campaigns)} active campaign{'s' if len(snapshot.campaigns) != 1 else ''}",
        f"{snapshot.queue_depth:,} waiting",
    ]
    if rate is not None:
        words.append(f"{rate:.1f} sent/s")
    mode = " (Swarm)" if snapshot.mode == "swarm" else ""
    return ", ".join(words) + f"{mode}; sampled in {snapshot.seconds:.2f} s."
