"""Ctrl+1…8 in sidebar order and shown there; the Help menu: guide, shortcut list, versions."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

SIDEBAR = ["project", "datasets", "train", "map", "reconstructions", "compare", "words", "search"]


def test_view_shortcuts_follow_the_sidebar_and_are_shown(window, qtbot):
    from gui.main_window import SHORTCUT_ROLE
    keys = [window.sidebar.item(r).data(Qt.ItemDataRole.UserRole) for r in range(window.sidebar.count())]
    assert keys == SIDEBAR
    for row, key in enumerate(SIDEBAR):
        n = row + 1
        assert window.view_actions[key].shortcut().toString() == f"Ctrl+{n}"
        item = window.sidebar.item(row)
        assert item.data(SHORTCUT_ROLE) == f"Ctrl+{n}"
        assert item.toolTip() == f"{item.text()} (Ctrl+{n})"
    window.activateWindow()
    window.sidebar.setFocus()
    for n, key in ((3, "train"), (2, "datasets"), (4, "map"), (1, "project")):
        QTest.keyClick(window, getattr(Qt.Key, f"Key_{n}"), Qt.KeyboardModifier.ControlModifier)
        assert window.current_view() == key, (n, window.current_view())
    # The texts that name a shortcut use the same numbers.
    window._on_run_finished(7)
    assert window.statusBar().currentMessage() == "Run #7 finished: its map is in the Map view (Ctrl+4)"
    assert "Go to Train (Ctrl+3)" in window.project_view.runs_empty.text()


def test_shortcut_list_is_built_from_the_actions(window, qtbot):
    dialog = window.show_shortcuts()
    rows = dialog.rows()
    assert ("View", "Train", "Ctrl+3") in rows
    assert ("View", "Map", "Ctrl+4") in rows
    assert ("Run", "Start training", "Ctrl+Return, Ctrl+Enter") in rows
    assert ("File", "Quit", "Ctrl+Q") in rows
    assert ("Help", "Keyboard shortcuts", "Ctrl+/") in rows
    assert ("Map", "Timeline", "Ctrl+T") in rows
    assert ("Map", "Lasso", "Ctrl+L") in rows
    assert ("Datasets", "Re-roll the augmentation preview", "Ctrl+R") in rows
    assert ("Train", "Add to queue", "Ctrl+Shift+Return") in rows     # described by its button
    assert ("Compare", "Filter the runs", "Ctrl+F") in rows
    assert len({(where, keys) for where, _what, keys in rows}) == len(rows)   # each listed once
    dialog.close()
    # A shortcut changed on an action shows in the list: it cannot drift.
    window.view_actions["words"].setShortcut(QKeySequence("Ctrl+Shift+W"))
    rows = window.show_shortcuts().rows()
    assert ("View", "Words", "Ctrl+Shift+W") in rows and ("View", "Words", "Ctrl+7") not in rows
    window._shortcuts_dialog.close()


def test_versions_name_the_stack_and_the_device_and_copy(window, qtbot):
    import platform

    import numpy
    import PySide6
    import pyqtgraph
    import torch
    window.device_text = "cpu (2 threads)"
    dialog = window.show_versions()
    text = dialog.text.toPlainText()
    lines = text.splitlines()
    assert f"Python {platform.python_version()}" in lines[1]
    assert f"torch {torch.__version__.split('+')[0]}" in text
    cuda = [line for line in lines if line.startswith("CUDA ")]
    assert len(cuda) == 1
    if not torch.cuda.is_available():
        assert cuda[0].startswith("CUDA none")
    assert f"PySide6 {PySide6.__version__}" in text
    assert f"pyqtgraph {pyqtgraph.__version__}" in text
    assert f"numpy {numpy.__version__}" in text
    assert "Device in use: cpu (2 threads)" in lines
    dialog.copy_button.click()
    from PySide6.QtWidgets import QApplication
    assert QApplication.clipboard().text() == text
    dialog.close()


def test_user_guide_opens_or_says_where_it_is(window, monkeypatch):
    import gui.main_window as mw
    opened = []
    monkeypatch.setattr(mw, "open_url", lambda url: opened.append(url.toLocalFile()) or True)
    assert window.show_guide()
    assert opened == [str(mw.GUIDE_PATH)] and mw.GUIDE_PATH.name == "guide.md" and mw.GUIDE_PATH.is_file()
    # No viewer for it: the window says where the file is.
    monkeypatch.setattr(mw, "open_url", lambda url: False)
    assert not window.show_guide()
    assert str(mw.GUIDE_PATH) in window._info_box.text()
    window._info_box.close()
    help_menu = [a.menu() for a in window.menuBar().actions() if a.text() == "&Help"][0]
    assert [a.text() for a in help_menu.actions() if not a.isSeparator()] == [
        "User &guide", "&Keyboard shortcuts", "&Versions and device", "&About Pretext"]
