"""GUI test set-up: a temporary project with the digits, a window on it, and
settings kept out of the user's home."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PRETEXT_SETTINGS", str(Path(tempfile.mkdtemp(prefix="pretext-gui-")) / "settings.ini"))

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")


@pytest.fixture
def window(qtbot, project):
    from gui.app import make_app
    from gui.main_window import MainWindow
    from gui.workers import stop_all
    make_app()
    w = MainWindow(project)
    w.resize(1366, 768)
    w.show()
    qtbot.waitExposed(w)
    yield w
    # Not qtbot.addWidget: pytest-qt would close the window before this teardown, and
    # closing during a run asks a question. Stop the runs first, then close.
    stop_all()
    qtbot.wait(50)   # deliver the workers' last queued signals
    w.close()
    w.deleteLater()
    qtbot.wait(10)


def set_field(form, name: str, value) -> None:
    """Type ``value`` into a form field the way a user would (select all, type)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QLineEdit
    w = form.editor(name)
    if isinstance(w, QCheckBox):
        w.setChecked(bool(value))
    elif isinstance(w, QComboBox):
        w.setCurrentIndex(w.findData(value))
    else:
        edit = w.lineEdit() if isinstance(w, QAbstractSpinBox) else w
        assert isinstance(edit, QLineEdit)
        edit.setFocus()
        edit.selectAll()
        QTest.keyClick(edit, Qt.Key.Key_Backspace)
        QTest.keyClicks(edit, str(value))


def configure_small_run(window, epochs: int = 2, width: int = 8, method: str = "simclr") -> None:
    """Pick digits + ``method`` and type a small config into the forms."""
    from PySide6.QtCore import Qt
    tv = window.train_view
    window.show_view("train")
    tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findText("digits", Qt.MatchFlag.MatchStartsWith))
    tv.method_combo.setCurrentIndex(tv.method_combo.findData(method))
    set_field(tv.train_form, "epochs", epochs)
    set_field(tv.train_form, "batch_size", 128)
    set_field(tv.method_form, "width", width)
    assert tv.train_form.values()["epochs"] == epochs
    assert tv.method_form.values()["width"] == width
    assert tv.start_button.isEnabled(), tv.config_problems.text()


@pytest.fixture(name="set_field")
def set_field_fixture():
    return set_field


@pytest.fixture(name="configure_small_run")
def configure_small_run_fixture():
    return configure_small_run
