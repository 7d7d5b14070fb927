"""Where the files in ``resources/`` (icons) are, in a checkout and in an installed copy.

A source checkout (and an editable install) keeps them at the repository root; a wheel, and
so a normal ``pip install``, ships them inside the package as ``app/resources`` (setup.py
maps the folder there), which is also where a frozen build puts them. Qt-free, so the CLI
and the packaging tests can ask too.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """The folder holding ``icons/``: the installed copy when there is one, else the checkout's."""
    installed = _PACKAGE_DIR / "resources"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / "resources"


def icons_dir() -> Path:
    return resources_dir() / "icons"
