"""Icons from ``resources/icons`` and the few colours the console picks itself.

The console follows the system palette. Monochrome icons are drawn in the palette's own
text colours (``currentColor`` in the SVG), so they read on a light and a dark palette
alike and turn to the highlighted-text colour when their row is selected; the few status
colours (error, success, warning) have a light-palette and a dark-palette shade.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from app.resource_paths import resources_dir

RESOURCES_DIR = resources_dir()
ICONS_DIR = RESOURCES_DIR / "icons"
# Device pixels: enough steps that 1x, 1.5x, 2x and 3x screens all find a crisp pixmap.
_PIXMAP_SIZES = (16, 20, 24, 32, 40, 48, 64)


def icon_path(name: str) -> Path:
    return ICONS_DIR / f"{name}.svg"


def file_icon(name: str) -> QIcon:
    """A full-colour SVG icon (the app icon, status badges), scaled by Qt's SVG engine."""
    return QIcon(str(icon_path(name)))


@cache
def _svg_text(name: str) -> str:
    # A few hundred bytes from the install directory, read once: not worth the executor.
    return icon_path(name).read_text(encoding="utf-8")


@cache
def _images(name: str, colour: str) -> tuple[QImage, ...]:
    # Cached per colour, so a palette change back and forth costs nothing the second time.
    # QImage rather than QPixmap: it may outlive the QApplication at interpreter exit.
    renderer = QSvgRenderer(QByteArray(_svg_text(name).replace("currentColor", colour).encode()))
    images = []
    for size in _PIXMAP_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        images.append(image)
    return tuple(images)


def tinted_icon(name: str, palette: QPalette | None = None) -> QIcon:
    """A monochrome icon in ``palette``'s text colours (normal, selected, disabled)."""
    palette = palette or QApplication.palette()
    text = palette.color(QPalette.ColorRole.WindowText).name()
    modes = (
        (QIcon.Mode.Normal, text),
        (QIcon.Mode.Active, text),
        (QIcon.Mode.Selected, palette.color(QPalette.ColorRole.HighlightedText).name()),
        (
            QIcon.Mode.Disabled,
            palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText).name(),
        ),
    )
    icon = QIcon()
    for mode, colour in modes:
        for image in _images(name, colour):
            icon.addPixmap(QPixmap.fromImage(image), mode)
    return icon


# ---------------------------------------------------------------- colours


def is_dark(palette: QPalette | None = None) -> bool:
    palette = palette or QApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def error_colour(palette: QPalette | None = None) -> str:
    return "#ef9a9a" if is_dark(palette) else "#c62828"


def success_colour(palette: QPalette | None = None) -> str:
    return "#81c784" if is_dark(palette) else "#2e7d32"


def warning_colour(palette: QPalette | None = None) -> str:
    return "#ffcc80" if is_dark(palette) else "#8a5300"


def banner_style(kind: str, palette: QPalette | None = None) -> str:
    """A framed, tinted note (``warning`` or ``error``) whose text stays readable."""
    colour = QColor(warning_colour(palette) if kind == "warning" else error_colour(palette))
    fill = QColor(colour)
    fill.setAlpha(40)  # a wash of the colour over whatever the window background is
    return (
        f"background-color: rgba({fill.red()}, {fill.green()}, {fill.blue()}, {fill.alpha()});"
        f"border: 1px solid {colour.name()}; border-radius: 4px; padding: 8px;"
    )


def dark_palette() -> QPalette:
    """A dark palette like the desktops' dark themes: for tests and screenshots."""
    palette = QPalette()
    role = QPalette.ColorRole
    colours = {
        role.Window: "#2b2b2e",
        role.WindowText: "#e6e6e6",
        role.Base: "#1e1e20",
        role.AlternateBase: "#27272a",
        role.ToolTipBase: "#3a3a3d",
        role.ToolTipText: "#e6e6e6",
        role.PlaceholderText: "#9a9aa0",
        role.Text: "#e6e6e6",
        role.Button: "#38383b",
        role.ButtonText: "#e6e6e6",
        role.BrightText: "#ff6b6b",
        role.Light: "#4a4a4e",
        role.Midlight: "#3e3e42",
        role.Mid: "#303033",
        role.Dark: "#1a1a1c",
        role.Shadow: "#000000",
        role.Highlight: "#3d7be0",
        role.HighlightedText: "#ffffff",
        role.Link: "#8ab4f8",
        role.LinkVisited: "#c58af9",
    }
    for colour_role, name in colours.items():
        palette.setColor(colour_role, QColor(name))
    disabled = QPalette.ColorGroup.Disabled
    for colour_role in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(disabled, colour_role, QColor("#7a7a80"))
    return palette


def use_system_style(app: QApplication) -> None:
    """Fusion draws the platform's palette faithfully, light or dark, on every OS.

    A style the user chose (``QT_STYLE_OVERRIDE``) is left alone.
    """
    if not os.environ.get("QT_STYLE_OVERRIDE"):
        app.setStyle("Fusion")
