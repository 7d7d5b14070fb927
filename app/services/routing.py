"""Which delivery server serves a user on a channel, and why; allocation badges per server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Channel, DeliveryServer, User, UserGroup
from app.services import validation
from app.services.errors import NoDeliveryRoute
from app.services.groups import CHANNEL_ATTRIBUTE, server_for
from app.services.users import get_user

BADGE_CODES = {Channel.MARKETING: "M", Channel.TRANSACTIONAL: "T", Channel.AUTORESPONDER: "AR"}
BADGE_COLOURS = {
    Channel.MARKETING: "blue",
    Channel.TRANSACTIONAL: "green",
    Channel.AUTORESPONDER: "purple",
}
NOT_ALLOCATED = "Not Allocated"


@dataclass(frozen=True)
class Route:
    """``method`` is "delivery_server", a legacy send method name, or "none"."""

    username: str
    group: str
    channel: Channel
    server: str | None
    method: str
    reason: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "user": self.username,
            "group": self.group,
            "channel": self.channel.value,
            "server": self.server,
            "method": self.method,
            "reason": self.reason,
        }


def parse_channel(value: object) -> Channel:
    return validation.choice(value, "Channel", Channel)


def resolve_route(session: Session, username: str, channel: Channel | str) -> Route:
    """The delivery path the send engine would take; never raises for a missing route."""
    return route_for_user(get_user(session, username), channel)


def route_for_user(user: User, channel: Channel | str) -> Route:
    """The rule itself, on a loaded (or transient, unsaved) user and its group."""
    channel = parse_channel(channel)
    group = user.group
    server = server_for(group, channel)
    if server is not None:
        return Route(
            user.username,
            group.name,
            channel,
            server.name,
            "delivery_server",
            f"User group {group.name!r} assigns delivery server {server.name!r} "
            f"to the {channel.value} channel.",
        )
    if group.legacy_send_method is not None:
        method = group.legacy_send_method.value
        return Route(
            user.username,
            group.name,
            channel,
            None,
            method,
            f"User group {group.name!r} has no delivery server for the {channel.value} "
            f"channel, so its legacy send method {method!r} is used; assign a delivery "
            "server in Sending Settings to replace it.",
        )
    return Route(
        user.username,
        group.name,
        channel,
        None,
        "none",
        f"User group {group.name!r} has no delivery server for the {channel.value} channel "
        "and no legacy send method; assign a delivery server in its Sending Settings.",
    )


def require_route(session: Session, username: str, channel: Channel | str) -> Route:
    """Like resolve_route, but a missing route is a NoDeliveryRoute error (for sending)."""
    route = resolve_route(session, username, channel)
    if route.method == "none":
        raise NoDeliveryRoute(route.reason)
    return route


@dataclass(frozen=True)
class Badge:
    group: str
    channel: Channel
    code: str  # M, T, AR
    colour: str  # blue, green, purple


def allocation_badges(session: Session) -> dict[str, list[Badge]]:
    """Server name -> badges, one per (group, channel) using it; [] means Not Allocated."""
    badges: dict[str, list[Badge]] = {
        name: []
        for name in session.scalars(select(DeliveryServer.name).order_by(DeliveryServer.name))
    }
    for group in session.scalars(select(UserGroup).order_by(UserGroup.name)):
        for channel in Channel:
            server: DeliveryServer | None = getattr(group, CHANNEL_ATTRIBUTE[channel])
            if server is not None:
                badges[server.name].append(
                    Badge(group.name, channel, BADGE_CODES[channel], BADGE_COLOURS[channel])
                )
    return badges


def badge_text(badges: Sequence[Badge]) -> str:
    """``UserGroup1: M T; Other: AR`` or ``Not Allocated``."""
    if not badges:
        return NOT_ALLOCATED
    by_group: dict[str, list[str]] = {}
    for badge in badges:
        by_group.setdefault(badge.group, []).append(badge.code)
    return "; ".join(f"{group}: {' '.join(codes)}" for group, codes in by_group.items())
