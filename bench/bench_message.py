"""How fast the send engine builds a message, against a bare ``EmailMessage``.

    .venv/bin/python bench/bench_message.py [--messages N] [--rounds R]

Builds N (default 10,000) marketing messages of about 1 KB (text and HTML alternatives,
three links, the group's header and footer) with ``build_message``: every header, signed
click and open tokens, List-Unsubscribe with its token, the VERP envelope. Prints
microseconds per message for the build alone and for build plus the bytes sent.

Peer, measured in the same run: a bare ``EmailMessage`` (policy SMTP) with the same
headers and the same bodies through ``set_content`` / ``add_alternative``, no tracking,
no envelope; once built only and once flattened with ``as_bytes()``. The two alternate in
R rounds so both see the same machine load; "ratio" is builder / bare (below 1: faster).
Target: a build well under 1 ms per message. Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from app.engine.message import (
    CampaignContent,
    MessageSpec,
    SenderPolicy,
    ServerPolicy,
    build_message,
)
from app.engine.tracking import TrackingKey
from app.models.base import Channel

TEXT = (
    "Hello,\n\nThis week's news: new products, a workshop on Thursday and the usual list of\n"
    "links you asked for. Read the full story on our site, or reply to this message if\n"
    "you have a question. We read every reply.\n\n"
    "See https://example.com/news and https://example.com/events for details.\n"
)
HTML = (
    "<html><body><h1>This week</h1><p>Hello,</p><p>This week's news: new products, a "
    'workshop on Thursday and the usual list of <a href="https://example.com/news">links</a> '
    'you asked for.</p><p>Read <a href="https://example.com/story?id=42&amp;ref=mail">the '
    'full story</a> or see <a href="https://example.com/events">the events</a>.</p>'
    "</body></html>"
)
CONTENT = CampaignContent(
    campaign_id=7,
    channel=Channel.MARKETING,
    from_email="news@mail.example.com",
    from_name="Example News",
    subject="This week at Example",
    text=TEXT,
    html=HTML,
)
SENDER = SenderPolicy(
    x_mailer="Postroom",
    text_header="Example Group",
    text_footer="-- \nYou get this because you subscribed.",
    html_header="<p>Example Group</p>",
    html_footer="<p>You get this because you subscribed.</p>",
)
SERVER = ServerPolicy(
    link_tracking_domain="click.example.net",
    open_tracking_domain="open.example.net",
    mail_from_domain="bounces.example.net",
)
KEY = TrackingKey(b"bench-key-bench-key-bench-key-32")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def specs(count: int) -> list[MessageSpec]:
    return [
        MessageSpec(CONTENT, item, f"user{item}@example.org", f"<7.{item}@mail.example.com>")
        for item in range(count)
    ]


def ours(batch: list[MessageSpec], flatten: bool) -> None:
    for spec in batch:
        built = build_message(spec, SENDER, SERVER, None, KEY)
        if flatten:
            built.as_bytes()


def bare_message(spec: MessageSpec) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = "Example News <news@mail.example.com>"
    message["To"] = spec.recipient
    message["Subject"] = CONTENT.subject
    message["Date"] = NOW
    message["Message-ID"] = spec.message_id
    message["X-Mailer"] = "Postroom"
    message.set_content(SENDER.text_header + "\n" + TEXT + SENDER.text_footer + "\n")
    message.add_alternative(HTML, subtype="html")
    return message


def bare(batch: list[MessageSpec], flatten: bool) -> None:
    for spec in batch:
        message = bare_message(spec)
        if flatten:
            message.as_bytes()


def timed(
    run: Callable[[list[MessageSpec], bool], None], batch: list[MessageSpec], flatten: bool
) -> float:
    started = time.perf_counter()
    run(batch, flatten)
    return (time.perf_counter() - started) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    items = specs(args.messages)
    size = len(build_message(items[0], SENDER, SERVER, None, KEY, now=NOW).as_bytes())
    bare_size = len(bare_message(items[0]).as_bytes())
    per_round = max(1, args.messages // args.rounds)
    batches = [items[i : i + per_round] for i in range(0, len(items), per_round)]
    ours([items[0]], True)  # the campaign is prepared once, outside the timing
    for flatten in (False, True):
        mine: list[float] = []
        peer: list[float] = []
        for batch in batches:
            mine.append(timed(ours, batch, flatten))
            peer.append(timed(bare, batch, flatten))
        what = "build + as_bytes()" if flatten else "build only"
        mine_us, peer_us = statistics.median(mine), statistics.median(peer)
        print(
            f"{what:20} builder {mine_us:8.1f} µs/msg   bare EmailMessage {peer_us:8.1f} µs/msg"
            f"   ratio {mine_us / peer_us:.3f}   ({args.messages} messages, median of"
            f" {len(batches)} rounds)"
        )
    print(f"message size: builder {size} bytes (with tracking), bare {bare_size} bytes")


if __name__ == "__main__":
    main()
