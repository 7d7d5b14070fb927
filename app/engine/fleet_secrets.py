"""How engines in containers get the database URL and the vault key, and reach the database.

Loose containers get both as files: written here, in a private folder (0700) on this host,
each file 0400 and owned by the image's user (uid 10001), bind-mounted read-only where the
image looks for them (``/run/secrets/postroom_database_url``, ``.../postroom_vault_key``).
So neither is in the image, the container's environment, its command or its labels, which is
all ``docker inspect`` shows. A remote Docker engine (``DOCKER_HOST`` over tcp or ssh)
would look for such files on its own disk, so there the two files are copied into each
container after it is made and before it starts instead (``secrets_archive``): still not in
the image, the environment or ``docker inspect``, though in the container's own layer, which
``docker export`` of that container would show.

With host networking (Linux) an engine reaches a database on the host's loopback, and a
SQLite file is bind-mounted at the same path. Docker Desktop (macOS, Windows) runs engines
in a virtual machine: its loopback is not the host's and its file sharing does not keep
SQLite's locks, so it gets PostgreSQL or MariaDB by name or not at all.
"""

from __future__ import annotations

import io
import ipaddress
import os
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.engine.fleet import ENGINE_UID, SECRET_MOUNTS, FleetError
from app.models.database import redact_url

SECRETS_FOLDER_MODE = 0o700
SECRET_FILE_MODE = 0o400
DESKTOP_SENTENCE = (
    "Docker Desktop runs send engines in a virtual machine, whose loopback is not this "
    "machine's and whose shared folders do not keep SQLite's file locks; use a PostgreSQL "
    "or MariaDB database the engines reach by a host name (such as host.docker.internal or "
    "the server's name), not {what}."
)


@dataclass(frozen=True)
class EngineSecrets:
    database_url: str
    vault_key: str

    def __repr__(self) -> str:  # never the values, in a traceback or a log
        return f"EngineSecrets(database_url={redact_url(self.database_url)!r}, vault_key=***)"


@dataclass(frozen=True)
class DatabasePlan:
    """The URL as the engines use it and the folders they need mounted for it."""

    url: str
    shown: str  # without the password, for labels and messages
    folders: tuple[str, ...]


def is_docker_desktop(info: dict[str, Any]) -> bool:
    return "Docker Desktop" in str(info.get("OperatingSystem") or "")


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plan_database(url: str, *, desktop: bool, remote: bool = False) -> DatabasePlan:
    """Check that engines in containers can use the database at ``url``; how.

    ``remote``: the Docker engine is reached over the network, so a file here is not theirs.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise FleetError(
            "the database URL is not a URL; give one like postgresql+psycopg://user@host/db."
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise FleetError(
                "an in-memory SQLite database lives inside one process, so send engines in "
                "containers cannot share it; use a SQLite file or PostgreSQL/MariaDB."
            )
        if desktop:
            raise FleetError(DESKTOP_SENTENCE.format(what="a SQLite file"))
        if remote:
            raise FleetError(
                "the Docker engine is remote (DOCKER_HOST over tcp or ssh), so send engines "
                "there cannot open a SQLite file on this machine; use a PostgreSQL or MariaDB "
                "database they reach by address."
            )
        path = Path(database).expanduser().resolve()
        check_writable_by_engine(path.parent, "folder")
        if path.exists():
            check_writable_by_engine(path, "file")
        absolute = parsed.set(database=str(path))
        return DatabasePlan(
            absolute.render_as_string(hide_password=False), str(path), (str(path.parent),)
        )
    host = parsed.host or ""
    if not host:
        raise FleetError(
            f"the database URL {redact_url(url)} names no host (a local socket), which "
            "engines in containers cannot reach; give the server's address, such as 127.0.0.1."
        )
    if desktop and is_loopback(host):
        raise FleetError(DESKTOP_SENTENCE.format(what=f"the loopback address {host}"))
    return DatabasePlan(url, redact_url(url), ())


def check_writable_by_engine(path: Path, what: str) -> None:
    """SQLite writes its file and, beside it, its journal: the engine's user must be able to."""
    try:
        info = path.stat()
    except OSError:
        raise FleetError(f"the SQLite {what} {path} does not exist; create it first.") from None
    if info.st_uid == ENGINE_UID and info.st_mode & stat.S_IWUSR:
        return
    if info.st_mode & stat.S_IWOTH:
        return
    raise FleetError(
        f"the SQLite {what} {path} is not writable by the engines' user (uid {ENGINE_UID}); "
        f"run `chown {ENGINE_UID} {path}`, or use PostgreSQL/MariaDB."
    )


def default_secrets_folder(fleet: str) -> Path:
    return Path(platformdirs.user_data_dir("postroom", appauthor=False)) / "sendengine" / fleet


def secret_file_paths(folder: Path) -> dict[str, Path]:
    return {key: folder / Path(target).name for key, target in SECRET_MOUNTS.items()}


def write_secret_files(folder: Path, secrets: EngineSecrets) -> dict[str, Path]:
    """The two files, written only when their content changed; their paths by mount name."""
    folder.mkdir(parents=True, exist_ok=True, mode=SECRETS_FOLDER_MODE)
    os.chmod(folder, SECRETS_FOLDER_MODE)
    contents = {"database_url": secrets.database_url, "vault_key": secrets.vault_key}
    paths = secret_file_paths(folder)
    for key, content in contents.items():
        path = paths[key]
        data = (content.strip() + "\n").encode()
        try:
            if path.read_bytes() == data and path.stat().st_uid in (ENGINE_UID, os.geteuid()):
                continue
        except OSError:
            pass
        temporary = path.with_name(f".{path.name}.new")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        _hand_to_engine_user(temporary)
        # A running container keeps the file it mounted; the next one made gets this one.
        os.replace(temporary, path)
    return paths


def secrets_archive(secrets: EngineSecrets) -> bytes:
    """A tar of ``secrets/`` with the two files, owned by the engine's user and readable by
    it alone, to unpack into a made (not yet started) container's ``/run``."""
    contents = {"database_url": secrets.database_url, "vault_key": secrets.vault_key}
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("secrets")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o500, now
        folder.uid = folder.gid = ENGINE_UID
        archive.addfile(folder)
        for key, target in SECRET_MOUNTS.items():
            data = (contents[key].strip() + "\n").encode()
            info = tarfile.TarInfo(f"secrets/{Path(target).name}")
            info.size, info.mode, info.mtime = len(data), SECRET_FILE_MODE, now
            info.uid = info.gid = ENGINE_UID
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _hand_to_engine_user(path: Path) -> None:
    try:
        os.chown(path, ENGINE_UID, ENGINE_UID)
        os.chmod(path, SECRET_FILE_MODE)
    except PermissionError:
        # Not root: the file stays ours, readable by all, in a folder only we may enter on
        # this host; inside the container only the engine's user is there to read it.
        os.chmod(path, 0o444)
