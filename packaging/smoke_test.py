"""Smoke-test a built Postroom on any OS: the release workflow runs it on each artifact.

    python packaging/smoke_test.py CLI_EXECUTABLE [--windowed GUI_EXECUTABLE]

1. ``CLI_EXECUTABLE --version`` prints ``postroom, version X``;
2. ``CLI_EXECUTABLE --database sqlite:///NEW gui`` with QT_QPA_PLATFORM=offscreen shows its
   main window (seen in Qt's own ``qt.widgets.showhide`` log) and migrates the new database;
3. with --windowed, the console-less executable (Windows' postroom-gui.exe, the .app's
   postroom-gui) opens the console on a new database too: it has no stderr to read, so
   the migrated database and a process still running are the evidence.

Only the standard library, and no select() on pipes: it runs on Windows' Python as is.
Exits non-zero with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WINDOW_SHOWN = re.compile(r'QWidgetWindow\(.*"MainWindowClassWindow"\) to true')
TIMEOUT = 90.0


def fail(message: str) -> None:
    sys.exit(f"smoke test: {message}")


def environment(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "USERPROFILE": str(home),
        "APPDATA": str(home / "AppData" / "Roaming"),
        "LOCALAPPDATA": str(home / "AppData" / "Local"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "QT_QPA_PLATFORM": "offscreen",
        "QT_LOGGING_RULES": "qt.widgets.showhide.debug=true",
    }


def migrated(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database) as connection:
            return (
                connection.execute("SELECT version_num FROM alembic_version").fetchone() is not None
            )
    except sqlite3.Error:
        return False


def check_version(cli: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [cli, "--version"], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    if done.returncode != 0 or not done.stdout.startswith("postroom, version "):
        fail(f"`{cli} --version` gave {done.returncode}: {done.stdout}{done.stderr}")
    print(f"ok: {done.stdout.strip()}")


def check_console(cli: str, env: dict[str, str], database: Path) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [cli, "--database", f"sqlite:///{database.as_posix()}", "gui"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        errors="replace",
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    shown_after: float | None = None
    try:
        while time.monotonic() - started < TIMEOUT:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                fail(f"the console exited with {process.wait()}:\n{''.join(seen[-30:])}")
            seen.append(line)
            if shown_after is None and WINDOW_SHOWN.search(line):
                shown_after = time.monotonic() - started
            if shown_after is not None and migrated(database):
                break
        else:
            fail(f"no window and migrated database within {TIMEOUT:.0f}s:\n{''.join(seen[-30:])}")
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(
        f"ok: the console showed its window after {shown_after:.1f}s and migrated {database.name}"
    )


def check_windowed(gui: str, env: dict[str, str], database: Path) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [gui, "--database", f"sqlite:///{database.as_posix()}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while not migrated(database):
            if process.poll() is not None:
                fail(f"{gui} exited with {process.returncode} before opening its database")
            if time.monotonic() - started > TIMEOUT:
                fail(f"{gui} did not open its database within {TIMEOUT:.0f}s")
            time.sleep(0.2)
        time.sleep(1.0)
        if process.poll() is not None:
            fail(f"{gui} exited with {process.returncode} right after opening its database")
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"ok: {Path(gui).name} opened the console on {database.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cli")
    parser.add_argument("--windowed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = environment(root / "home")
        check_version(args.cli, env)
        check_console(args.cli, env, root / "console.sqlite3")
        if args.windowed:
            check_windowed(args.windowed, env, root / "windowed.sqlite3")


if __name__ == "__main__":
    main()
