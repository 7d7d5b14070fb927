"""Building the frozen app with scripts/package-linux, and timing its console's first window.

Shared by the packaging tests and bench/bench_frozen_startup.py. The window is seen through
Qt's own logging (``qt.widgets.showhide``), so nothing in the shipped app exists for tests:
the line Qt prints when the main window's native window becomes visible is the moment a
user would see it (offscreen, the moment it would be on screen).
"""

from __future__ import annotations

import os
import re
import select
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_LINUX = REPO / "scripts" / "package-linux"
FROZEN_APP = REPO / "build" / "pyinstaller" / "dist" / "postroom"
PACKAGING_VENV = REPO / "build" / "packaging-venv"

WINDOW_SHOWN = re.compile(r'QWidgetWindow\(.*"MainWindowClassWindow"\) to true')
SHOWHIDE_LOGGING = "qt.widgets.showhide.debug=true"


@dataclass(frozen=True)
class ConsoleRun:
    """One start of the console: when its window showed, how it ended, what it printed."""

    seconds_to_window: float
    # CPU time (all threads) the app had used when its window showed: on a busy machine
    # this is what an idle one would take, near enough, since startup is one thread's work.
    cpu_seconds_to_window: float
    returncode: int
    migrated_to: str | None
    stderr: str


def alembic_revision(path: Path) -> str | None:
    if not path.exists():
        return None
    with sqlite3.connect(path) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # not created yet
            return None
    return None if row is None else str(row[0])


def _read_until(stream: int, pattern: re.Pattern[str], deadline: float, seen: list[str]) -> bool:
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(stream, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, rest = buffer.split(b"\n")
        buffer = rest
        for line in lines:
            text = line.decode(errors="replace")
            seen.append(text)
            if pattern.search(text):
                return True
    return False


def run_console(
    command: list[str],
    database: Path,
    env: dict[str, str],
    *,
    timeout: float = 60.0,
    head: str | None = None,
) -> ConsoleRun:
    """Start ``command --database sqlite:///DATABASE gui`` offscreen; once the window is shown
    and the new database is migrated (to ``head`` when given), close it as Ctrl+C would."""
    child_env = {
        **env,
        "QT_QPA_PLATFORM": "offscreen",
        "QT_LOGGING_RULES": SHOWHIDE_LOGGING,
    }
    lines: list[str] = []
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--database", f"sqlite:///{database}", "gui"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env,
    )
    assert process.stderr is not None
    try:
        deadline = started + timeout
        shown = _read_until(process.stderr.fileno(), WINDOW_SHOWN, deadline, lines)
        seconds = time.monotonic() - started
        cpu_seconds = _cpu_seconds(process.pid)
        if not shown:
            raise AssertionError(
                f"the console showed no window within {timeout:.0f}s (exit code "
                f"{process.poll()}):\n" + "\n".join(lines[-30:])
            )
        # The session's Ctrl+C handler is installed once the event loop runs, and a console
        # that is closed while opening its database finishes the migration first; wait
        # for the migration so the run also proves the bundled migrations work.
        revision = alembic_revision(database)
        while (revision is None or (head is not None and revision != head)) and (
            time.monotonic() < deadline
        ):
            _drain(process.stderr.fileno(), lines)
            time.sleep(0.1)
            revision = alembic_revision(database)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        remaining = max(1.0, deadline - time.monotonic())
        while process.poll() is None and time.monotonic() < started + timeout + remaining:
            _drain(process.stderr.fileno(), lines)
            time.sleep(0.05)
        returncode = process.wait(timeout=5)
        _drain(process.stderr.fileno(), lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return ConsoleRun(seconds, cpu_seconds, returncode, revision, "\n".join(lines))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])  # utime, stime: stat fields 14 and 15
    return (user + system) / os.sysconf("SC_CLK_TCK")


def _drain(stream: int, lines: list[str]) -> None:
    while select.select([stream], [], [], 0)[0]:
        chunk = os.read(stream, 65536)
        if not chunk:
            return
        lines.extend(chunk.decode(errors="replace").splitlines())


def build_linux_packages(out: Path, timeout: float = 1800.0) -> float:
    """Run scripts/package-linux into ``out``; the seconds it took.

    POSTROOM_REUSE_FREEZE=1 packages the previous run's frozen app again, for working on
    the packaging tests themselves; CI never sets it.
    """
    reuse = ["--reuse-freeze"] if os.environ.get("POSTROOM_REUSE_FREEZE") == "1" else []
    started = time.monotonic()
    build = subprocess.run(
        [str(PACKAGE_LINUX), "--out", str(out), *reuse],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-8000:]
    return time.monotonic() - started
