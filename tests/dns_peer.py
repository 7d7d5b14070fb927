"""A real authoritative DNS server (NSD) on 127.0.0.1, for tests and the benchmark.

The server is started and stopped by ``scripts/dns-test-server``; this module writes the
zone files, picks a free port and turns records into zone-file text. Zones are written
before the server starts, so a test module writes every zone it needs up front.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "dns-test-server"
LOOPBACK = "127.0.0.1"
_TXT_CHUNK = 255  # bytes per TXT character-string (RFC 1035 3.3)
_START_ATTEMPTS = 3


# What a DNS library's exception text looks like: none of it may reach a user.
_LIBRARY_TEXT = re.compile(
    r"SOA RR|should never happen|All nameservers failed|resolution lifetime|"
    r"Traceback|\bdns\.[a-z]+|\b(?:NXDOMAIN|NoRootSOA|NoNameservers|NoAnswer|"
    r"LifetimeTimeout|NoResolverConfiguration|[A-Z][A-Za-z]*(?:Error|Exception))\b"
)


def library_text(text: str) -> list[str]:
    """The fragments of ``text`` that are a library's words rather than ours."""
    return _LIBRARY_TEXT.findall(text)


def missing_reason() -> str | None:
    """Why no server can be started here, or None when NSD is installed."""
    if not (shutil.which("nsd") or Path("/usr/sbin/nsd").exists()):
        return "NSD is not installed (apt-get install -y nsd knot-dnsutils)"
    return None


def free_port() -> int:
    """A port free for both UDP and TCP on the loopback address right now."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for UDP and TCP")


def quote_txt(value: str) -> str:
    """TXT rdata in zone-file form, split into 255-byte strings as DNS requires."""
    data = value.encode("utf-8")
    chunks = [data[i : i + _TXT_CHUNK] for i in range(0, len(data), _TXT_CHUNK)] or [b""]
    parts = []
    for chunk in chunks:
        text = "".join(
            "\\" + chr(byte)
            if chr(byte) in '"\\'
            else chr(byte)
            if 32 <= byte < 127
            else f"\\{byte:03d}"
            for byte in chunk
        )
        parts.append(f'"{text}"')
    return " ".join(parts)


def record_line(host: str, rtype: str, value: str, ttl: int = 300) -> str:
    """One zone-file line with an absolute owner; names in values are made absolute too."""
    owner = host if host.endswith(".") else host + "."
    rtype = rtype.upper()
    if rtype == "TXT":
        rdata = quote_txt(value)
    elif rtype == "CNAME":
        rdata = value if value.endswith(".") else value + "."
    elif rtype == "MX":
        preference, exchange = value.split()
        rdata = f"{preference} {exchange if exchange.endswith('.') else exchange + '.'}"
    else:
        rdata = value
    return f"{owner} {ttl} IN {rtype} {rdata}"


def zone_text(
    origin: str, lines: Iterable[str], nameservers: Mapping[str, str] | None = None
) -> str:
    """A complete zone: SOA, NS records (name -> IPv4 address) and ``lines``."""
    origin = origin.rstrip(".")
    servers = nameservers or {f"ns1.{origin}": LOOPBACK}
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 300",
        f"@ IN SOA {next(iter(servers))}. hostmaster.{origin}. 1 3600 600 86400 300",
    ]
    for name, address in servers.items():
        head.append(f"@ IN NS {name}.")
        head.append(f"{name}. IN A {address}")
    return "\n".join([*head, *lines]) + "\n"


@dataclass
class DnsPeer:
    zone_dir: Path
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.zone_dir)], check=False, timeout=30)


def start_server(zone_dir: Path, zones: Mapping[str, str]) -> DnsPeer:
    """Write ``zones`` (origin -> zone text) into ``zone_dir`` and serve them with NSD."""
    zone_dir.mkdir(parents=True, exist_ok=True)
    for origin, text in zones.items():
        (zone_dir / f"{origin.rstrip('.')}.zone").write_text(text, encoding="utf-8")
    # The script's readiness probe falls back to this interpreter (it has dnspython).
    env = {**os.environ, "PYTHON": sys.executable}
    failure = ""
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        result = subprocess.run(
            [str(SCRIPT), "start", str(zone_dir), str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if result.returncode == 0:
            return DnsPeer(zone_dir, port)
        # Another process may have taken the port between the probe and NSD's bind.
        failure = result.stderr.strip() or result.stdout.strip()
    raise RuntimeError(f"scripts/dns-test-server could not start NSD: {failure}")
