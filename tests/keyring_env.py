"""Environments for child processes that must not see the developer's keyring or config."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def isolated_env(root: Path) -> dict[str, str]:
    """This environment without any Postroom, D-Bus or keyring settings, HOME under ``root``."""
    home = root / "home"
    runtime = root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POSTROOM_", "DBUS_", "PYTHON_KEYRING", "KEYRING_"))
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_RUNTIME_DIR=str(runtime),
        PYTHONPATH=str(REPO_ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def no_keyring_env(root: Path) -> dict[str, str]:
    """A headless machine: no keyring is configured and the session bus leads nowhere, so
    keyring's own detection finds no Secret Service (nor anything else that persists)."""
    env = isolated_env(root)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={root / 'no-such-bus'}"
    return env
