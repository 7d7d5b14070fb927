"""SecretStore and the vault against a real Secret Service (gnome-keyring).

Each daemon runs on a private D-Bus session bus with HOME in a temporary folder, so the
developer's own keyring is never touched. The code under test runs in a subprocess with
keyring forced to the Secret Service backend: the in-memory keyring the other tests install
stays out of the way, and every step crosses a real process and D-Bus boundary.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import peer_missing
from tests.keyring_env import REPO_ROOT, isolated_env

pytestmark = pytest.mark.keyring_real

SECRETS_BUS_NAME = "org.freedesktop.secrets"
STARTUP_TIMEOUT = 15.0  # seconds; the daemons are normally up in well under one
KEYRING_PASSWORD = b"postroom-test-login-password"
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"

# A bus that offers nothing for activation: no stray daemon (a second gnome-keyring, a
# prompter) can be started behind our back, and the socket stays in our folder.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Runs in the child: one step per call so a failure names the step. Prints one JSON object.
HELPER = r"""
import json
import sys

from app.models.database import Database
from app.services.errors import PostroomError
from app.services.keyring_store import SecretStore, keyring_status
from app.services.vault import open_vault, reset_vault, vault_key_id

mode, url, secret = sys.argv[1:4]
out = {}
status = keyring_status()
out["status"] = [status.usable, status.backend, status.reason]
store = SecretStore()
try:
    if mode == "write":
        store.set("probe", secret)
        out["probe"] = store.get("probe")
        store.delete("probe")
        out["probe_after_delete"] = store.get("probe")
        store.delete("probe")  # already gone: must not raise
        store.set("kept", secret)
        db = Database(url)
        with db.transaction() as session:
            vault = open_vault(session)
            out["token"] = vault.encrypt(secret)
            out["key_id"] = vault_key_id(session)
        out["vault_key"] = vault.key
        db.dispose()
    elif mode == "read":
        out["kept"] = store.get("kept")
        db = Database(url)
        with db.transaction() as session:
            vault = open_vault(session, create=False)
            out["decrypted"] = vault.decrypt(sys.argv[4])
        out["vault_key"] = vault.key
        db.dispose()
    elif mode == "reset":
        db = Database(url)
        with db.transaction() as session:
            result = reset_vault(session)
        with db.transaction() as session:
            vault = open_vault(session, create=False)
            out["token"] = vault.encrypt(secret)
        out["key_source"] = result.key_source
        out["vault_key"] = vault.key
        db.dispose()
    elif mode == "get":
        out["value"] = store.get("anything")
except PostroomError as error:
    out["error"] = [type(error).__name__, error.message]
print(json.dumps(out))
"""


@dataclass
class SecretService:
    root: Path
    env: dict[str, str]
    daemon_log: Path


def _read_bus_address(bus: subprocess.Popen[str], deadline: float) -> str:
    assert bus.stdout is not None
    ready, _, _ = select.select([bus.stdout], [], [], max(0.0, deadline - time.monotonic()))
    address = bus.stdout.readline().strip() if ready else ""
    if not address:
        pytest.fail(f"dbus-daemon printed no address (exit code {bus.poll()})")
    return address


def _wait_for_secret_service(address: str, keyring_daemon: subprocess.Popen[bytes]) -> None:
    """Block until gnome-keyring owns org.freedesktop.secrets, reacting to the bus signal."""
    from jeepney import DBusAddress, MatchRule, new_method_call
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    rule = MatchRule(
        type="signal",
        sender=message_bus.bus_name,
        interface=message_bus.interface,
        member="NameOwnerChanged",
        path=message_bus.object_path,
    )
    rule.add_arg_condition(0, SECRETS_BUS_NAME)
    with open_dbus_connection(bus=address) as connection:
        connection.send_and_get_reply(message_bus.AddMatch(rule))
        with connection.filter(rule) as queue:
            # Subscribed first, then asked: a name taken in between is still seen.
            reply = connection.send_and_get_reply(message_bus.NameHasOwner(SECRETS_BUS_NAME))
            if not reply.body[0]:
                try:
                    connection.recv_until_filtered(queue, timeout=STARTUP_TIMEOUT)
                except TimeoutError:
                    pytest.fail(
                        f"gnome-keyring did not claim {SECRETS_BUS_NAME} within "
                        f"{STARTUP_TIMEOUT:.0f}s (exit code {keyring_daemon.poll()})"
                    )
        service = DBusAddress(
            "/org/freedesktop/secrets",
            bus_name=SECRETS_BUS_NAME,
            interface="org.freedesktop.Secret.Service",
        )
        alias = connection.send_and_get_reply(
            new_method_call(service, "ReadAlias", "s", ("default",))
        ).body[0]
        # keyring writes to the default collection; --unlock must have created "login".
        assert alias != "/", "gnome-keyring started without a default collection"


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_secret_service(root: Path) -> Iterator[SecretService]:
    dbus_daemon = shutil.which("dbus-daemon")
    keyring_daemon = shutil.which("gnome-keyring-daemon")
    if dbus_daemon is None or keyring_daemon is None:
        missing = "dbus-daemon" if dbus_daemon is None else "gnome-keyring-daemon"
        peer_missing(f"{missing} is not installed (Debian: dbus, gnome-keyring)")
        return
    root.mkdir(exist_ok=True)
    env = isolated_env(root)
    config = root / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket_dir=root), encoding="utf-8")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with (root / "dbus.log").open("wb") as bus_log:
        bus = subprocess.Popen(
            [dbus_daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=bus_log,
            env=env,
            text=True,
        )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        env["DBUS_SESSION_BUS_ADDRESS"] = _read_bus_address(bus, deadline)
        daemon_log = root / "gnome-keyring.log"
        with daemon_log.open("wb") as log:
            # --unlock reads the login password from stdin and creates the "login"
            # collection (the default alias) on first start, with no prompt.
            daemon = subprocess.Popen(
                [keyring_daemon, "--unlock", "--components=secrets", "--foreground"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert daemon.stdin is not None
        daemon.stdin.write(KEYRING_PASSWORD)
        daemon.stdin.close()
        _wait_for_secret_service(env["DBUS_SESSION_BUS_ADDRESS"], daemon)
        yield SecretService(root=root, env=env, daemon_log=daemon_log)
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(bus)
        if bus.stdout is not None:
            bus.stdout.close()


@pytest.fixture(scope="module")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretService]:
    with running_secret_service(tmp_path_factory.mktemp("secret-service")) as service:
        yield service


def run_helper(env: dict[str, str], *args: str, force_backend: bool = True) -> dict[str, Any]:
    child_env = dict(env)
    if force_backend:
        child_env["PYTHON_KEYRING_BACKEND"] = SECRET_SERVICE_BACKEND
    result = subprocess.run(
        [sys.executable, "-c", HELPER, *args],
        env=child_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return output


def test_secrets_and_vault_key_live_in_gnome_keyring(
    secret_service: SecretService, tmp_path: Path
) -> None:
    secret = "real-keyring-secret-7c1f9a"
    url = f"sqlite:///{secret_service.root / 'home' / 'postroom.sqlite3'}"

    written = run_helper(secret_service.env, "write", url, secret)
    assert "error" not in written, written
    assert written["status"] == [True, "Secret Service", None]
    assert written["probe"] == secret
    assert written["probe_after_delete"] is None
    vault_key = written["vault_key"]

    # A second process finds the same key and the kept secret: they were persisted.
    read = run_helper(secret_service.env, "read", url, secret, written["token"])
    assert "error" not in read, read
    assert read["kept"] == secret
    assert read["vault_key"] == vault_key
    assert read["decrypted"] == secret

    # Cross-check with libsecret's own client that the key sits in the Secret Service.
    secret_tool = shutil.which("secret-tool")
    if secret_tool is not None:
        looked_up = subprocess.run(
            [secret_tool, "lookup", "service", "postroom", "username", written["key_id"]],
            env=secret_service.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert looked_up.stdout.strip() == vault_key

    # Nothing readable on disk: the keyring file exists but holds neither value in clear.
    keyring_files = list((secret_service.root / "home").rglob("*.keyring"))
    assert keyring_files, "gnome-keyring wrote no keyring file"
    for path in secret_service.root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert secret.encode() not in content, path
            assert vault_key.encode() not in content, path


def test_locked_keyring_is_secrets_unavailable(tmp_path: Path) -> None:
    """A locked collection needs a prompt; with none available we get one clear sentence."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    with running_secret_service(tmp_path / "locked") as service:
        service_address = DBusAddress(
            "/org/freedesktop/secrets",
            bus_name=SECRETS_BUS_NAME,
            interface="org.freedesktop.Secret.Service",
        )
        with open_dbus_connection(bus=service.env["DBUS_SESSION_BUS_ADDRESS"]) as connection:
            locked = connection.send_and_get_reply(
                new_method_call(
                    service_address, "Lock", "ao", (["/org/freedesktop/secrets/aliases/default"],)
                )
            ).body[0]
        assert locked, "the default collection could not be locked"
        result = run_helper(service.env, "get", "sqlite://", "unused")
    name, message = result["error"]
    assert name == "SecretsUnavailable"
    assert "\n" not in message
    assert "unlock the keyring" in message


def test_secret_service_not_running_is_secrets_unavailable(tmp_path: Path) -> None:
    """Forced to the Secret Service with no bus behind it: refused, not crashed."""
    root = tmp_path / "no-bus"
    root.mkdir()
    env = isolated_env(root)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={root / 'no-such-bus'}"
    result = run_helper(env, "get", "sqlite://", "unused")
    usable, backend, reason = result["status"]
    assert not usable
    assert backend == "Secret Service"
    assert reason
    name, message = result["error"]
    assert name == "SecretsUnavailable"
    assert "\n" not in message
    assert "POSTROOM_VAULT_KEY" in message


def test_vault_reset_saves_the_new_key_in_gnome_keyring(secret_service: SecretService) -> None:
    secret = "reset-secret-5d2e"
    url = f"sqlite:///{secret_service.root / 'home' / 'reset.sqlite3'}"
    written = run_helper(secret_service.env, "write", url, secret)
    assert "error" not in written, written

    reset = run_helper(secret_service.env, "reset", url, secret)
    assert "error" not in reset, reset
    assert reset["key_source"] == "keyring"
    assert reset["vault_key"] != written["vault_key"]

    # Another process finds the new key in the Secret Service, and only the new key works.
    read = run_helper(secret_service.env, "read", url, secret, reset["token"])
    assert "error" not in read, read
    assert read["vault_key"] == reset["vault_key"]
    assert read["decrypted"] == secret
