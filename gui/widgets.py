"""Small widgets shared by the views."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of widening the window.

    The full text is in the tooltip. Status lines (run state, map status, error
    summaries) can be long; a plain QLabel's minimum width is its whole text,
    which would push the window past a 1366-pixel screen.
    """

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming
        super().setText(text)
        self.setToolTip(text if len(text) > 40 else "")
        self.update()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        hint = super().sizeHint()
        return QSize(min(hint.width(), 600), hint.height())

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        metrics = QFontMetrics(self.font())
        rect = self.contentsRect()
        text = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(rect, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), text)


def error_dialog(parent, title: str, message: str, details: str = "", informative: str = ""):
    """A non-blocking error box: the readable message, the traceback under "Show Details…",
    and a "Copy details" button that puts both on the clipboard (for a bug report)."""
    from PySide6.QtWidgets import QApplication, QMessageBox
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    if informative:
        box.setInformativeText(informative)
    if details:
        box.setDetailedText(details)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    copy = box.addButton("Copy details", QMessageBox.ButtonRole.ActionRole)
    copy.clicked.disconnect()     # keep the box open after copying
    copy.clicked.connect(lambda: QApplication.clipboard().setText(f"{title}\n{message}\n\n{details}".strip()))
    box.open()
    return box


def run_title(run, dataset_name: str) -> str:
    """A run's name with its data set, the data set named once: a default name already
    says it ("simclr on digits"); a name the user typed gets it appended ("first on digits")."""
    name = run.name or f"{run.method} on {dataset_name}"
    return name if dataset_name in name else f"{name} on {dataset_name}"


def run_label(run, dataset_name: str) -> str:
    """How a run picker lists a run: "#2 simclr on digits", with its status when it has not
    finished ("#3 first on digits — interrupted")."""
    status = "" if run.status == "finished" else f" — {run.status}"
    return f"#{run.id} {run_title(run, dataset_name)}{status}"


def fill_run_combo(combo, project, runs, with_status: bool = True) -> None:
    """List ``runs`` (RunRecords of ``project``) in ``combo`` as :func:`run_label` says
    ("#id title", "— status" after runs that have not finished unless ``with_status`` is
    False), keeping the run that was selected when it is still listed (else the first);
    emits no signals: the caller decides whether the selection changed."""
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    if project is not None:
        names = {d.id: d.name for d in project.datasets()}
        for r in runs:
            name = names.get(r.dataset_id, "?")
            combo.addItem(run_label(r, name) if with_status else f"#{r.id} {run_title(r, name)}", r.id)
    i = combo.findData(current) if current is not None else -1
    combo.setCurrentIndex(i if i >= 0 else (0 if combo.count() else -1))
    combo.blockSignals(False)


def select_run_quietly(combo, run_id: int) -> None:
    """Show ``run_id`` as the combo's choice without emitting its change signals
    (the caller loads the run itself)."""
    i = combo.findData(run_id)
    if i >= 0:
        combo.blockSignals(True)
        combo.setCurrentIndex(i)
        combo.blockSignals(False)


def read_only_note(project) -> str:
    """Why nothing can be saved in ``project``, for the tooltip of an action that would write
    ("" when it can be written, or no project is open)."""
    if project is None or not getattr(project, "read_only", False):
        return ""
    return (f"{project.path.name} is open read-only ({project.read_only_reason}): "
            "nothing can be saved in it")


def show_read_only(widget, note: str) -> None:
    """Give ``widget`` (a button or action that writes to the project) ``note`` as its tooltip
    while the project is read-only, and its usual tooltip back when ``note`` is "". Enabling
    it stays with the caller, which knows its other conditions."""
    usual = widget.property("pretextUsualToolTip")
    if usual is None:
        usual = widget.toolTip()
        widget.setProperty("pretextUsualToolTip", usual)
    widget.setToolTip(note or usual)
