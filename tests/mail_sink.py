"""A recording SMTP sink for the engine tests: aiosmtpd, one line per accepted message.

    python tests/mail_sink.py --port P --record FILE [--ready-file F]
                              [--tempfail PCT] [--tempfail-attempts N]
                              [--drop PCT] [--reject PCT] [--seed N]

Every accepted message appends ``<Message-ID>\\t<recipient>\\n`` to the record file in one
``write`` on an ``O_APPEND`` descriptor, before the 250 is sent: a line in the file means
the sink took the message, so a Message-ID found twice is a message delivered twice. The
engine under test is the process that gets killed, never this one, so what the kernel has
is enough (no fsync).

Faults are chosen per recipient from a hash of the address and ``--seed`` (``fault_for``),
so a test computes the same plan as the sink without talking to it. The bands are
disjoint: a recipient has at most one fault.

- tempfail: RCPT gets ``451`` for its first ``--tempfail-attempts`` attempt(s), then is
  accepted (greylisting);
- drop: the connection is reset at the end of DATA, with no reply, on the recipient's first
  delivery (the message is not recorded), then accepted;
- reject: RCPT gets ``550`` with ``REJECT_TEXT`` every time.

When listening, it prints ``READY <port>`` on standard output and, with ``--ready-file``,
writes the port there (atomically), so a fixture can use ``--port 0`` and wait for the
file. SIGTERM or SIGINT stops it; it then prints its counts on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import signal
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session

LOCALHOST = "127.0.0.1"
SINK_NAME = "sink.postroom.test"  # given to aiosmtpd, else it looks up this host's FQDN
REJECT_TEXT = "sink refuses this mailbox on purpose"
REJECT_REPLY = f"550 5.1.1 Recipient address rejected: {REJECT_TEXT}"
TEMPFAIL_REPLY = "451 4.7.1 Greylisted by the test sink, try again later"
ACCEPT_REPLY = "250 2.0.0 Ok: queued by the test sink"
# A plain <local@domain> path, the form every engine sends; anything else goes to aiosmtpd.
_SIMPLE_PATH = re.compile(r"<([^<>@\s]+@[^<>@\s]+)>(.*)", re.DOTALL)
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Fault(Enum):
    NONE = "none"
    TEMPFAIL = "tempfail"
    DROP = "drop"
    REJECT = "reject"


@dataclass(frozen=True)
class FaultPlan:
    """Percentages of recipients given each fault (disjoint bands of one hash)."""

    tempfail: float = 0.0
    drop: float = 0.0
    reject: float = 0.0
    seed: int = 0
    tempfail_attempts: int = 1

    def __post_init__(self) -> None:
        if min(self.tempfail, self.drop, self.reject) < 0 or self.total > 100:
            raise ValueError("fault percentages must be >= 0 and add up to at most 100")
        if self.tempfail_attempts < 1:
            raise ValueError("--tempfail-attempts must be at least 1")

    @property
    def total(self) -> float:
        return self.tempfail + self.drop + self.reject

    def fault_for(self, address: str) -> Fault:
        """The fault of ``address``: the same in the sink and in the test that checks it."""
        if not self.total:
            return Fault.NONE
        digest = hashlib.sha256(f"{self.seed}:{address.lower()}".encode()).digest()
        point = int.from_bytes(digest[:4], "big") % 10_000 / 100  # 0.00 .. 99.99
        for fault, share in (
            (Fault.REJECT, self.reject),
            (Fault.TEMPFAIL, self.tempfail),
            (Fault.DROP, self.drop),
        ):
            if point < share:
                return fault
            point -= share
        return Fault.NONE


def message_id_of(content: bytes) -> str:
    """The Message-ID header of a raw message ("-" when it has none)."""
    head = content.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else "-"


class RecordingSink:
    """The aiosmtpd handler: applies the fault plan and records what it accepts."""

    def __init__(self, record: Path, plan: FaultPlan) -> None:
        self.plan = plan
        # O_APPEND and one os.write per message: lines never interleave or get lost in a
        # userspace buffer, and a reader sees each one as soon as the 250 went out.
        self._fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._rcpt_attempts: Counter[str] = Counter()
        self._dropped: set[str] = set()
        self.counts: Counter[str] = Counter()

    def close(self) -> None:
        os.close(self._fd)

    async def handle_EHLO(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # PIPELINING, as Postfix and most MTAs offer it: the engine then sends MAIL, RCPT
        # and DATA at once, which aiosmtpd reads in order like any other input. (A script of
        # its own: it does not import tests.smtp_peers' offer_pipelining.)
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self,
        server: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        key = address.lower()
        self._rcpt_attempts[key] += 1
        fault = self.plan.fault_for(key)
        if fault is Fault.REJECT:
            self.counts["rejected"] += 1
            return REJECT_REPLY
        if fault is Fault.TEMPFAIL and self._rcpt_attempts[key] <= self.plan.tempfail_attempts:
            self.counts["tempfailed"] += 1
            return TEMPFAIL_REPLY
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            key = rcpt.lower()
            if self.plan.fault_for(key) is Fault.DROP and key not in self._dropped:
                self._dropped.add(key)
                self.counts["dropped"] += 1
                _reset(server.transport)
                return "421 4.4.2 connection dropped"  # never reaches the client
        content = envelope.original_content or b""
        message_id = message_id_of(content)
        os.write(
            self._fd, "".join(f"{message_id}\t{rcpt}\n" for rcpt in envelope.rcpt_tos).encode()
        )
        self.counts["accepted"] += len(envelope.rcpt_tos)
        return ACCEPT_REPLY


class FastPathSmtp(SmtpProtocol):
    """aiosmtpd's protocol with a quick path for plain ``<local@domain>`` addresses.

    aiosmtpd parses each MAIL and RCPT address with the e-mail header parser and defines a
    class on every call; at thousands of messages a second that is most of the sink's CPU,
    which then slows the engine under test instead of measuring it.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        simple = _SIMPLE_PATH.fullmatch(arg.strip())
        if simple is None:
            return super()._getaddr(arg)  # type: ignore[no-any-return]
        return simple.group(1), simple.group(2)


def _reset(transport: Any) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send a RST instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def start_sink(
    handler: RecordingSink, port: int = 0, host: str = LOCALHOST
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) with ``handler`` on the running loop."""
    loop = asyncio.get_running_loop()

    def protocol() -> SmtpProtocol:
        return FastPathSmtp(
            handler,
            hostname=SINK_NAME,
            decode_data=False,
            enable_SMTPUTF8=True,
            loop=loop,
        )

    return await loop.create_server(protocol, host, port, backlog=512)


def _write_ready(path: Path, port: int) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    partial.replace(path)  # a reader never sees a half-written file


async def _serve(args: argparse.Namespace) -> RecordingSink:
    plan = FaultPlan(
        tempfail=args.tempfail,
        drop=args.drop,
        reject=args.reject,
        seed=args.seed,
        tempfail_attempts=args.tempfail_attempts,
    )
    handler = RecordingSink(Path(args.record), plan)
    server = await start_sink(handler, args.port, args.host)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {port}", flush=True)
    if args.ready_file:
        _write_ready(Path(args.ready_file), port)
    await stop.wait()
    server.close()
    handler.close()
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (see READY)")
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--record", required=True, help="file the accepted messages go to")
    parser.add_argument("--ready-file", help="written with the port once listening")
    parser.add_argument("--tempfail", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--tempfail-attempts", type=int, default=1, metavar="N")
    parser.add_argument("--drop", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--reject", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        handler = asyncio.run(_serve(args))
    except ValueError as error:  # a bad fault plan
        parser.error(str(error))
    counts = " ".join(f"{k}={v}" for k, v in sorted(handler.counts.items()))
    print(f"mail_sink: {counts or 'nothing received'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
