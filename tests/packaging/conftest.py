"""The packaging tests' marker: the frozen build takes minutes, and CI runs it anyway."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "frozen_build: builds the PyInstaller app and the Linux packages once per run "
        "(minutes); scripts/test and CI run it, `-m 'not frozen_build'` leaves it out",
    )
