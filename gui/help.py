"""The Help menu's contents: the versions and device (to paste into a bug report), the
keyboard-shortcut list built from the window's actual actions, and opening the guide."""
from __future__ import annotations

import importlib.metadata
import platform
import sys

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractButton, QApplication, QDialog, QDialogButtonBox, QHeaderView,
                               QPlainTextEdit, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)


def versions_text(device_text: str) -> str:
    """Python, torch, CUDA, PySide6, pyqtgraph, numpy and the device, one per line (to paste
    into a bug report). Reads torch's details only once torch is loaded (never imports it)."""
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    from engine import __version__
    torch = sys.modules.get("torch")
    if torch is None:
        cuda = "not known yet (torch is still loading)"
    elif torch.cuda.is_available():
        cuda = f"{torch.version.cuda} ({torch.cuda.device_count()} GPU: {torch.cuda.get_device_name(0)})"
    else:
        cuda = "none" + (f" (torch built for CUDA {torch.version.cuda}, no GPU visible)" if torch.version.cuda else "")
    import PySide6
    lines = [f"Pretext {__version__}",
             f"Python {platform.python_version()} ({sys.executable})",
             f"torch {version('torch')}",
             f"CUDA {cuda}",
             f"PySide6 {PySide6.__version__} (Qt {PySide6.QtCore.qVersion()})",
             f"pyqtgraph {version('pyqtgraph')}",
             f"numpy {version('numpy')}",
             f"Device in use: {device_text or 'not known yet'}",
             f"System: {platform.platform()}"]
    return "\n".join(lines)


def open_url(url: QUrl) -> bool:
    """Open ``url`` with the desktop's handler (a function, so tests can replace it)."""
    return QDesktopServices.openUrl(url)


def menu_text(text: str) -> str:
    """A menu text without its mnemonic ampersands and trailing dots."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def described_by_a_widget(view: QWidget, keys: str) -> str:
    """What a shortcut without a description does, from the widget whose tooltip or placeholder
    names its keys (a button's text, else the hint's first words)."""
    from PySide6.QtWidgets import QLineEdit
    for w in view.findChildren(QWidget):
        hint = w.toolTip() + " " + (w.placeholderText() if isinstance(w, QLineEdit) else "")
        if keys in hint:
            if isinstance(w, QAbstractButton) and w.text():
                return menu_text(w.text())
            return hint.strip().split(" (")[0].split(" —")[0].split(", e.g.")[0]
    return "a shortcut of this view"


class ShortcutsDialog(QDialog):
    """Every keyboard shortcut of the window, read from its actions, buttons and shortcuts."""

    def __init__(self, rows: list[tuple[str, str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        lay = QVBoxLayout(self)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(("Where", "What", "Keys"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(580, 680)

    def rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.table.item(r, c).text() for c in range(3)) for r in range(self.table.rowCount())]


class VersionsDialog(QDialog):
    """The versions and the device, selectable, with a Copy button."""

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Versions and device")
        lay = QVBoxLayout(self)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        lay.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.text.toPlainText()))
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(620, 300)


