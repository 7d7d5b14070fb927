"""How long the frozen console takes from launch to its main window, offscreen.

    python bench/bench_frozen_startup.py [--runs N] [--app PATH]

Starts the PyInstaller build (default build/pyinstaller/dist/postroom/postroom, which
scripts/package-linux makes; /usr/bin/postroom once the .deb is installed) N times as
`postroom --database sqlite:///NEW gui` with QT_QPA_PLATFORM=offscreen, each on a new
SQLite database and with a new HOME, and times launch → the main window's native window
turning visible (reported by Qt's qt.widgets.showhide logging, see tests/packaging/frozen.py).
One unmeasured run first warms the page cache, as a second start on a desktop would be.

Prints wall-clock time and the CPU time the app had used by then (all threads): on a
machine busy with other work, the CPU figure is close to what an idle one takes.

Target: median under 2 s on the project's 2-core machine. Figures in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from tests.keyring_env import isolated_env
from tests.packaging.frozen import FROZEN_APP, run_console

TARGET_SECONDS = 2.0


def one_run(app: Path, root: Path) -> tuple[float, float]:
    root.mkdir()
    env = isolated_env(root)
    env.pop("PYTHONPATH")
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={root / 'no-such-bus'}"
    console = run_console([str(app)], root / "new.sqlite3", env)
    if console.returncode != 0:
        sys.exit(f"the console exited with {console.returncode}:\n{console.stderr[-2000:]}")
    return console.seconds_to_window, console.cpu_seconds_to_window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--app", type=Path, default=FROZEN_APP / "postroom")
    args = parser.parse_args()
    if not args.app.is_file():
        sys.exit(f"{args.app} does not exist: build it with scripts/package-linux first")
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args.app, Path(tmp) / "warm-up")
        runs = [one_run(args.app, Path(tmp) / f"run-{n}") for n in range(args.runs)]
    wall = [w for w, _ in runs]
    cpu = [c for _, c in runs]
    load = os.getloadavg()[0]
    print(f"frozen console, launch to main window (offscreen), {args.runs} runs:")
    for name, times in (("wall", wall), ("CPU ", cpu)):
        print(
            f"  {name} median {statistics.median(times):.2f} s   "
            f"min {min(times):.2f} s   max {max(times):.2f} s"
        )
    print(f"  (load average {load:.1f} on {os.cpu_count()} cores while measuring)")
    verdict = "within" if statistics.median(wall) <= TARGET_SECONDS else "OVER"
    print(f"  wall median {verdict} the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
