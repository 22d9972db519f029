"""Application set-up and the ``run()`` entry point.

The window appears before anything heavy is imported: the project (and with
it torch, scikit-learn and the engine) is opened on a worker thread while the
window already shows, and UMAP's numba compilation is warmed up in the
background only when a map is about to be wanted.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

__all__ = ["make_app", "run"]


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication, created once: Fusion style (which follows the system's
    light or dark scheme), high-DPI pass-through scaling, pyqtgraph options."""
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setApplicationName("Pretext")
    app.setOrganizationName("Pretext")
    app.setApplicationDisplayName("Pretext")
    app.setStyle("Fusion")
    apply_colour_scheme(app)
    hints = app.styleHints()
    if hasattr(hints, "colorSchemeChanged") and not getattr(app, "_pretext_scheme_hooked", False):
        hints.colorSchemeChanged.connect(lambda *_: apply_colour_scheme(app))
        app._pretext_scheme_hooked = True
    import pyqtgraph as pg
    pg.setConfigOptions(antialias=True, useNumba=False)
    return app


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 48), QColor(223, 225, 229)
    disabled = QColor(128, 130, 135)
    for role, colour in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
                         (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
                         (QPalette.ColorRole.ToolTipBase, window), (QPalette.ColorRole.ToolTipText, text),
                         (QPalette.ColorRole.PlaceholderText, disabled), (QPalette.ColorRole.Text, text),
                         (QPalette.ColorRole.Button, window), (QPalette.ColorRole.ButtonText, text),
                         (QPalette.ColorRole.BrightText, QColor(255, 120, 120)),
                         (QPalette.ColorRole.Link, QColor(110, 170, 255)),
                         (QPalette.ColorRole.Highlight, QColor(53, 116, 240)),
                         (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
                         (QPalette.ColorRole.Light, QColor(70, 72, 76)), (QPalette.ColorRole.Mid, QColor(55, 57, 60)),
                         (QPalette.ColorRole.Dark, QColor(20, 20, 22)), (QPalette.ColorRole.Shadow, QColor(0, 0, 0))):
        p.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def apply_colour_scheme(app: QApplication) -> None:
    """Follow the system's light/dark scheme (``PRETEXT_THEME=dark|light`` overrides it).

    Fusion takes the scheme's palette where the platform provides one; where the
    platform reports "dark" but hands over a light palette (plain X11), or when dark
    is forced, we set a dark Fusion palette ourselves.
    """
    theme = os.environ.get("PRETEXT_THEME", "").lower()
    hints = app.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    want_dark = theme == "dark" or (theme != "light" and scheme == Qt.ColorScheme.Dark)
    palette_dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    if want_dark and not palette_dark:
        app.setPalette(_dark_palette())
    elif not want_dark and palette_dark:
        app.setPalette(app.style().standardPalette())


def _screenshot_hook(window, app) -> None:
    """``PRETEXT_SCREENSHOT=out.png``: after the project opened, show the view named by
    ``PRETEXT_SCREENSHOT_VIEW`` (project, train, map), wait ``PRETEXT_SCREENSHOT_DELAY``
    seconds (default 6), save ``window.grab()`` and quit. Used by docs/make_screenshots.py."""
    out = os.environ.get("PRETEXT_SCREENSHOT")
    if not out:
        return
    view = os.environ.get("PRETEXT_SCREENSHOT_VIEW", "")
    delay = float(os.environ.get("PRETEXT_SCREENSHOT_DELAY", "6"))

    def grab():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(out)
        print(f"screenshot saved to {out}", flush=True)
        app.quit()

    def opened(_project):
        if view:
            window.show_view(view)
            if view == "map" and window.map_view.run_combo.count():
                window.map_view.show_run(window.map_view.run_combo.itemData(0))
        QTimer.singleShot(int(delay * 1000), grab)

    window.project_opened.connect(opened)


def run(project_path: str | Path | None = None) -> int:
    """Open the window on ``project_path`` (default: the demo project) and run the event loop."""
    app = make_app()
    from .main_window import MainWindow

    from .workers import stop_all

    app.aboutToQuit.connect(stop_all)   # never leave a training thread running at exit
    window = MainWindow()
    window.warm_up_maps = True
    _screenshot_hook(window, app)
    screen = app.primaryScreen()
    if screen is not None:   # fit small screens (1366×768 laptops) with room for the panel
        avail = screen.availableGeometry()
        window.resize(min(1320, int(avail.width() * 0.96)), min(820, int(avail.height() * 0.92)))
    # Start opening before the window first paints: its first frame already names the file
    # being opened, with the actions that need it disabled.
    if project_path is None:
        window.open_project_async(None, demo=True)
    else:
        path = Path(project_path).expanduser()
        window.open_project_async(path, create=not path.exists())
    window.show()
    return app.exec()
