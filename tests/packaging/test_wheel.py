"""What a normal (non-editable) install gets: the wheel carries the icons and migrations, the
installed app finds its icons inside itself, and test tools are not runtime dependencies.

The wheel is built here, offline, from this checkout; "installed" means unpacked exactly as
pip lays a wheel out in site-packages, then imported from there in a separate process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build = subprocess.run(
        [*pip_wheel, "-q", "--disable-pip-version-check", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (built,) = out.glob("postroom-*.whl")
    return built


def test_the_wheel_carries_icons_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    icons = sorted(p.name for p in (REPO / "resources" / "icons").glob("*.svg"))
    assert icons, "the checkout has icons to ship"
    for icon in icons:
        assert f"app/resources/icons/{icon}" in names
    migrations = sorted(p.name for p in (REPO / "app/models/migrations/versions").glob("*.py"))
    for migration in migrations:
        assert f"app/models/migrations/versions/{migration}" in names
    assert not any(name.startswith("tests/") for name in names)


def test_test_tools_are_not_runtime_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    requires = metadata.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("PySide6-Essentials") for r in runtime)
    for tool in ("pytest", "pytest-qt", "hypothesis", "aiosmtpd", "mypy", "ruff"):
        assert not any(r.split(";")[0].split(">")[0].strip() == tool for r in runtime), tool


def test_the_installed_console_finds_its_icons(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    probe = """
import json, sys
import app
from PySide6.QtWidgets import QApplication
qapp = QApplication([])
from app.views import theme
from app.views.main_window import MainWindow
window = MainWindow(sys.argv[1])
window.show()
items = [window.navigation.item(row) for row in range(window.navigation.count())]
print(json.dumps({
    "app": app.__file__,
    "icons": str(theme.ICONS_DIR),
    "window_icon": not window.windowIcon().isNull(),
    "untinted": [item.text() for item in items if item.icon().isNull()],
}))
"""
    run = subprocess.run(
        [sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'new.sqlite3'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the checkout, so nothing can fall back to its resources/
        env={**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": "offscreen"},
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["app"]).is_relative_to(site)
    assert Path(found["icons"]) == site / "app" / "resources" / "icons"
    assert found["window_icon"] is True
    assert found["untinted"] == []
