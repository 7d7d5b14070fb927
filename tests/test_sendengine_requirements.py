"""The send-engine image's requirements are the project's, minus the console's Qt.

``sendengine_image/requirements.txt`` is what the image installs before Postroom itself
(with ``--no-deps``). A dependency added to pyproject.toml and forgotten there would be
missing in every engine; one changed in only one place would make the two disagree.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Only the console needs these; the engine must not pull Qt (about 300 MB).
CONSOLE_ONLY = ("PySide6-Essentials", "qasync", "pyqtgraph", "numpy", "paramiko")
# Only the image needs this: its process supervisor.
IMAGE_ONLY = ("supervisor",)


def requirement_name(line: str) -> str:
    for stop in "[<>=!~;":
        line = line.split(stop, 1)[0]
    return line.strip().lower()


def pyproject_dependencies() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def image_requirements() -> list[str]:
    text = (REPO / "sendengine_image" / "requirements.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_the_image_installs_every_runtime_dependency_but_qt() -> None:
    console_only = {name.lower() for name in CONSOLE_ONLY}
    expected = [d for d in pyproject_dependencies() if requirement_name(d) not in console_only]
    installed = [r for r in image_requirements() if requirement_name(r) not in IMAGE_ONLY]
    assert len(expected) == len(pyproject_dependencies()) - len(CONSOLE_ONLY)
    assert installed == expected


def test_the_image_has_its_supervisor_and_no_qt() -> None:
    names = {requirement_name(r) for r in image_requirements()}
    assert set(IMAGE_ONLY) <= names
    assert not names & {n.lower() for n in CONSOLE_ONLY}
    assert not any(name.startswith(("pyside", "shiboken")) for name in names)
