"""Send engines on a Docker engine reached over TCP (``DOCKER_HOST=tcp://...``), where files
on this machine are not the engine's to mount, and over TLS with client certificates
(``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), as ``dockerd --tlsverify`` asks for them.

The Docker engine is this machine's real dockerd; a small TCP relay in this process passes
the bytes between a loopback TCP port and its Unix socket, so the client cannot tell it from
a remote engine (no second machine can run here). The engines get their database URL and
vault key copied into each container before it starts: no bind mount of a secret file, and
still nothing of either in ``docker inspect``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from app.engine.fleet_samples import fresh_consumers
from app.models.database import Database
from app.services.vault import generate_vault_key
from tests.conftest import PG_ADMIN_URL, _server_database, peer_missing
from tests.docker.conftest import postroom

DOCKER_SOCKET = "/var/run/docker.sock"
HEARTBEAT_WAIT_S = 150


class TcpRelay:
    """127.0.0.1:PORT to the Docker engine's Unix socket, one pair of pump threads a
    connection (a stand-in for the network between a console and a remote engine); with
    ``tls``, the engine's TLS end as ``dockerd --tlsverify`` is: a client certificate of the
    given CA is required."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.clients: list[str] = []  # the subject of each TLS client's certificate
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()
                return
            certificate = client.getpeercert() or {}
            self.clients.append(str(certificate.get("subject")))
        engine = socket.socket(socket.AF_UNIX)
        with client, engine:
            engine.connect(DOCKER_SOCKET)
            back = threading.Thread(target=self._pump, args=(engine, client), daemon=True)
            back.start()
            self._pump(client, engine)
            back.join()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def remote(
    engine_image: dict[str, Any], docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    relay = TcpRelay()
    fleet = f"r{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("remote-home")
    for database_url in _server_database(PG_ADMIN_URL, "postgresql"):
        url = (
            make_url(database_url)
            .set(password=f"pw-{uuid.uuid4().hex}")
            .render_as_string(hide_password=False)
        )
        env = {
            **os.environ,
            "DOCKER_HOST": f"tcp://127.0.0.1:{relay.port}",
            "POSTROOM_DATABASE_URL": url,
            "POSTROOM_VAULT_KEY": generate_vault_key(),
            "POSTROOM_SENDENGINE_FLEET": fleet,
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
        }
        db = Database(url)
        try:
            yield {"env": env, "fleet": fleet, "db": db, "url": url, "relay": relay, "home": home}
        finally:
            for container in docker_client.containers.list(
                all=True, filters={"label": [f"app.postroom.fleet={fleet}"]}
            ):
                container.remove(force=True)
            db.dispose()
            relay.close()


def test_engines_on_a_remote_docker_get_their_secrets_copied_in(
    remote: dict[str, Any], docker_client: Any
) -> None:
    env, db = remote["env"], remote["db"]
    done = postroom("sendengine", "start", "--scale", "1", timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    assert remote["relay"].connections > 0, "the client did not go through the TCP address"
    [container] = docker_client.containers.list(
        all=True, filters={"label": [f"app.postroom.fleet={remote['fleet']}"]}
    )

    # The engine read both secrets: it reached the database (its heartbeat) as itself.
    deadline = time.monotonic() + HEARTBEAT_WAIT_S
    while fresh_consumers(db) < 1:
        assert time.monotonic() < deadline, container.logs(tail=40).decode(errors="replace")
        time.sleep(1)

    # No secret file of this machine is mounted; the copies belong to the engine's user.
    container.reload()
    assert not [m for m in container.attrs["Mounts"] if "secrets" in m["Destination"]]
    code, output = container.exec_run(
        ["stat", "-c", "%u %a", "/run/secrets/postroom_database_url"], user="postroom"
    )
    assert (code, output.decode().split()) == (0, ["10001", "400"])
    inspected = json.dumps(docker_client.api.inspect_container(container.id))
    password = make_url(remote["url"]).password
    assert password and password not in inspected
    assert env["POSTROOM_VAULT_KEY"] not in inspected
    # Nothing was written for a bind mount on this machine either.
    written = list(Path(remote["home"]).rglob("postroom_vault_key"))
    assert written == []


def test_a_sqlite_file_with_a_remote_docker_is_refused_in_one_sentence(
    remote: dict[str, Any], tmp_path: Path, docker_client: Any
) -> None:
    env = {
        **remote["env"],
        "POSTROOM_DATABASE_URL": f"sqlite:///{tmp_path}/here.sqlite3",
        "POSTROOM_SENDENGINE_FLEET": f"{remote['fleet']}s",
    }
    done = postroom("sendengine", "start", "--scale", "1", timeout=120, env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "remote" in done.stderr and "PostgreSQL or MariaDB" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    made = docker_client.containers.list(
        all=True, filters={"label": [f"app.postroom.fleet={remote['fleet']}s"]}
    )
    assert made == []


# ---------------------------------------------------------------------- TLS, as dockerd --tlsverify


def write_pem(path: Path, certificate: Any, key: Any | None = None) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_name(path.name.replace("cert", "key"))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@pytest.fixture(scope="module")
def tls_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TcpRelay, Path, Path]]:
    """A TLS end requiring client certificates, and two DOCKER_CERT_PATH folders: one with
    the client certificate the engine's CA signed, one signed by another CA."""
    from tests.smtp_peers import make_ca, make_leaf

    folder = tmp_path_factory.mktemp("docker-tls")
    ca, ca_key = make_ca("Docker engine CA")
    server, server_key = make_leaf(["localhost"], issuer=(ca, ca_key))
    write_pem(folder / "server-cert.pem", server, server_key)
    write_pem(folder / "engine-ca.pem", ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server-cert.pem", folder / "server-key.pem")
    context.load_verify_locations(folder / "engine-ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    good, stranger = folder / "good", folder / "stranger"
    other, other_key = make_ca("Someone else's CA")
    for where, (issuer, issuer_key) in ((good, (ca, ca_key)), (stranger, (other, other_key))):
        where.mkdir()
        write_pem(where / "ca.pem", ca)
        client, client_key = make_leaf(["console"], issuer=(issuer, issuer_key), client=True)
        write_pem(where / "cert.pem", client, client_key)
    relay = TcpRelay(tls=context)
    try:
        yield relay, good, stranger
    finally:
        relay.close()


def test_a_docker_engine_behind_tls_with_client_certificates_is_used(
    tls_relay: tuple[TcpRelay, Path, Path], tmp_path: Path
) -> None:
    relay, good, stranger = tls_relay
    env = {
        **os.environ,
        "POSTROOM_DATABASE_URL": f"sqlite:///{tmp_path}/console.sqlite3",
        "POSTROOM_SENDENGINE_FLEET": f"tls{uuid.uuid4().hex[:8]}",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DOCKER_HOST": f"tcp://localhost:{relay.port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(good),
    }
    done = postroom("--json", "sendengine", "status", timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"mode": "containers", "engines": []}
    assert any("console" in subject for subject in relay.clients)

    # A certificate the engine's CA did not sign: refused, said in one sentence with the
    # TLS settings tried (never a key's content).
    refused = postroom(
        "sendengine", "status", timeout=120, env={**env, "DOCKER_CERT_PATH": str(stranger)}
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    sentence = refused.stderr.strip()
    assert len(sentence.splitlines()) == 1, sentence
    assert f"DOCKER_HOST=tcp://localhost:{relay.port}" in sentence
    assert f"certificates in {stranger}" in sentence
    assert "(TLS handshake failed, " in sentence  # not an errno's words for OpenSSL's code
    assert "PRIVATE KEY" not in sentence


# ---------------------------------------------------------------------- ssh://, as docker -H ssh://


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A private OpenSSH server on 127.0.0.1 that lets root in with a key made here, and a
    folder with an ``ssh`` that uses that key (what ``~/.ssh/config`` says on an
    administrator's machine; ssh reads the account's own, which a test must not touch)."""
    sshd_binary = Path("/usr/sbin/sshd")
    if not sshd_binary.exists():
        peer_missing("sshd is not installed (Debian package openssh-server; scripts/test)")
    if os.geteuid() != 0:
        peer_missing("the ssh:// test logs in as root over a private sshd, which needs root")
    folder = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation folder
    log = (folder / "sshd.log").open("w")
    server = subprocess.Popen(
        [str(sshd_binary), "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, (folder / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.05)
    bin_folder = folder / "bin"
    bin_folder.mkdir()
    wrapper = bin_folder / "ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec /usr/bin/ssh -F /dev/null -i {folder / 'client_key'} -o BatchMode=yes "
        f'-o StrictHostKeyChecking=no -o UserKnownHostsFile={folder / "known_hosts"} "$@"\n'
    )
    wrapper.chmod(0o755)
    try:
        yield port, folder
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_a_docker_engine_over_ssh_is_used(sshd: tuple[int, Path], tmp_path: Path) -> None:
    """``DOCKER_HOST=ssh://root@127.0.0.1:PORT``: the system's ssh runs ``docker system
    dial-stdio`` on the far side, as the Docker CLI does."""
    port, folder = sshd
    env = {
        **os.environ,
        "PATH": f"{folder / 'bin'}:{os.environ['PATH']}",
        "POSTROOM_DATABASE_URL": f"sqlite:///{tmp_path}/console.sqlite3",
        "POSTROOM_SENDENGINE_FLEET": f"ssh{uuid.uuid4().hex[:8]}",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}",
    }
    done = postroom("--json", "sendengine", "status", timeout=120, env=env)
    assert done.returncode == 0, done.stderr + (folder / "sshd.log").read_text()[-2000:]
    assert json.loads(done.stdout) == {"mode": "containers", "engines": []}
    assert "Accepted publickey for root" in (folder / "sshd.log").read_text()

    # Nobody answering there: ssh says why in its own words (as with the Docker CLI), then
    # one sentence that names the address.
    closed = {**env, "DOCKER_HOST": "ssh://root@127.0.0.1:1"}
    refused = postroom("sendengine", "status", timeout=120, env=closed)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    *said_by_ssh, ours = refused.stderr.strip().splitlines()
    assert ours.startswith(
        "postroom: no Docker engine answers at DOCKER_HOST=ssh://root@127.0.0.1:1"
    )
    assert all(line.startswith("ssh: ") for line in said_by_ssh), refused.stderr
