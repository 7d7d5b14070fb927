"""The DNS wire format and the shared UDP transport of the sender-domain checks.

Why this module exists: dnspython's message parsing (``dns.message``) was measured at
270–950 µs per message here, several times the name server's own work, and a bulk check
sends thousands of small questions: too slow for the target of checking 1,000 domains in
about two seconds. So questions are encoded and answers read by hand, and only what a
verdict needs is read: the header, the question (to match an answer to what was asked),
the answer records of the types a template can hold, and the authority section's SOA owner
and NS presence. tests/services/test_dns_verify.py cross-checks this reader against ``dns.message``
with property tests on generated messages, and feeds it damaged and arbitrary bytes.

dnspython still does the rest: finding zones and their servers (in dns_lookup), the TCP
fallback for truncated answers, and names that need escaping, IDNA or length checks
(``dns.name``).

All questions of one run share one UDP socket per address family, answers matched to their
questions by server, port, query ID and question; a lost datagram is resent within the
question's time budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import re
import secrets
import socket
import struct
from dataclasses import dataclass
from typing import Any, cast

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode

from app.services.dns_verdicts import Verdict

__all__ = [
    "MAX_CNAME_HOPS",
    "Answer",
    "LookupFailed",
    "Question",
    "Server",
    "Transport",
    "WireError",
    "ip_key",
    "merge",
    "name_key",
    "norm",
    "parse",
    "read_response",
]

logger = logging.getLogger(__name__)

Server = tuple[str, int]

MAX_CNAME_HOPS = 8  # CNAMEs followed for one name, within a response and across questions
_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: fits any path without fragmentation


# ---------------------------------------------------------------- names


def norm(name: str | dns.name.Name) -> str:
    """A name as compared: lower case, no trailing dot (DNS names are case-insensitive)."""
    text = name.to_text(omit_final_dot=True) if isinstance(name, dns.name.Name) else name
    return text.strip().rstrip(".").lower()


def is_under(name: str, zone: str) -> bool:
    """Is the normalised ``name`` the zone itself or a name below it?"""
    return name == zone or name.endswith("." + zone)


@functools.lru_cache(maxsize=4096)
def ip_key(address: str) -> str:
    """One spelling per address, so a reply's source matches what the query was sent to.

    Cached: every datagram's source goes through here, and a run sees few addresses.
    """
    bare = address.split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        return bare


# ---------------------------------------------------------------- wire format

_RD, _QR, _AA, _TC = 0x0100, 0x8000, 0x0400, 0x0200
_TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
_CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
# OPT pseudo-record: root owner, type 41, UDP payload size, no extended flags, no options.
_EDNS_OPT = b"\x00" + _RR_FIXED.pack(41, _EDNS_PAYLOAD, 0, 0)
# Names of letters, digits, hyphens and underscores in non-empty labels: no escaping needed.
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


class WireError(ValueError):
    """A message that can't be read: ignored like any stray packet."""


@dataclass(frozen=True)
class Question:
    name: str  # normalised text
    rdtype: str
    section: bytes  # the question as sent: name, type, class
    key: bytes  # the name in lower-case wire form, as owners are compared

    @classmethod
    def make(cls, name: str, rdtype: str) -> Question:
        text = norm(name)
        encoded = text.encode("ascii", "replace")
        labels = encoded.split(b".")
        if _PLAIN_NAME.fullmatch(encoded) and max(map(len, labels)) <= 63:
            # The common case, encoded directly: dns.name's parser costs more than the rest.
            wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
            if len(wire) > 255:
                raise dns.name.NameTooLong
        else:
            qname = dns.name.from_text(name)  # escapes, IDNA, and the length checks
            qwire = qname.to_wire()
            assert qwire is not None
            wire, text = qwire, norm(qname)
        section = wire + struct.pack("!HH", _TYPE_CODES[rdtype], _CLASS_IN)
        return cls(text, rdtype, section, wire.lower())

    def query(self, query_id: int, *, edns: bool = True) -> bytes:
        header = _HEADER.pack(query_id, _RD, 1, 0, 0, 1 if edns else 0)
        return header + self.section + (_EDNS_OPT if edns else b"")


@dataclass(frozen=True)
class _Record:
    owner: bytes  # lower-case wire form
    rdtype: int
    value: str | None  # text of A, AAAA, CNAME, MX and TXT data
    target: bytes | None = None  # a CNAME's target, lower-case wire form


@dataclass(frozen=True)
class _Response:
    query_id: int
    flags: int
    question: bytes  # lower-cased, to compare with Question.section
    answer: tuple[_Record, ...]
    soa_owner: str | None
    has_ns: bool

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def _read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at ``offset`` and the offset just past it in line."""
    labels: list[bytes] = []
    resume: int | None = None
    size = 1
    while True:
        if offset >= len(data):
            raise WireError("name runs past the message")
        length = data[offset]
        if length >= 0xC0:
            if offset + 1 >= len(data):
                raise WireError("cut compression pointer")
            pointer = ((length & 0x3F) << 8) | data[offset + 1]
            # Pointers must go backwards (RFC 1035 4.1.4), which also rules out loops.
            if pointer >= offset:
                raise WireError("forward compression pointer")
            if resume is None:
                resume = offset + 2
            offset = pointer
            continue
        if length > 63:
            raise WireError("unknown label type")
        offset += 1
        if length == 0:
            return tuple(labels), resume if resume is not None else offset
        label = data[offset : offset + length]
        size += length + 1
        if len(label) != length or size > 255:
            raise WireError("label runs past the message or name too long")
        labels.append(label)
        offset += length


def name_key(labels: tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels).lower() + b"\x00"


def _name_text(labels: tuple[bytes, ...]) -> str:
    joined = b".".join(labels)
    if _PLAIN_NAME.fullmatch(joined):
        return joined.decode("ascii").lower()  # the common case, without dns.name's escaping
    try:
        return norm(dns.name.Name((*labels, b"")))
    except dns.exception.DNSException as exc:
        raise WireError(str(exc)) from None


def _read_record(data: bytes, offset: int) -> tuple[_Record, int]:
    owner, offset = _read_name(data, offset)
    if offset + _RR_FIXED.size > len(data):
        raise WireError("record header runs past the message")
    rdtype, rdclass, _ttl, length = _RR_FIXED.unpack_from(data, offset)
    start = offset + _RR_FIXED.size
    end = start + length
    if end > len(data):
        raise WireError("record data runs past the message")
    value: str | None = None
    target: bytes | None = None
    if rdclass == _CLASS_IN:
        rdata = data[start:end]
        if rdtype == 1 and length == 4:
            value = str(ipaddress.IPv4Address(rdata))
        elif rdtype == 28 and length == 16:
            value = ipaddress.IPv6Address(rdata).compressed
        elif rdtype in (5, 15):
            at = start + 2 if rdtype == 15 else start
            labels, name_end = _read_name(data, at)
            if name_end != end:
                raise WireError("name does not fill the record data")
            value = _name_text(labels)
            if rdtype == 5:
                target = name_key(labels)
            else:
                value = f"{int.from_bytes(data[start : start + 2], 'big')} {value}"
        elif rdtype == 16:
            strings: list[bytes] = []
            at = start
            while at < end:
                string_end = at + 1 + data[at]
                if string_end > end:
                    raise WireError("TXT string runs past the record")
                strings.append(data[at + 1 : string_end])
                at = string_end
            # One TXT record may be split into <=255-byte strings: receivers join them.
            value = b"".join(strings).decode("utf-8", "replace")
    return _Record(name_key(owner), rdtype, value, target), end


def read_response(data: bytes) -> _Response:
    if len(data) < _HEADER.size:
        raise WireError("shorter than a DNS header")
    query_id, flags, questions, answers, authorities, _additional = _HEADER.unpack_from(data)
    if not flags & _QR:
        raise WireError("not a response")
    offset = _HEADER.size
    start = offset
    for _ in range(questions):
        _labels, offset = _read_name(data, offset)
        offset += 4
    question = data[start:offset].lower()
    if offset > len(data):
        raise WireError("question runs past the message")
    if flags & _TC:
        # Truncated: the sections may be cut anywhere, and TCP will bring the whole answer.
        return _Response(query_id, flags, question, (), None, False)
    answer: list[_Record] = []
    for _ in range(answers):
        record, offset = _read_record(data, offset)
        answer.append(record)
    soa_owner: str | None = None
    has_ns = False
    # The authority section matters only without answers (the zone apex of a negative
    # answer, or a referral); skipping it otherwise saves most of the parsing.
    for _ in range(0 if answer else authorities):
        owner, after = _read_name(data, offset)
        if after + _RR_FIXED.size > len(data):
            raise WireError("record header runs past the message")
        rdtype, _rdclass, _ttl, length = _RR_FIXED.unpack_from(data, after)
        offset = after + _RR_FIXED.size + length
        if rdtype == 6 and soa_owner is None:
            soa_owner = _name_text(owner)
        has_ns = has_ns or rdtype == 2
    if offset > len(data):
        raise WireError("authority section runs past the message")
    # The additional section (glue, OPT) changes no verdict and is not read.
    return _Response(query_id, flags, question, tuple(answer), soa_owner, has_ns)


# ---------------------------------------------------------------- transport


class LookupFailed(Exception):
    """No server could be found or reached: ``verdict`` says which way, in the report's
    words (app.services.dns_verdicts); the message is for the log, never the user."""

    def __init__(
        self, message: str, verdict: Verdict = "unreachable", servers: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.verdict: Verdict = verdict
        self.servers = servers  # the name server host names, when they were found


_Pending = tuple[Question, "asyncio.Future[_Response]"]


class _DatagramMux(asyncio.DatagramProtocol):
    """One UDP socket for many concurrent questions, answers matched to their futures."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[tuple[str, int, int], _Pending] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < _HEADER.size:
            return
        key = (ip_key(str(addr[0])), int(addr[1]), int.from_bytes(data[:2], "big"))
        entry = self.pending.get(key)
        if entry is None:
            return  # a late answer to a question given up on, or a stray packet
        question, future = entry
        if future.done():
            return
        try:
            response = read_response(data)
        except WireError:
            return  # unreadable: keep waiting, the resend or the timeout decides
        # Server, port and ID are not enough: the question must match too, so an off-path
        # spoofer must also know which of the questions in flight an ID carries.
        if response.question == question.section.lower():
            future.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket can't be tied to one question; its timeout
        # moves on to the next server.
        logger.debug("DNS UDP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        for _question, future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the DNS socket was closed"))


class Transport:
    """Sends questions over the shared sockets, resending on loss, using TCP when truncated."""

    def __init__(self) -> None:
        self._muxes: dict[int, _DatagramMux] = {}
        self._opening = asyncio.Lock()

    async def _mux(self, family: int) -> _DatagramMux:
        mux = self._muxes.get(family)
        if mux is not None:
            return mux
        async with self._opening:
            mux = self._muxes.get(family)
            if mux is None:
                local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
                loop = asyncio.get_running_loop()
                transport, mux = await loop.create_datagram_endpoint(
                    _DatagramMux, local_addr=local, family=family
                )
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # A bulk check's answers arrive in bursts faster than one loop pass reads.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                self._muxes[family] = mux
            return mux

    async def exchange(
        self, question: Question, server: Server, timeout: float, *, edns: bool = True
    ) -> _Response:
        address, port = ip_key(server[0]), server[1]
        mux = await self._mux(socket.AF_INET6 if ":" in address else socket.AF_INET)
        transport = mux.transport
        assert transport is not None
        # IDs from a CSPRNG: with one shared source port, the ID is what a spoofer must guess.
        query_id = int.from_bytes(secrets.token_bytes(2), "big")
        while (address, port, query_id) in mux.pending:
            query_id = int.from_bytes(secrets.token_bytes(2), "big")
        key = (address, port, query_id)
        wire = question.query(query_id, edns=edns)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Response] = loop.create_future()
        mux.pending[key] = (question, future)
        # Resend after a fifth, then two fifths of the budget: a lost datagram costs a
        # short wait instead of the whole timeout. A timer, not a waiting task, per send.
        shares = (0.2, 0.4, 0.4)
        timer: list[asyncio.TimerHandle] = []

        def send(attempt: int) -> None:
            if future.done():
                return
            if attempt == len(shares):
                future.set_exception(
                    TimeoutError(f"no answer from {address} port {port} in {timeout:g} s")
                )
                return
            transport.sendto(wire, (address, port))
            timer[:] = [loop.call_later(timeout * shares[attempt], send, attempt + 1)]

        send(0)
        try:
            response = await future
        finally:
            for handle in timer:
                handle.cancel()
            mux.pending.pop(key, None)
        if response.flags & _TC:
            response = await self._tcp(wire, address, port, timeout)
        return response

    @staticmethod
    async def _tcp(wire: bytes, address: str, port: int, timeout: float) -> _Response:
        query = dns.message.from_wire(wire)
        reply = await dns.asyncquery.tcp(query, address, timeout=timeout, port=port)
        return read_response(reply.to_wire())

    def close(self) -> None:
        for mux in self._muxes.values():
            if mux.transport is not None:
                mux.transport.close()
        self._muxes.clear()


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """What the DNS said about one name and type, CNAMEs followed where asked."""

    name: str
    rcode: int
    values: tuple[str, ...] = ()
    chain: tuple[str, ...] = ()  # CNAME targets followed from ``name``, in order
    complete: bool = True  # False: the chain ends at a target this answer says nothing about
    zone: str | None = None  # apex of the zone, from the SOA of a negative answer
    error: str | None = None
    referral: bool = False

    @property
    def nxdomain(self) -> bool:
        return self.rcode == dns.rcode.NXDOMAIN


def parse(response: _Response, question: Question) -> Answer:
    rcode = response.rcode
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        text = dns.rcode.to_text(dns.rcode.Rcode(rcode))
        return Answer(question.name, rcode, error=f"the server answered {text}")
    wanted = _TYPE_CODES[question.rdtype]
    current = question.key
    chain: list[str] = []
    values: tuple[str, ...] = ()
    for _ in range(MAX_CNAME_HOPS + 1):
        here = [r for r in response.answer if r.owner == current]
        values = tuple(r.value for r in here if r.rdtype == wanted and r.value is not None)
        cname = next((r for r in here if r.rdtype == 5 and r.target is not None), None)
        if values or wanted == 5 or cname is None or cname.value is None:
            break
        assert cname.target is not None
        current = cname.target
        chain.append(cname.value)
    referral = (
        rcode == dns.rcode.NOERROR
        and not response.answer
        and not response.flags & _AA
        and response.has_ns
    )
    complete = bool(values) or not chain or rcode == dns.rcode.NXDOMAIN
    return Answer(
        question.name,
        rcode,
        values,
        tuple(chain),
        complete,
        response.soa_owner,
        referral=referral,
    )


def merge(first: Answer, rest: Answer) -> Answer:
    """``first`` ended at a CNAME whose target ``rest`` describes: one answer for the name."""
    return Answer(
        name=first.name,
        rcode=rest.rcode,
        values=rest.values,
        chain=first.chain + rest.chain,
        complete=rest.complete,
        zone=first.zone,
        error=rest.error,
    )
