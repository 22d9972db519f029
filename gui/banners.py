"""The strips at the top of the main window: the project being opened (which file, a
busy bar, what is happening) and a project opened read-only (which file, why, and that
nothing will be saved)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QStyle, QWidget


class OpeningBanner(QFrame):
    """A strip at the top of the window while a project opens: which file, a busy bar,
    and what is happening now ("checking the file…", "loading torch…")."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("openingBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setFixedWidth(120)
        self.busy.setTextVisible(False)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.step = QLabel()
        lay.addWidget(self.busy)
        lay.addWidget(self.title, 1)
        lay.addWidget(self.step)
        self.setVisible(False)

    def show_opening(self, path: Path, what: str = "Opening") -> None:
        self.title.setText(f"<b>{what} {path.name}</b> &nbsp; <span style='color:gray'>{path}</span>")
        self.step.setText("")
        self.setVisible(True)

    def set_step(self, text: str) -> None:
        self.step.setText(text)


class ReadOnlyBanner(QFrame):
    """A strip at the top of the window while the open project is read-only: which file,
    why it cannot be written, and that nothing will be saved."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("readOnlyBanner")
        # A warning strip that reads the same in light and dark themes.
        self.setStyleSheet("#readOnlyBanner { background: #fff3c4; border-bottom: 1px solid #d8b74a; }"
                           "#readOnlyBanner QLabel { color: #3d3100; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 5, 10, 5)
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(18, 18))
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.text, 1)
        self.setVisible(False)

    def show_project(self, project) -> None:
        """Show the banner for ``project`` when it is read-only; hide it otherwise."""
        if project is None or not project.read_only:
            self.text.clear()
            self.setVisible(False)
            return
        self.text.setText(f"<b>Read-only: {project.path.name}</b> — {project.read_only_reason}. "
                          "You can look at everything, but nothing will be saved: training, resuming, "
                          "importing data sets, new UMAP maps and zero-shot results are off. "
                          f"<span style='color:#6b5a1e'>{project.path}</span>")
        self.setVisible(True)


