"""The one place a Docker client is made, and the sentence said when no engine answers.

The client follows the Docker CLI's environment: ``DOCKER_HOST`` (``unix://``, ``tcp://``,
``ssh://``), ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``. An ``ssh://`` host goes through
the system's ``ssh`` program, as the Docker CLI does, so ``~/.ssh/config``, agents and known
hosts work as they do there (docker-py still imports paramiko for it, a dependency).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import Any

import docker
from docker.errors import DockerException

from app.services.errors import PostroomError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# A build or an import answers only when it is done; the API's own default (60 s) is for
# quick calls.
SLOW_CALL_TIMEOUT_S = 1800
QUICK_CALL_TIMEOUT_S = 60


class DockerUnreachable(PostroomError):
    """No Docker engine answered where the environment says one is."""


def docker_host() -> str:
    """The engine address the client will use, as the environment says it."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def tls_settings() -> str:
    """The TLS variables in effect, for the unreachable sentence (never a key's content)."""
    verify = os.environ.get("DOCKER_TLS_VERIFY")
    cert_path = os.environ.get("DOCKER_CERT_PATH")
    if not verify and not cert_path:
        return ""
    where = cert_path or os.path.join("~", ".docker")
    return f" with TLS (DOCKER_TLS_VERIFY={verify or 'unset'}, certificates in {where})"


class _EngineApi(docker.APIClient):  # type: ignore[misc]
    """docker-py's API client, keeping the engine's CA from ``DOCKER_CERT_PATH``.

    requests lets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (set on many machines for the
    system's CAs) replace a session's own CA file for every request, so an engine whose
    certificate comes from a private CA then fails verification although ``docker`` itself
    connects (docker-py issue 2433, still open). The engine's CA is the one that counts.
    """

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if verify is None and isinstance(self.verify, str):
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class _EngineClient(docker.DockerClient):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.api = _EngineApi(*args, **kwargs)


def connect(timeout: int = QUICK_CALL_TIMEOUT_S, max_pool_size: int | None = None) -> Any:
    """A ``docker.DockerClient`` that has talked to the engine once (its API version).

    ``max_pool_size``: connections kept for calls made at once from many threads (the
    client's default, 10, is for one call at a time).

    Raises DockerUnreachable with the sentence to show when it could not.
    """
    host = docker_host()
    path = host.removeprefix("unix://")
    if host.startswith("unix://") and not os.path.exists(path):
        # Said before a client is made: docker-py leaves the socket of a failed Unix
        # connect open, which a console that retries every 2 s would pile up.
        missing = FileNotFoundError(errno.ENOENT, "no such socket", path)
        raise DockerUnreachable(unreachable_sentence(missing))
    client = None
    try:
        pool = {"max_pool_size": max_pool_size} if max_pool_size else {}
        client = _EngineClient.from_env(
            timeout=timeout, use_ssh_client=host.startswith("ssh://"), **pool
        )
        client.ping()
    except DockerException as exc:
        if client is not None:
            client.close()
        raise DockerUnreachable(unreachable_sentence(exc)) from None
    return client


def is_local_engine(client: Any) -> bool:
    """Whether the engine reads this machine's disk: a Unix socket or a Windows named pipe.

    Over ``tcp://`` or ``ssh://`` the engine may be on another machine (even an address on
    the loopback may be a tunnel), so nothing on this disk is handed to it by path.
    """
    base = str(getattr(client.api, "base_url", ""))
    return base in ("http+docker://localhost", "http+docker://localnpipe")


def unreachable_sentence(exc: BaseException) -> str:
    """One sentence: which engine was tried, why it failed in a word, and what to do."""
    host = docker_host()
    reason = _reason(exc)
    if reason == "permission denied" and host.startswith("unix://"):
        return (
            f"this user may not use the Docker engine at {host}; run as root, or add the user "
            "to the docker group (sudo usermod -aG docker $USER) and log in again."
        )
    if "DOCKER_HOST" not in os.environ:
        return (
            f"no Docker engine answers at {host} ({reason}); start it (sudo systemctl start "
            "docker, or sudo dockerd & where there is no systemd), or set DOCKER_HOST to an "
            "engine that runs."
        )
    return (
        f"no Docker engine answers at DOCKER_HOST={host}{tls_settings()} ({reason}); check "
        "that the engine runs there and that DOCKER_HOST, DOCKER_TLS_VERIFY and "
        "DOCKER_CERT_PATH are right."
    )


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENOENT: "no such socket",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "timed out",
}


def _reason(exc: BaseException) -> str:
    """A few words for the lowest-level cause in the exception chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    text = ""
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "host name not found"
        if isinstance(current, TimeoutError | socket.timeout):
            return "timed out"
        # Before the errno words: an SSL error's errno is OpenSSL's code (1 is not EPERM).
        if isinstance(current, ssl.SSLCertVerificationError):
            why = getattr(current, "verify_message", None) or "not signed by DOCKER_CERT_PATH's CA"
            return f"TLS: the engine's certificate is not trusted, {why}"
        if isinstance(current, ssl.SSLError):
            detail = getattr(current, "reason", None) or "refused"
            return f"TLS handshake failed, {detail}".replace("_", " ")
        if isinstance(current, OSError) and current.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[current.errno]
        text += " " + str(current).lower()
        pending += [c for c in (current.__cause__, current.__context__) if c is not None]
        pending += [a for a in current.args if isinstance(a, BaseException)]
    # requests and urllib3 often keep the cause only in their message
    for words, reason in (
        (("path to a certificate", "client_cert"), "TLS certificate files not found"),
        (("refused",), "connection refused"),
        (("permission denied",), "permission denied"),
        (("no such file", "filenotfounderror"), "no such socket"),
        (
            ("name or service not known", "nodename nor servname", "failed to resolve"),
            "host name not found",
        ),
        (("timed out", "timeout"), "timed out"),
        (("certificate", "ssl", "tls"), "TLS handshake failed"),
        (("ssh",), "ssh failed"),
    ):
        if any(word in text for word in words):
            return reason
    return "no answer"
