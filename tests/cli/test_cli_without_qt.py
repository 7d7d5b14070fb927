"""The command line works where Qt is not installed: the send-engine image has no PySide6.

A ``sitecustomize`` on the subprocess's path puts a finder first on ``sys.meta_path`` that
refuses PySide6, shiboken6 and qasync, exactly as an interpreter without them would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCKER = '''
import sys

class NoQt:
    """Acts as if the console's Qt packages were not installed."""

    BLOCKED = ("PySide6", "shiboken6", "qasync")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoQt())
'''

# Runs in the subprocess: every command group's --help, then a report of what was imported.
EVERY_GROUP = """
import json, sys
from app.cli import main
helps = {}
for name in sorted(main.commands):
    try:
        code = main([name, "--help"], prog_name="postroom", standalone_mode=False)
        helps[name] = "ok" if code in (0, None) else f"exit {code}"
    except BaseException as exc:
        helps[name] = repr(exc)
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "qasync"))
print(json.dumps({"helps": helps, "qt": qt}))
"""


@pytest.fixture
def no_qt_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "no-qt"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(REPO)])
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def test_the_blocker_really_hides_qt(no_qt_env: dict[str, str]) -> None:
    probe = run(["-c", "import PySide6"], no_qt_env)
    assert probe.returncode != 0
    assert "No module named 'PySide6'" in probe.stderr


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["sendengine", "--help"], ["sendengine", "build", "--help"]],
    ids=" ".join,
)
def test_the_command_line_runs_without_qt(no_qt_env: dict[str, str], args: list[str]) -> None:
    done = run(["-m", "app", *args], no_qt_env)
    assert done.returncode == 0, done.stderr
    assert "postroom" in done.stdout.lower()


def test_every_command_group_helps_without_importing_qt(no_qt_env: dict[str, str]) -> None:
    import json

    done = run(["-c", EVERY_GROUP], no_qt_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sendengine" in report["helps"]
    assert {name: outcome for name, outcome in report["helps"].items() if outcome != "ok"} == {}
    assert report["qt"] == []


def test_the_engine_commands_run_without_qt(no_qt_env: dict[str, str]) -> None:
    done = run(["-m", "app", "engine", "--help"], no_qt_env)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout
