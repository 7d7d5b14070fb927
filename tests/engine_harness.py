"""Real processes for the engine tests: the recording sink, the CLI, send engines, waiting.

Everything here runs as a child process the way an administrator would run it: the sink is
``tests/mail_sink.py``, set-up goes through ``python -m app`` commands, and each engine is
``python -m app … engine run``, which a test may kill with SIGKILL. The children get an
environment with no keyring and no Postroom settings of the developer's (``isolated_env``)
plus a vault key file of their own.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tests.keyring_env import REPO_ROOT, isolated_env

if TYPE_CHECKING:
    from app.models.database import Database

MAIL_SINK = REPO_ROOT / "tests" / "mail_sink.py"
POSTROOM = (sys.executable, "-m", "app")
CLI_TIMEOUT = 120.0  # a CLI call on a loaded two-core machine; a pass takes a second or two
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
LOG_TAIL = 4000  # characters of a child's log quoted in a failure
T = TypeVar("T")


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return text[-LOG_TAIL:] or "(empty log)"


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> T:
    """``predicate()`` once it is truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------- environment


def child_env(root: Path) -> dict[str, str]:
    """An isolated environment (under ``root``) whose vault key is a 0600 file there."""
    from app.services.vault import generate_vault_key

    root.mkdir(parents=True, exist_ok=True)
    env = isolated_env(root)
    # Compiled modules cached outside the repository: each child then starts in about a
    # second and a half instead of four (the app's imports, compiled every time).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "postroom-test-pycache")
    key_file = root / "vault.key"
    key_file.write_text(generate_vault_key() + "\n")
    key_file.chmod(0o600)
    env["POSTROOM_VAULT_KEY_FILE"] = str(key_file)
    return env


# --------------------------------------------------------------------------- the sink


@dataclass(frozen=True)
class Delivery:
    """One line of the sink's record: a message it accepted."""

    message_id: str
    recipient: str


@dataclass
class SinkProcess:
    """``tests/mail_sink.py`` running as a child process on a free port."""

    process: subprocess.Popen[bytes]
    port: int
    record: Path
    log: Path
    _read_up_to: int = 0
    _lines: int = 0

    @classmethod
    def start(cls, directory: Path, *options: str) -> SinkProcess:
        """Start a sink recording into ``directory``; ``options`` as on its command line."""
        directory.mkdir(parents=True, exist_ok=True)
        record, ready, log = (directory / n for n in ("record.tsv", "ready", "sink.log"))
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(MAIL_SINK),
                    "--port",
                    "0",
                    "--record",
                    str(record),
                    "--ready-file",
                    str(ready),
                    *options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=REPO_ROOT,
            )

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the mail sink exited early:\n{_tail(log)}")
            return ready.exists()

        try:
            wait_until(listening, START_TIMEOUT, "the mail sink to listen")
        except BaseException:
            process.kill()
            process.wait()
            raise
        return cls(process, int(ready.read_text()), record, log)

    def count(self) -> int:
        """How many messages it has accepted so far (reads only what is new: tests poll it)."""
        try:
            with self.record.open("rb") as f:
                f.seek(self._read_up_to)
                fresh = f.read()
        except FileNotFoundError:
            return 0
        self._read_up_to += len(fresh)
        self._lines += fresh.count(b"\n")
        return self._lines

    def deliveries(self) -> list[Delivery]:
        try:
            lines = self.record.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [Delivery(*line.split("\t", 1)) for line in lines]

    def stop(self) -> str:
        """Stop it (SIGTERM) and return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return _tail(self.log)


@dataclass(frozen=True)
class SinkReport:
    """What a sink's record says about a set of recipients."""

    per_recipient: dict[str, Counter[str]]  # recipient -> Message-ID -> times accepted
    per_message_id: Counter[str]

    @classmethod
    def of(cls, deliveries: Iterable[Delivery]) -> SinkReport:
        per_recipient: dict[str, Counter[str]] = {}
        per_message_id: Counter[str] = Counter()
        for d in deliveries:
            per_recipient.setdefault(d.recipient.lower(), Counter())[d.message_id] += 1
            per_message_id[d.message_id] += 1
        return cls(per_recipient, per_message_id)

    def missing(self, recipients: Iterable[str]) -> list[str]:
        return [r for r in recipients if r.lower() not in self.per_recipient]

    @property
    def duplicates(self) -> int:
        """Messages accepted more than once (each extra acceptance counts one)."""
        return sum(n - 1 for n in self.per_message_id.values() if n > 1)

    def recipients_with_several_ids(self) -> list[str]:
        """Recipients who got different Message-IDs: a retry that did not repeat its id."""
        return [r for r, ids in self.per_recipient.items() if len(ids) > 1]


def duplicates_per_kill(
    deliveries: Sequence[Delivery], counts_at_kills: Sequence[int]
) -> list[int]:
    """Repeated deliveries, by the kill that caused them; one more entry for those after the
    last kill (a run that was not killed should add none).

    ``counts_at_kills`` are the record's lengths right after each SIGKILL. A message whose
    first delivery is line ``n`` was delivered by the run that the first kill with a count
    above ``n`` ended: that kill lost its outcome, so the restart sent it again.
    """
    first_line: dict[str, int] = {}
    buckets = [0] * (len(counts_at_kills) + 1)
    for line, delivery in enumerate(deliveries):
        if delivery.message_id in first_line:
            buckets[bisect.bisect_right(counts_at_kills, first_line[delivery.message_id])] += 1
        else:
            first_line[delivery.message_id] = line
    return buckets


# --------------------------------------------------------------------------- the CLI


@dataclass
class Postroom:
    """``python -m app --database URL …`` with the test's environment."""

    url: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*POSTROOM, "--database", self.url, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=REPO_ROOT,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"postroom {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def status(self, campaign: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("campaigns", "status", campaign)
        return result

    def results(self, campaign: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.json("campaigns", "results", campaign)
        return result


def recipient_list(count: int, domain: str = "example.com") -> list[str]:
    return [f"r{i:06d}@{domain}" for i in range(count)]


@contextmanager
def open_database(url: str, *, migrate: bool = False) -> Iterator[Database]:
    """A short-lived connection of the test's own (a restarted server breaks a pooled one)."""
    from app.models.database import Database

    db = Database(url, migrate=migrate)
    try:
        yield db
    finally:
        db.dispose()


def prepare_campaign(
    url: str,
    *,
    sink_port: int,
    recipients: Sequence[str],
    max_connections: int,
    name: str = "Reliability",
    body: str = "Hello from the reliability tests.\n",
    start: bool = True,
) -> str:
    """A delivery server pointing at the sink, a group and user using it, and a marketing
    campaign to ``recipients``, started unless ``start`` is false; returns its name.

    Set up in this process through the services the CLI calls (five CLI processes would
    cost several seconds a test); the engines under test are the real processes.
    """
    from app.services.campaigns import change_status, create_campaign
    from app.services.groups import create_group
    from app.services.servers import create_server
    from app.services.users import create_user

    with open_database(url, migrate=True) as db, db.transaction() as session:
        create_server(
            session,
            {
                "name": "Sink",
                "host": "127.0.0.1",
                "port": sink_port,
                "encryption": "none",
                "mail_from_domain": "bounces.example.com",
                "max_connections": max_connections,
            },
        )
        create_group(session, {"name": "Senders", "marketing_server": "Sink"})
        create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
        created = create_campaign(
            session,
            name,
            "alice",
            "marketing",
            "news@example.com",
            None,
            "Reliability",
            body,
            None,
            recipients,
        )
        assert created["recipients"] == len(recipients), created
        if start:
            change_status(session, name, "start")
    return name


def start_campaign(url: str, campaign: str) -> None:
    from app.services.campaigns import change_status

    with open_database(url) as db, db.transaction() as session:
        change_status(session, campaign, "start")


def campaign_status(url: str, campaign: str) -> dict[str, Any]:
    """``campaigns status --json``, read in this process (cheap enough to poll)."""
    from app.services.campaigns import campaign_status as status_of

    with open_database(url) as db, db.transaction() as session:
        return status_of(session, campaign)


# --------------------------------------------------------------------------- engines


@dataclass
class EngineProcess:
    """One ``engine run`` child process. Its log (JSON lines, standard error) and standard
    output (the totals, with ``--json``) are appended to files named after its id, so a
    restarted engine continues the same files; ``offset`` is where this run's log begins.
    """

    process: subprocess.Popen[bytes]
    engine_id: str
    log: Path
    output: Path
    offset: int
    _started: bool = False

    @classmethod
    def start(
        cls, cli: Postroom, engine_id: str, log_dir: Path, *options: str, json: bool = False
    ) -> EngineProcess:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"engine-{engine_id}.log"
        output = log_dir / f"engine-{engine_id}.out"
        argv = [*POSTROOM, "--database", cli.url, "--log-format", "json"]
        argv += ["--json"] if json else []
        argv += ["engine", "run", "--engine-id", engine_id, *options]
        with log.open("ab") as log_file, output.open("ab") as out_file:
            log_file.write(f"--- started: {' '.join(argv[1:])}\n".encode())
            log_file.flush()
            offset = log_file.tell()
            process = subprocess.Popen(
                argv, stdout=out_file, stderr=log_file, env=cli.env, cwd=REPO_ROOT
            )
        return cls(process, engine_id, log, output, offset)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def this_run_log(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def warnings(self) -> list[str]:
        """The messages this run logged at warning level or above."""
        found = []
        for line in self.this_run_log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a traceback or other text: not a log object
            if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
                found.append(str(entry.get("message", "")))
        return found

    def has_started(self) -> bool:
        """Whether this run has logged that it is sending (its set-up is done); an
        AssertionError with its log if it has exited instead."""
        if not self.running:
            raise AssertionError(f"engine {self.engine_id} exited early:\n{self.tail()}")
        if not self._started:
            self._started = "send engine started" in self.this_run_log()
        return self._started

    def totals(self) -> dict[str, Any]:
        """The JSON totals the last run printed (started with ``json=True``)."""
        text = self.output.read_text()
        decoder, documents, at = json.JSONDecoder(), [], 0
        while text[at:].strip():  # one (indented) document per run of this engine id
            at += len(text[at:]) - len(text[at:].lstrip())
            document, at = decoder.raw_decode(text, at)
            documents.append(document)
        assert documents, f"engine {self.engine_id} printed no totals:\n{self.tail()}"
        result: dict[str, Any] = documents[-1]
        return result

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, and the exit status (AssertionError if it does not stop in time)."""
        if self.running:
            self.process.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"engine {self.engine_id} still running after {timeout:.0f} s:\n{self.tail()}"
            ) from None

    def tail(self) -> str:
        return _tail(self.log)

    def ensure_stopped(self) -> None:
        """Teardown: nothing of ours left running, whatever the test did."""
        if self.running:
            self.process.kill()
        self.process.wait()


def terminate_all(engines: Sequence[EngineProcess]) -> list[int]:
    """SIGTERM every engine at once (they finish in parallel), then their exit statuses."""
    for engine in engines:
        if engine.running:
            engine.process.terminate()
    return [engine.wait(STOP_TIMEOUT) for engine in engines]


def describe(url: str, campaign: str, engines: Iterable[EngineProcess]) -> str:
    """Campaign status and the engines' log tails, for a failure message."""
    try:
        status = json.dumps(campaign_status(url, campaign))
    except Exception as error:  # a failure message must not fail itself
        status = f"(status unavailable: {error.__class__.__name__}: {error})"
    logs = "\n".join(f"--- engine {e.engine_id}:\n{e.tail()}" for e in engines)
    return f"campaign status: {status}\n{logs}"


UNFINISHED = ("queued", "in_flight", "deferred")


def finished(status: dict[str, Any]) -> bool:
    """Whether nothing of the campaign is left to send."""
    return all(status[key] == 0 for key in UNFINISHED)


# --------------------------------------------------------------------------- a private PostgreSQL


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian layout), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, on a free port, so that it can be restarted
    without disturbing the shared server on 5432. Trust authentication on 127.0.0.1.

    PostgreSQL refuses to run as root, so under root its files belong to ``postgres`` and
    its tools run through ``runuser``.
    """

    bin_dir: Path
    data: Path
    port: int

    @classmethod
    def create(cls, bin_dir: Path) -> PrivatePostgres:
        import shutil

        # Not under pytest's tmp_path: that is root-only (0700) and postgres must get in.
        home = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        cluster = cls(bin_dir, home / "data", _free_port())
        cluster._tool(
            "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        return cluster

    def _tool(self, name: str, *args: str, timeout: float = 120) -> None:
        argv = [str(self.bin_dir / name), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
        assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            # Durability is not what this cluster is for; a clean stop flushes anyway.
            "-c fsync=off -c full_page_writes=off"
        )
        log = self.data.parent / "postgres.log"
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        import shutil

        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError):  # already down; the files go anyway
                self.stop("immediate")
        shutil.rmtree(self.data.parent, ignore_errors=True)
