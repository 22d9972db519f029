"""The Search view on a tiny trained CLIP run: text → images, zero-shot with edited
prompts (the numbers on screen are the engine's), image → captions."""
from __future__ import annotations

import re

import numpy as np
import pytest

from engine import workbench, zero_shot


def _wait(qtbot, sv, kind):
    with qtbot.waitSignal(sv.result_shown, timeout=30_000, check_params_cb=lambda k: k == kind):
        pass


def test_search_zero_shot_and_captions(window, project, clip_run, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    sv = window.search_view
    search_action = next(a for a in window.findChildren(type(window.new_action)) if a.text() == "Search")
    assert search_action.shortcut().toString() == "Ctrl+8"
    search_action.trigger()
    assert window.current_view() == "search"
    # Only the CLIP run is offered; its own data set comes first, digits (8×8 grey) is left out.
    assert [sv.run_combo.itemData(i) for i in range(sv.run_combo.count())] == [clip_run]
    shapes_id = project.dataset("shapes").id
    assert [sv.dataset_combo.itemData(i) for i in range(sv.dataset_combo.count())] == [shapes_id]
    assert sv.templates() == ["a {}", "a picture of a {}", "there is a {}"]

    # Text → images: Enter in the query box fills the grid with k results, best first.
    sv.k_spin.setValue(7)
    sv.query_edit.setText("a large red circle")
    with qtbot.waitSignal(sv.result_shown, timeout=30_000):
        QTest.keyClick(sv.query_edit, Qt.Key.Key_Return)
    assert sv.results.count() == 7
    scores = [float(sv.results.item(i).text().split("\n")[0]) for i in range(7)]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    # By default the held-out (test) images are ranked, and the view says so: the engine's
    # ranking of all images, restricted to the test split.
    split = workbench.load_dataset(project, "shapes").split
    assert sv.split() == "test" and "held-out (test)" in sv.split_combo.currentText()
    ranked = zero_shot.search_images(project, clip_run, "a large red circle", k=len(split))
    shown = [sv.results.item(i).data(Qt.ItemDataRole.UserRole) for i in range(7)]
    assert shown == [h["index"] for h in ranked if split[h["index"]] == 1][:7]
    assert f"of the {int((split == 1).sum())} held-out (test) images of shapes" in sv.status.text()
    assert "held-out (test) images" in sv.results_label.text()            # stays while captions are shown
    assert not sv.results.item(0).icon().isNull()
    # All images on request: the engine's own top 7 (the search runs again at once).
    with qtbot.waitSignal(sv.result_shown, timeout=30_000):
        sv.split_combo.setCurrentIndex(sv.split_combo.findData("all"))
    expected = zero_shot.search_images(project, clip_run, "a large red circle", k=7)
    shown = [sv.results.item(i).data(Qt.ItemDataRole.UserRole) for i in range(7)]
    assert shown == [h["index"] for h in expected]
    assert "of the 300 images of shapes" in sv.status.text()
    with qtbot.waitSignal(sv.result_shown, timeout=30_000):
        sv.split_combo.setCurrentIndex(sv.split_combo.findData("train"))
    assert all(split[sv.results.item(i).data(Qt.ItemDataRole.UserRole)] == 0 for i in range(7))

    # Zero-shot on colour, with one class prompt edited and two templates.
    sv.tabs.setCurrentIndex(1)
    sv.label_combo.setCurrentIndex(sv.label_combo.findData("colour"))
    names = [sv.class_table.item(r, 0).text() for r in range(sv.class_table.rowCount())]
    assert names[:3] == ["red", "green", "blue"] and len(names) == 8
    sv.class_table.item(0, 1).setText("red red")
    sv.templates_edit.setPlainText("a {} shape\n{}")
    assert "“a red red shape”" in sv.prompt_preview.text()
    sv.classify_button.click()
    _wait(qtbot, sv, "zero_shot")
    texts = ["red red"] + names[1:]
    ref = zero_shot.zero_shot(project, clip_run, attribute="colour", templates=["a {} shape", "{}"],
                              class_texts=texts, store=False)
    shown_acc = float(re.search(r"Accuracy ([\d.]+)%", sv.accuracy_label.text()).group(1))
    assert shown_acc == round(ref["accuracy"] * 100, 2)
    table = np.array([[int(sv.confusion_table.item(r, c).text()) for c in range(8)] for r in range(8)])
    assert table.sum() == ref["n"] == int((workbench.load_dataset(project, "shapes").split == 1).sum())
    assert np.array_equal(table, np.array(ref["confusion"]))
    assert sv.confusion_table.horizontalHeaderItem(0).text() == "red"
    assert sv.confusion_table.horizontalHeaderItem(8).text() == "accuracy"
    assert sv.confusion_table.item(0, 8).text() == f"{ref['per_class']['red']:.0%}"
    # The engine stored it with the run.
    assert project.latest_metrics(clip_run)["zeroshot_shapes_colour"] == pytest.approx(ref["accuracy"])

    # Image → captions: clicking a result shows the captions closest to that image.
    sv.tabs.setCurrentIndex(0)
    item = sv.results.item(2)
    rect = sv.results.visualItemRect(item)
    with qtbot.waitSignal(sv.result_shown, timeout=30_000):
        QTest.mouseClick(sv.results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    index = item.data(Qt.ItemDataRole.UserRole)
    assert sv.described.index == index and sv.item_spin.value() == index
    assert sv.caption_table.rowCount() == 10
    caps = [float(sv.caption_table.item(r, 0).text()) for r in range(10)]
    assert caps == sorted(caps, reverse=True)
    best = zero_shot.search_texts(project, clip_run, index, k=1)[0]
    assert sv.caption_table.item(0, 1).text() == best["text"]
    assert f"#{index}" in sv.item_text.text() and not sv.item_image.pixmap().isNull()
    assert "training images of shapes" in sv.results_label.text()          # the split last searched


def test_without_clip_runs_and_errors(window, project, qtbot):
    sv = window.search_view
    window.show_view("search")
    assert sv.run_combo.count() == 0 and "No finished CLIP runs" in sv.status.text()
    assert not sv.query_edit.isEnabled() and not sv.classify_button.isEnabled()
    # A failure on the worker becomes a dialog, and the view keeps working.
    sv.run_id = 999
    sv.dataset_combo.addItem("digits", project.dataset("digits").id)
    sv.query_edit.setText("anything")
    sv.run_query()
    qtbot.waitUntil(lambda: sv.last_error_box is not None, timeout=10_000)
    assert "Cannot search" in sv.status.text()
    sv.last_error_box.close()


def test_clip_runs_that_cannot_be_searched_yet_are_named(window, project, qtbot):
    """An interrupted (or still running) CLIP run without a checkpoint: the view names it and
    says to resume it in the Train view, not "No finished CLIP runs"."""
    workbench.import_dataset(project, "shapes", "shapes", n=60, size=16, seed=0)
    run = workbench.create_run(project, "shapes", "clip", {"epochs": "1"}, name="clip on shapes")
    project.update_run(run, status="running")          # marked running, its process gone: interrupted
    assert project.run(run).status == "interrupted"
    sv = window.search_view
    window.show_view("search")
    sv.refresh()
    text = sv.status.text()
    assert sv.run_combo.count() == 0 and "No finished CLIP runs" not in text
    assert f"#{run} clip on shapes was interrupted" in text and "Resume it in the Train view" in text
    assert sv.results_label.text() == text and sv.results_label.wordWrap()     # in full, not elided
    project.claim_run(run)                                # training in this process
    sv.refresh()
    assert f"#{run} clip on shapes is training" in sv.status.text() and "Wait for it to finish" in sv.status.text()
    # With a checkpoint, an interrupted run is searchable, and the view says what is searched.
    project.release_run(run)
    project.save_checkpoint(run, 3, 1, {"model": {}, "optim": {}, "step": 3})
    sv.refresh()
    assert [sv.run_combo.itemData(i) for i in range(sv.run_combo.count())] == [run]
    assert "was interrupted: its last checkpoint (step 3) is searched" in sv.status.text()
    # (The split helper, engine.explore.search.split_items, is tested in tests/explore/test_explore_search.py.)
