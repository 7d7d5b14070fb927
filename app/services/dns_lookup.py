"""Where the sender-domain checks ask their DNS questions, and the asking itself.

Decisions:

* A domain's own records are asked of its *authoritative* name servers (zone found by an
  SOA walk, NS names resolved to addresses), never of a recursive resolver: a resolver may
  still hold the "no such record" answer it cached before the user published the record,
  and the domain would stay pending for that negative TTL. Names outside the domain (CNAME
  targets, SPF includes) are asked of the resolver, as a receiving mail server sees them.
* ``nameserver=(address, port)`` sends every question to that one server instead: for tests
  and split-horizon setups where the console must see an internal view.
* All questions of one run share one UDP socket per address family, matched to answers by
  server, port, query ID and question (app.services.dns_wire: the wire format and that
  transport), plus a per-run answer cache. A bulk check of a
  thousand domains is then bound by the server, not by creating sockets and resolvers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.message
import dns.nameserver
import dns.rcode
import dns.resolver

from app.services import validation
from app.services.dns_verdicts import Verdict, explain
from app.services.dns_wire import (
    MAX_CNAME_HOPS,
    Answer,
    LookupFailed,
    Question,
    Server,
    Transport,
    WireError,
    ip_key,
    is_under,
    merge,
    norm,
    parse,
)
from app.services.errors import ValidationError

__all__ = ["Discovery", "DnsLookup", "find_authoritative_servers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Discovery:
    """How the authoritative servers are found when no ``nameserver`` override is given.

    ``resolver`` is the recursive (or stub) resolver asked for SOA, NS and addresses, and
    for names outside the domain; None reads the system's resolv.conf. ``port`` is the
    port the authoritative servers are asked on: 53 on the internet, another in tests.
    """

    resolver: Server | None = None
    port: int = 53


def _describe(exc: BaseException) -> str:
    """For the log only: a library's exception text is never shown to the user."""
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


def _resolver_verdict(exc: dns.exception.DNSException) -> Verdict:
    """What a failed question to the resolver means for the domain being checked."""
    if isinstance(exc, (dns.resolver.NoRootSOA, dns.resolver.NXDOMAIN)):
        # NXDOMAIN at every level up to the root, or a resolver that hides the SOA.
        return "not_in_dns"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "servers_silent"  # a zone without NS records: its servers can't be found
    if isinstance(exc, dns.resolver.NoNameservers):
        errors = exc.kwargs.get("errors") or []
        # A recursive resolver's SERVFAIL: it was reached, the domain's servers were not.
        if any(
            isinstance(error[-1], dns.message.Message) and error[-1].rcode() == dns.rcode.SERVFAIL
            for error in errors
        ):
            return "servers_silent"
    # Timeouts, refusals, no network, no resolver configured: nobody could be asked.
    return "unreachable"


def _problem(server: Server, exc: BaseException) -> str:
    """One server's failure to answer, in our words."""
    where = f"{server[0]} port {server[1]}"
    if isinstance(exc, TimeoutError):
        return str(exc)  # the transport's own sentence: "no answer from ... in N s"
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else "network error"
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            reason = "no route to it from this workstation"
        return f"{where} could not be reached ({reason.lower()})"
    return f"{where} sent an answer that could not be read"


# Seconds one run may wait for an answer: a slow authoritative server still answers, a
# dead one does not hold a bulk check for long.
DEFAULT_TIMEOUT = 5.0


class DnsLookup:
    """The questions of one run: where to ask, the shared sockets, and an answer cache."""

    def __init__(
        self,
        *,
        nameserver: Server | None = None,
        discovery: Discovery | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValidationError("Timeout", "must be more than 0 seconds.")
        self._override = (nameserver[0], int(nameserver[1])) if nameserver else None
        self._discovery = discovery or Discovery()
        self._timeout = timeout
        self._transport = Transport()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._answers: dict[tuple[str, str, tuple[Server, ...]], asyncio.Future[Answer]] = {}
        self._zones: dict[str, asyncio.Task[tuple[str, tuple[Server, ...]]]] = {}
        self._zone_servers: dict[str, asyncio.Task[tuple[Server, ...]]] = {}
        self._replied: set[Server] = set()

    async def __aenter__(self) -> DnsLookup:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for task in (*self._zones.values(), *self._zone_servers.values()):
            task.cancel()
        self._transport.close()

    @property
    def override(self) -> Server | None:
        """The one server every question goes to, when the user gave one."""
        return self._override

    def has_replied(self, server: Server) -> bool:
        """Did ``server`` send any answer at all (even a refusal) during this run?"""
        return (server[0], int(server[1])) in self._replied

    # -- where to ask

    def _stub_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            given = self._discovery.resolver
            try:
                resolver = dns.asyncresolver.Resolver(configure=given is None)
            except dns.exception.DNSException as exc:
                logger.info("no DNS resolver is configured: %s", _describe(exc))
                raise LookupFailed("no DNS resolver is configured", "unreachable") from None
            if given is not None:
                resolver.nameservers = [given[0]]
                resolver.port = int(given[1])
            resolver.lifetime = self._timeout
            resolver.cache = dns.resolver.Cache()
            self._resolver = resolver
        return self._resolver

    def _resolver_servers(self) -> tuple[Server, ...]:
        if self._override is not None:
            return (self._override,)
        resolver = self._stub_resolver()
        servers: list[Server] = []
        for nameserver in resolver.nameservers:
            if isinstance(nameserver, str):
                port = resolver.nameserver_ports.get(nameserver, resolver.port)
                servers.append((nameserver, port))
            elif isinstance(nameserver, dns.nameserver.Do53Nameserver):
                servers.append((nameserver.address, nameserver.port))
        if not servers:
            raise LookupFailed(
                "the system resolver has no plain DNS name server to ask", "unreachable"
            )
        return tuple(servers)

    async def zone_of(self, name: str) -> tuple[str, tuple[Server, ...]]:
        """The zone holding ``name`` and its authoritative servers (the override, if set)."""
        if self._override is not None:
            return "", (self._override,)
        task = self._zones.get(name)
        if task is None:
            task = self._zones[name] = asyncio.ensure_future(self._discover(name))
        return await asyncio.shield(task)

    async def _discover(self, name: str) -> tuple[str, tuple[Server, ...]]:
        resolver = self._stub_resolver()
        try:
            zone_name = await dns.asyncresolver.zone_for_name(
                name, resolver=resolver, lifetime=self._timeout
            )
        except dns.exception.DNSException as exc:
            verdict = _resolver_verdict(exc)
            logger.info("DNS zone of %s not found (%s): %s", name, verdict, _describe(exc))
            raise LookupFailed(f"could not find the DNS zone of {name}", verdict) from None
        zone = norm(zone_name)
        if not zone:
            # Only the root zone claims it: its top-level domain does not exist.
            raise LookupFailed(f"only the root zone knows {name}", "not_in_dns")
        task = self._zone_servers.get(zone)
        if task is None:
            task = self._zone_servers[zone] = asyncio.ensure_future(self._zone_ns(zone))
        return zone, await asyncio.shield(task)

    async def _zone_ns(self, zone: str) -> tuple[Server, ...]:
        resolver = self._stub_resolver()
        try:
            ns_answer = await resolver.resolve(zone + ".", "NS", lifetime=self._timeout)
        except dns.exception.DNSException as exc:
            verdict = _resolver_verdict(exc)
            if verdict == "not_in_dns":
                verdict = "servers_silent"  # the zone exists (it has an SOA); its NS don't
            logger.info("NS records of %s not read (%s): %s", zone, verdict, _describe(exc))
            raise LookupFailed(f"could not read the NS records of {zone}", verdict) from None
        hosts = sorted({norm(rdata.target) for rdata in ns_answer})

        async def addresses(host: str, rdtype: str) -> list[str]:
            try:
                answer = await resolver.resolve(
                    host + ".", rdtype, lifetime=self._timeout, raise_on_no_answer=False
                )
            except dns.exception.DNSException:
                return []  # one unresolvable NS name is not fatal while others resolve
            return [ip_key(rdata.address) for rdata in answer]

        found = await asyncio.gather(
            *(addresses(host, rdtype) for rdtype in ("A", "AAAA") for host in hosts)
        )
        # IPv4 first: many workstations have no IPv6 route, and a silent v6 server would
        # cost its whole timeout before the next one is tried.
        ordered = list(dict.fromkeys(address for group in found for address in group))
        port = self._discovery.port
        servers = tuple((address, port) for address in ordered)
        if not servers:
            raise LookupFailed(
                f"none of the name servers of {zone} ({', '.join(hosts) or 'none listed'}) "
                "has an address",
                "servers_silent",
                tuple(hosts),
            )
        return servers

    # -- asking

    async def ask(self, name: str, rdtype: str, servers: tuple[Server, ...]) -> Answer:
        """One question (no CNAME following beyond what the response holds), cached per run."""
        key = (name, rdtype, servers)
        shared = self._answers.get(key)
        if shared is not None:
            # Shielded: a waiter being cancelled must not cancel the answer others wait for.
            return await asyncio.shield(shared)
        shared = self._answers[key] = asyncio.get_running_loop().create_future()
        try:
            answer = await self._ask(name, rdtype, servers)
        except BaseException:
            del self._answers[key]  # a later question asks again
            shared.cancel()
            raise
        shared.set_result(answer)
        return answer

    async def _ask(self, name: str, rdtype: str, servers: tuple[Server, ...]) -> Answer:
        try:
            question = Question.make(name, rdtype)
        except dns.exception.DNSException as exc:
            logger.debug("%s is not a valid name: %s", name, _describe(exc))
            return Answer(name, dns.rcode.FORMERR, error=f"{name} is not a valid DNS name")
        tried = servers[:3]
        budget = self._timeout / len(tried)
        problems: list[str] = []
        for server in tried:
            try:
                response = await self._transport.exchange(question, server, budget)
                if response.rcode == dns.rcode.FORMERR:
                    # A server from before EDNS (RFC 6891 7): ask again without it.
                    response = await self._transport.exchange(question, server, budget, edns=False)
            except (OSError, dns.exception.DNSException, WireError) as exc:
                logger.debug("%s %s at %s: %s", name, rdtype, server, _describe(exc))
                problems.append(_problem(server, exc))
                continue
            self._replied.add(server)
            answer = parse(response, question)
            if answer.error is None:
                return answer
            problems.append(f"{server[0]} port {server[1]}: {answer.error}")
        return Answer(question.name, dns.rcode.SERVFAIL, error="; ".join(problems))

    async def query(self, domain: str, name: str, rdtype: str, *, follow: bool = True) -> Answer:
        """Ask the authoritative servers of ``domain`` (or of ``name``, outside it)."""
        try:
            _zone, servers = await self.zone_of(domain if is_under(name, domain) else name)
            answer = await self.ask(name, rdtype, servers)
            if answer.referral:
                # ``name`` sits in a zone delegated below the domain's own zone.
                if self._override is not None:
                    return Answer(name, dns.rcode.SERVFAIL, error=self._not_authoritative(name))
                _zone, servers = await self.zone_of(name)
                answer = await self.ask(name, rdtype, servers)
        except LookupFailed as exc:
            return Answer(name, dns.rcode.SERVFAIL, error=str(exc))
        if follow and not answer.complete and answer.error is None:
            answer = merge(answer, await self.resolve(answer.chain[-1], rdtype))
        return answer

    def _not_authoritative(self, name: str) -> str:
        assert self._override is not None
        address, port = self._override
        return f"{address} port {port} is not authoritative for {name} (it sent a referral)"

    async def resolve(self, name: str, rdtype: str) -> Answer:
        """Ask the resolver about a name outside the checked domain, following CNAMEs."""
        try:
            servers = self._resolver_servers()
        except LookupFailed as exc:
            return Answer(name, dns.rcode.SERVFAIL, error=str(exc))
        answer = await self.ask(name, rdtype, servers)
        for _ in range(MAX_CNAME_HOPS):
            if answer.complete or answer.error is not None:
                return answer
            answer = merge(answer, await self.ask(answer.chain[-1], rdtype, servers))
        return Answer(name, dns.rcode.SERVFAIL, error=f"the CNAME chain from {name} is too long")


async def find_authoritative_servers(
    domain: str, *, discovery: Discovery | None = None, timeout: float = DEFAULT_TIMEOUT
) -> tuple[str, list[Server]]:
    """The zone holding ``domain`` and the (address, port) of its authoritative servers."""
    name = validation.domain(domain, "Sender domain")
    async with DnsLookup(discovery=discovery, timeout=timeout) as lookup:
        try:
            zone, servers = await lookup.zone_of(name)
        except LookupFailed as exc:
            raise ValidationError(
                "Sender domain", explain(exc.verdict, name, servers=exc.servers)
            ) from None
    return zone, list(servers)
