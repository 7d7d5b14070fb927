"""The Linux installers: scripts/package-linux builds a .deb and an .rpm of the frozen app,
the frozen app runs every command and the console, and the .deb installs, runs and leaves
nothing but user data behind when removed.

The build (a PyInstaller run, a few minutes) happens once for this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import click
import pytest
from cryptography.fernet import Fernet

import app
from app.cli import main
from tests.conftest import peer_missing
from tests.keyring_env import isolated_env
from tests.packaging.frozen import FROZEN_APP, REPO, build_linux_packages, run_console
from tests.services.test_keyring_real import running_secret_service

pytestmark = pytest.mark.frozen_build

# A guard against the bundle growing by accident, raised on purpose only: 90 MiB until the
# Send Engines page's charts (pyqtgraph, numpy with its OpenBLAS, Qt's OpenGL modules) and
# ssh:// Docker engines (paramiko, PyNaCl, bcrypt) came in December 2026 (90.3 MiB then).
DEB_LIMIT = 96 * 1024 * 1024
APP_ID = "org.postroom.Postroom"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# What the package installs outside its own folder (/opt/postroom), and the frozen app
# itself; these must be there after installing and gone after removing.
INSTALLED_PATHS = (
    "/opt/postroom/postroom",
    "/usr/bin/postroom",
    f"/usr/share/applications/{APP_ID}.desktop",
    f"/usr/share/metainfo/{APP_ID}.metainfo.xml",
    f"/usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg",
    *(f"/usr/share/icons/hicolor/{n}x{n}/apps/{APP_ID}.png" for n in ICON_SIZES),
)


@dataclass(frozen=True)
class Packages:
    deb: Path
    rpm: Path
    bundle: Path
    build_seconds: float


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    if shutil.which("rpm") is None:
        peer_missing("rpm is not installed (Debian: rpm), needed to inspect the .rpm")
    out = tmp_path_factory.mktemp("packages")
    seconds = build_linux_packages(out)
    (deb,) = out.glob("postroom_*_amd64.deb")
    (rpm,) = out.glob("postroom-*.x86_64.rpm")
    print(f"scripts/package-linux took {seconds:.0f}s")
    return Packages(deb=deb, rpm=rpm, bundle=FROZEN_APP, build_seconds=seconds)


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(REPO / "app" / "models" / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def user_env(root: Path) -> dict[str, str]:
    """A user with a home of their own, no session bus and no keyring settings."""
    root.mkdir(parents=True, exist_ok=True)
    env = isolated_env(root)
    env.pop("PYTHONPATH")  # the frozen app must need nothing from the checkout
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={root / 'no-such-bus'}"
    return env


def run(command: list[str], env: dict[str, str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


# -- what was built ------------------------------------------------------------------------


def test_the_deb_and_rpm_are_built_and_the_deb_is_small(packages: Packages) -> None:
    assert packages.deb.stat().st_size <= DEB_LIMIT, packages.deb.stat().st_size
    assert packages.rpm.stat().st_size > 0
    version = app.__version__
    assert packages.deb.name == f"postroom_{version}-1_amd64.deb"
    assert packages.rpm.name == f"postroom-{version}-1.x86_64.rpm"


def test_the_rpm_holds_the_app_its_entry_and_icons(packages: Packages) -> None:
    listing = subprocess.run(
        ["rpm", "-qlp", str(packages.rpm)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for path in INSTALLED_PATHS:
        assert path in listing, path
    internal = "/opt/postroom/_internal"
    for icon in (REPO / "resources" / "icons").glob("*.svg"):
        assert f"{internal}/app/resources/icons/{icon.name}" in listing, icon.name
    for migration in (REPO / "app" / "models" / "migrations" / "versions").glob("*.py"):
        assert f"{internal}/app/models/migrations/versions/{migration.name}" in listing
    # Only the app's own files: the hicolor folders belong to the icon theme's package.
    assert "/usr/share/icons/hicolor" not in listing
    requires = subprocess.run(
        ["rpm", "-qp", "--requires", str(packages.rpm)], capture_output=True, text=True, check=True
    ).stdout
    assert "xcb-util-cursor" in requires


def test_the_deb_depends_on_what_qt_takes_from_the_system(packages: Packages) -> None:
    depends = subprocess.run(
        ["dpkg-deb", "--field", str(packages.deb), "Depends"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {"libxcb-cursor0", "libegl1", "libgl1", "libfontconfig1", "libxkbcommon-x11-0"}
    names = {part.split()[0] for part in depends.replace("|", ",").split(",") if part.strip()}
    assert wanted <= names, wanted - names


def test_the_desktop_entry_and_metainfo_are_valid(packages: Packages) -> None:
    linux = REPO / "packaging" / "linux"
    for tool in ("desktop-file-validate", "appstreamcli"):
        if shutil.which(tool) is None:
            peer_missing(f"{tool} is not installed (Debian: desktop-file-utils, appstream)")
    desktop = subprocess.run(
        ["desktop-file-validate", str(linux / f"{APP_ID}.desktop")], capture_output=True, text=True
    )
    assert desktop.returncode == 0 and not desktop.stdout.strip(), desktop.stdout
    metainfo = linux / f"{APP_ID}.metainfo.xml"
    appstream = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(metainfo)], capture_output=True, text=True
    )
    assert appstream.returncode == 0, appstream.stdout + appstream.stderr
    # The newest release the metainfo announces is the version being packaged.
    releases = ElementTree.parse(metainfo).getroot().findall("./releases/release")
    assert releases[0].get("version") == app.__version__


def test_the_bundle_leaves_out_qml_translations_and_upx(packages: Packages) -> None:
    internal = packages.bundle / "_internal"
    qt = internal / "PySide6" / "Qt"
    names = {p.relative_to(internal).as_posix() for p in internal.rglob("*")}
    assert not (qt / "translations").exists()
    assert not [n for n in names if "Qt6Qml" in n or "Qt6Quick" in n or "libqgtk3" in n]
    assert (qt / "plugins" / "platforms" / "libqxcb.so").is_file()
    assert (qt / "plugins" / "platforms" / "libqoffscreen.so").is_file()
    assert (qt / "plugins" / "iconengines" / "libqsvgicon.so").is_file()
    assert b"UPX!" not in (packages.bundle / "postroom").read_bytes()


# -- the frozen app --------------------------------------------------------------------------


def test_the_frozen_app_runs_every_command(packages: Packages, tmp_path: Path) -> None:
    env = user_env(tmp_path / "user")
    frozen = str(packages.bundle / "postroom")
    version = run([frozen, "--version"], env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"postroom, version {app.__version__}"

    # Every command is in the frozen app: each top-level command's help runs, and each
    # group's lists all of its subcommands (one process per group, not per command: a
    # frozen start costs a second or more, and CI has a budget).
    leaves = list(leaf_commands(main))
    assert len(leaves) > 20
    top_level = sorted(main.commands)

    def help_of(name: str) -> tuple[str, int, str]:
        done = run([frozen, name, "--help"], env, cwd=tmp_path)
        return name, done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        helps = {name: (code, text) for name, code, text in pool.map(help_of, top_level)}
    for path in leaves:
        code, text = helps[path[0]]
        assert code == 0 and f"Usage: postroom {path[0]}" in text, (path, text)
        if len(path) > 1:
            listed = re.search(rf"^\s+{re.escape(path[1])}(\s|$)", text, re.MULTILINE)
            assert listed, (path, text)

    # And real work, on a new database: migrations, services, YAML, JSON output.
    database = ["--database", f"sqlite:///{tmp_path / 'cli.sqlite3'}"]
    added = run([frozen, *database, "groups", "add", "Newsletters"], env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    reads = (
        ("groups", "list"),
        ("servers", "list"),
        ("users", "list"),
        ("domains", "list"),
        ("templates", "list"),
        ("dns-settings", "show"),
        ("audit",),
        ("profiles", "list"),
    )

    def read(command: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return run([frozen, "--json", *database, *command], env, cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(reads, pool.map(read, reads), strict=True))
    for command, done in results.items():
        assert done.returncode == 0, (command, done.stderr)
    groups = json.loads(results["groups", "list"].stdout)
    assert [g["name"] for g in groups] == ["Newsletters"]
    assert json.loads(results[("audit",)].stdout)[0]["action"] == "create"
    exported = run([frozen, *database, "config", "export"], env, cwd=tmp_path)
    assert exported.returncode == 0 and "Newsletters" in exported.stdout, exported.stderr
    # A user error is still one sentence, not a traceback.
    missing = run([frozen, *database, "groups", "show", "Nobody"], env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr and missing.stderr.startswith("postroom: ")


def test_the_frozen_app_keeps_the_vault_key_in_the_secret_service(
    packages: Packages, tmp_path: Path
) -> None:
    """keyring finds its backends through entry points; frozen, it still must find the
    Secret Service by itself (no PYTHON_KEYRING_BACKEND) and keep the key across runs."""
    frozen = str(packages.bundle / "postroom")
    with running_secret_service(tmp_path / "secret-service") as service:
        env = dict(service.env)
        env.pop("PYTHONPATH")
        database = ["--database", f"sqlite:///{tmp_path / 'vault.sqlite3'}"]
        status = run([frozen, "--json", *database, "vault", "status"], env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        found = json.loads(status.stdout)
        assert (found["keyring_backend"], found["keyring_usable"]) == ("Secret Service", True)
        key = Fernet.generate_key().decode()
        imported = subprocess.run(
            [frozen, *database, "vault", "import-key"],
            input=key + "\n",
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert imported.returncode == 0, imported.stderr
        # A second process reads it back from gnome-keyring: it was really kept there.
        exported = run([frozen, *database, "vault", "export-key", "--yes"], env, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout.strip() == key
        stored = subprocess.run(
            ["secret-tool", "search", "--all", "service", "postroom"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "service = postroom" in stored.stdout + stored.stderr


def test_the_frozen_console_opens_its_window_on_a_new_database(
    packages: Packages, tmp_path: Path
) -> None:
    env = user_env(tmp_path / "user")
    database = tmp_path / "new" / "console.sqlite3"
    database.parent.mkdir()
    head = head_revision()
    console = run_console([str(packages.bundle / "postroom")], database, env, head=head)
    assert console.migrated_to == head, console.stderr[-3000:]
    assert console.returncode == 0, console.stderr[-3000:]
    assert "Traceback" not in console.stderr


# -- the .deb on this machine ----------------------------------------------------------------


def test_the_deb_installs_runs_and_uninstalls(packages: Packages, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (CI runs as root)")
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", "postroom"], capture_output=True, text=True
    )
    if installed.stdout.strip() == "installed":
        pytest.fail("a postroom package is already installed here; remove it first")
    install = subprocess.run(
        ["dpkg", "-i", str(packages.deb)], capture_output=True, text=True, timeout=300
    )
    user_root = tmp_path / "user"
    env = user_env(user_root)
    database = user_root / "home" / "data" / "console.sqlite3"
    try:
        assert install.returncode == 0, install.stdout + install.stderr
        for path in INSTALLED_PATHS:
            assert Path(path).exists(), path
        version = run(["postroom", "--version"], {**env, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"postroom, version {app.__version__}"
        database.parent.mkdir(parents=True)
        head = head_revision()
        console = run_console(["/usr/bin/postroom"], database, env, head=head)
        assert console.migrated_to == head, console.stderr[-3000:]
        assert console.returncode == 0, console.stderr[-3000:]
    finally:
        removed = subprocess.run(
            ["dpkg", "--purge", "postroom"], capture_output=True, text=True, timeout=300
        )
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not Path("/opt/postroom").exists()
    for path in INSTALLED_PATHS:
        assert not os.path.lexists(path), path
    # The user's data stays: removing a program must not remove their databases.
    assert database.is_file()


def test_the_frozen_build_fits_the_ci_budget(packages: Packages) -> None:
    # Reported to whoever reads the log; a build this slow would crowd out the suite.
    assert packages.build_seconds < 15 * 60, f"{packages.build_seconds:.0f}s"
