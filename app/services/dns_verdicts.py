"""Why a whole domain could not be checked, said once, in words a user can act on.

A check that cannot ask anybody used to repeat the DNS library's exception text under
every record ("There is no SOA RR at the DNS root name. This should never happen!"). The
few ways a domain-wide check fails are named here instead, each with one sentence that
says what is wrong, what to do, and that a private or split-horizon zone can be checked by
giving its name server. The library's own text never reaches the user: it goes to the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "NOT_CHECKED",
    "PRIVATE_ZONE_HINT",
    "Verdict",
    "explain",
]

Verdict = Literal[
    # The DNS says the name does not exist: NXDOMAIN up to the root, or only the root knows it.
    "not_in_dns",
    # The resolver of this workstation could not be asked: no answer, refused, no network.
    "unreachable",
    # The domain's own name servers were found but did not answer (or cannot be found).
    "servers_silent",
    # The name server given as an override did not answer.
    "override_silent",
    # The name server given as an override answered, but not for this domain.
    "override_refused",
]

PRIVATE_ZONE_HINT = (
    "for a private or split-horizon zone, enter its name server under Advanced › Name server "
    "(--nameserver on the command line)"
)
# Each record's line when the domain as a whole could not be checked: the why is said once.
NOT_CHECKED = "Not checked: see the message about the domain above."


def _where(server: tuple[str, int] | None) -> str:
    if server is None:
        return "the name server given"
    return f"the name server {server[0]} port {server[1]}"


def _sentence_start(text: str) -> str:
    return text[:1].upper() + text[1:]


def explain(
    verdict: Verdict,
    domain: str,
    *,
    servers: Sequence[str] = (),
    override: tuple[str, int] | None = None,
) -> str:
    """The one sentence shown at the top of a report for ``verdict``."""
    if verdict == "not_in_dns":
        return (
            f"{domain} does not exist in public DNS, so none of its records could be checked; "
            "check the spelling, and that the domain is registered and has name servers at "
            f"its registrar, or {PRIVATE_ZONE_HINT}."
        )
    if verdict == "unreachable":
        return (
            f"No name server could be reached from this workstation, so {domain} could not be "
            "checked; check this computer's network connection and DNS settings and verify "
            f"again, or {PRIVATE_ZONE_HINT}."
        )
    if verdict == "servers_silent":
        named = f" ({', '.join(servers)})" if servers else ""
        return (
            f"The name servers of {domain}{named} did not answer, so its records could not be "
            "checked; verify again later, and if it persists ask the domain's DNS provider to "
            f"fix its name servers, or {PRIVATE_ZONE_HINT}."
        )
    if verdict == "override_silent":
        return (
            f"{_sentence_start(_where(override))} did not answer, so {domain} could not be "
            "checked; check its address and port under Advanced › Name server (--nameserver on the "
            "command line), or leave it empty to ask the domain's own name servers."
        )
    return (
        f"{_sentence_start(_where(override))} answered, but not for {domain}, so nothing could be "
        "checked; under Advanced › Name server (--nameserver on the command line) give the "
        "server that holds the domain's zone, or leave it empty to ask the domain's own name "
        "servers."
    )
