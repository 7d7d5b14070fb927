"""PLACEHOLDER until the log viewer's own change is merged (it replaces this file).

The same interface: ``LogViewer(context, open_stream)``, ``set_engines``, ``stop``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.engine.fleet_logs import LogStream
from app.views.context import AppContext


class LogViewer(QWidget):
    def __init__(
        self,
        context: AppContext,
        open_stream: Callable[[int | None, int], LogStream],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.open_stream = open_stream
        self.engines: list[tuple[int, str]] = []
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The log viewer comes with its own change."))

    def set_engines(self, engines: list[tuple[int, str]]) -> None:
        self.engines = list(engines)

    def stop(self) -> None:
        return None
