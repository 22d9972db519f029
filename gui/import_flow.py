"""Adding a data set to the project, the one way every view does it.

:class:`ImportFlow` opens the form for a kind (:class:`ImportDialog`, built from the kind's
``ParamSpec`` list), runs :func:`engine.workbench.import_dataset` on a worker thread with a
progress bar and Cancel, reports the files that could not be read (and those left out),
shows a failure in the app's error dialog, and refuses on a read-only project. The
Datasets view and the Project view each own one and only place its progress bar and
Cancel button; what happens after an import (refreshing, showing the new data set) stays
with the view, through :attr:`ImportFlow.imported`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox,
                               QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from .widgets import error_dialog
from .workers import FunctionWorker


class ImportDialog(QDialog):
    """A form for one data set kind, built from its ``ParamSpec`` list."""

    def __init__(self, kind, existing_names=(), parent=None):
        super().__init__(parent)
        self.kind = kind
        self.setWindowTitle(f"Import: {kind.title}")
        self._existing = set(existing_names)
        lay = QVBoxLayout(self)
        about = QLabel(kind.description)
        about.setWordWrap(True)
        lay.addWidget(about)
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("the data set's own name")
        form.addRow("Name", self.name_edit)
        self.editors: dict[str, QWidget] = {}
        for spec in kind.params:
            editor, row = self._editor(spec)
            editor.setToolTip(spec.help)
            self.editors[spec.name] = editor
            label = spec.name.replace("_", " ") + (" *" if spec.required else "")
            form.addRow(label, row)
        lay.addLayout(form)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        lay.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.name_edit.textChanged.connect(self._check)
        self._check()
        self.resize(520, self.sizeHint().height())

    def _editor(self, spec) -> tuple[QWidget, QWidget]:
        if spec.choices:
            w = QComboBox()
            for c in spec.choices:
                w.addItem(str(c), c)
            w.setCurrentIndex(max(0, w.findData(spec.default)))
            w.currentIndexChanged.connect(self._check)
            return w, w
        if spec.type is bool:
            w = QCheckBox()
            w.setChecked(bool(spec.default))
            return w, w
        if spec.type is int and spec.default is not None:
            w = QSpinBox()
            w.setRange(int(spec.min) if spec.min is not None else -2**31,
                       int(spec.max) if spec.max is not None else 2**31 - 1)
            w.setValue(spec.default)
            return w, w
        if spec.type is float and spec.default is not None:
            # Float bounds stay floats (a fraction in [0, 0.5] must not become [0, 0]).
            w = QDoubleSpinBox()
            w.setDecimals(4)
            w.setRange(float(spec.min) if spec.min is not None else -1e9,
                       float(spec.max) if spec.max is not None else 1e9)
            w.setSingleStep(0.01 if (spec.max is not None and spec.max <= 1) else 1.0)
            w.setValue(spec.default)
            return w, w
        # Paths, optional numbers and free text: a line edit ("" = absent).
        w = QLineEdit("" if spec.default is None else str(spec.default))
        w.textChanged.connect(self._check)
        if spec.type in (int, float):
            w.setPlaceholderText("optional")
            return w, w
        if spec.type is not Path:
            return w, w
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(w, 1)
        folder = spec.name in ("path", "root")
        if folder:
            b = QPushButton("Folder…")
            b.clicked.connect(lambda: self._choose(w, folder=True))
            h.addWidget(b)
        if spec.name != "root":
            b = QPushButton("File…")
            b.clicked.connect(lambda: self._choose(w, folder=False))
            h.addWidget(b)
        return w, row

    def _choose(self, edit: QLineEdit, folder: bool) -> None:
        start = edit.text() or str(Path.home())
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start)
        if path:
            edit.setText(path)

    def values(self) -> dict:
        """The parameters as typed (strings for line edits; the engine converts and checks them)."""
        out = {}
        for spec in self.kind.params:
            w = self.editors[spec.name]
            if isinstance(w, QComboBox):
                out[spec.name] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[spec.name] = w.isChecked()
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                out[spec.name] = w.value()
            else:
                text = w.text().strip()
                if text:
                    out[spec.name] = text
        return out

    def set_values(self, values: dict) -> None:
        for k, v in values.items():
            w = self.editors[k]
            if isinstance(w, QComboBox):
                w.setCurrentIndex(w.findData(v))
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                w.setValue(v)
            else:
                w.setText(str(v))

    def dataset_name(self) -> str | None:
        return self.name_edit.text().strip() or None

    def _check(self, *_):
        missing = [s.name for s in self.kind.params if s.required and not self.values().get(s.name)]
        name = self.dataset_name()
        problem = ""
        if missing:
            problem = f"Fill in: {', '.join(missing)}"
        elif name and name in self._existing:
            problem = f"The project already has a data set called {name!r}"
        self.problem.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)


def unit_of(data) -> str:
    """What a data set's items are called: "sentences" for a corpus, "images" otherwise."""
    return "sentences" if getattr(data, "modality", "images") == "text" else "images"


def _files(n: int) -> str:
    return f"{n:,} {'file' if n == 1 else 'files'}"


class ImportFlow(QObject):
    """One data set import at a time, for the view ``view`` (the parent of its dialogs).

    ``project_of`` returns the view's project (None while none is open). The view puts
    :attr:`progress` and :attr:`cancel_button` in its layout and re-enables its own import
    button on :attr:`busy_changed`.
    """

    #: the import finished: (data set id, the loaded data)
    imported = Signal(int, object)
    #: the import failed: its readable message (the error dialog is already shown)
    failed = Signal(str)
    #: an import started (True) or ended, however it ended (False)
    busy_changed = Signal(bool)
    #: (message, timeout ms) for the status bar
    message = Signal(str, int)

    def __init__(self, view: QWidget, project_of: Callable[[], object]):
        super().__init__(view)
        self._view = view
        self._project_of = project_of
        self._worker: FunctionWorker | None = None
        self.dialog: ImportDialog | None = None
        self.last_report: QMessageBox | None = None
        self.last_error: QMessageBox | None = None
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the import (nothing is added)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def worker(self) -> FunctionWorker | None:
        """The last import's worker (None before the first)."""
        return self._worker

    @property
    def importing(self) -> bool:
        return self._worker is not None and self._worker.is_running()

    def _writable_project(self):
        """The project when a data set can be added to it now, else None: none is open, it is
        read-only (nothing can be saved in it), or an import is already running."""
        project = self._project_of()
        if project is None or project.read_only or self.importing:
            return None
        return project

    def open_dialog(self, kind: str) -> ImportDialog | None:
        """Ask for the parameters of a ``kind`` import, then start it (returns the dialog)."""
        from engine.data import DATASET_KINDS
        project = self._project_of()
        if project is None or project.read_only:
            return None
        dlg = ImportDialog(DATASET_KINDS[kind], [d.name for d in project.datasets()], self._view)
        dlg.accepted.connect(lambda: self.start(kind, dlg.dataset_name(), **dlg.values()))
        dlg.open()
        self.dialog = dlg
        return dlg

    def start(self, kind: str, name: str | None = None, **params) -> bool:
        """Import on a worker thread with progress and Cancel (False: refused, nothing started)."""
        project = self._writable_project()
        if project is None:
            return False
        from engine.workbench import import_dataset
        have = {d.name for d in project.datasets()}
        if name is None and kind in ("digits", "shapes"):
            # A built-in set added twice gets "shapes-2" rather than a name already taken.
            name, i = kind, 2
            while name in have:
                name, i = f"{kind}-{i}", i + 1
        worker = FunctionWorker(import_dataset, project, kind, name, thread_name="pretext-import", **params)
        worker.progress.connect(self._on_progress)
        worker.result.connect(lambda result, p=project: self._on_imported(p, *result))
        worker.errored.connect(self._on_error)
        worker.cancelled.connect(lambda: self.message.emit("Import cancelled: nothing was added", 5000))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.progress.setRange(0, 0)            # busy until the first progress report
        self.progress.setFormat(f"importing {kind}… %p%")
        self.progress.setToolTip("")
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        worker.start()
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def _on_progress(self, fraction: float, message: str) -> None:
        if fraction >= 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        self.progress.setToolTip(message)

    def _on_imported(self, project, dataset_id: int, data) -> None:
        self.imported.emit(dataset_id, data)
        # The name it was stored under (the one typed in the form, else the data's own).
        name = project.dataset(dataset_id).name
        unit = unit_of(data)
        info = getattr(data, "info", None) or {}
        if info.get("already_imported") is not None:
            self.message.emit(f"{name} already holds this data (same fingerprint): nothing imported", 8000)
            return
        ignored = info.get("ignored_files") or []
        n_ignored = int(info.get("n_ignored_files", len(ignored)))
        left_out = f"; {_files(n_ignored)} left out (not images, or hidden)" if n_ignored else ""
        self.message.emit(f"Imported {name}: {data.n:,} {unit}{left_out}", 5000)
        if data.skipped:
            box = QMessageBox(QMessageBox.Icon.Information, "Some files were skipped",
                              f"Imported {data.n:,} {unit}; {_files(len(data.skipped))} could not be "
                              "read and were skipped.", QMessageBox.StandardButton.Ok, self._view)
            details = [f"{f}: {why}" for f, why in data.skipped]
            if n_ignored:
                details += ["", f"Left out ({n_ignored:,}):"] + [f"{f}: {why}" for f, why in ignored]
            box.setDetailedText("\n".join(details))
            box.open()
            self.last_report = box

    def _on_error(self, message: str, details: str) -> None:
        self.last_error = error_dialog(self._view, "Import failed", message, details)
        self.failed.emit(message)

    def _on_finished(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.busy_changed.emit(False)


class ImportingView:
    """A view that adds data sets (mixed into its QWidget class): its import API, all of it
    its :class:`ImportFlow`'s. The view calls :meth:`_make_import_flow` before building its
    layout, has ``project``, a ``message`` signal and an ``_on_imported(dataset_id, data)``."""

    import_flow: ImportFlow

    def _make_import_flow(self, on_busy: Callable[[bool], None]) -> ImportFlow:
        """Create the flow; ``on_busy`` updates the view's import button when one starts or ends."""
        self.import_flow = ImportFlow(self, lambda: self.project)
        self.import_flow.imported.connect(self._on_imported)
        self.import_flow.message.connect(self.message)
        self.import_flow.busy_changed.connect(on_busy)
        return self.import_flow

    @property
    def importing(self) -> bool:
        return self.import_flow.importing

    @property
    def _import_worker(self) -> FunctionWorker | None:
        return self.import_flow.worker

    @property
    def last_report(self) -> QMessageBox | None:
        """The last "some files were skipped" report."""
        return self.import_flow.last_report

    def open_import_dialog(self, kind: str) -> ImportDialog | None:
        """Ask for the parameters of a ``kind`` import, then start it (returns the dialog)."""
        return self.import_flow.open_dialog(kind)

    def import_dataset(self, kind: str, name: str | None = None, **params) -> bool:
        """Import on a worker thread with progress and Cancel (False: refused)."""
        return self.import_flow.start(kind, name, **params)

    def cancel_import(self) -> None:
        self.import_flow.cancel()
