"""Render resources/icons/postroom.svg into the raster icons installers need.

    python packaging/render_icons.py OUT_DIR

Writes OUT_DIR/postroom-SIZE.png for the sizes desktops and macOS ask for, and
OUT_DIR/postroom.ico (256 px) for the Windows executables and installer. Qt draws them
(QtSvg is already a dependency), so no image tool has to be installed on any build host;
macOS' iconutil turns the PNGs into an .icns (packaging/macos/build.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SOURCE = Path(__file__).resolve().parents[1] / "resources" / "icons" / "postroom.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        sys.exit(f"render_icons: {SOURCE} is not an SVG Qt can draw")
    for size in SIZES:
        image = render(renderer, size)
        if not image.save(str(out / f"postroom-{size}.png"), "PNG"):
            sys.exit(f"render_icons: could not write postroom-{size}.png in {out}")
    if not render(renderer, 256).save(str(out / "postroom.ico"), "ICO"):
        sys.exit(f"render_icons: could not write postroom.ico in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    app = QGuiApplication(sys.argv[:1])
    main(Path(sys.argv[1]))
