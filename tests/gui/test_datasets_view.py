"""The Datasets view: import with progress and a skipped-files report, cancel, a
virtualised grid, and the augmentation preview."""
from __future__ import annotations

import time

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QDialogButtonBox

from engine.data import ImageData


def _image_folder(root, per_class=6, size=16):
    """Two classes of small PNGs (dark and bright squares) and one file that is not an image."""
    rng = np.random.default_rng(0)
    for c, (name, level) in enumerate((("dark", 40), ("bright", 200))):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            px = np.clip(level + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(d / f"{i}.png")
    (root / "bright" / "broken.png").write_bytes(b"this is not a png")
    return root


def test_import_folder_reports_skipped_files(window, project, qtbot, tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    dv = window.datasets_view
    window.show_view("datasets")

    # The form for the kind: Import stays disabled until the required path is given.
    dlg = dv.open_import_dialog("image-folder")
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled() and "path" in dlg.problem.text()
    dlg.name_edit.setText("squares")
    dlg.set_values({"path": str(folder), "size": 16})
    assert ok.isEnabled()
    assert dlg.values()["path"] == str(folder) and dlg.values()["size"] == 16
    with qtbot.waitSignal(dv.dataset_loaded, timeout=30_000):
        ok.click()                                   # accept → the import runs on a worker
        assert dv.importing and dv.import_progress.isVisible() and dv.cancel_button.isVisible()
    qtbot.waitUntil(lambda: not dv.importing and not dv.import_progress.isVisible(), timeout=10_000)

    rec = project.dataset("squares")
    assert rec.n_items == 12 and rec.kind == "image-folder"
    assert dv.dataset_combo.currentData() == rec.id
    assert dv.model.rowCount() == 12
    assert dv.data.images.shape == (12, 16, 16, 3)
    assert sorted(dv.data.class_names) == ["bright", "dark"]
    # The report of skipped files names the broken file; the statistics list it too.
    box = dv.last_report
    assert box is not None and box.isVisible()
    assert "12 images; 1 file could not be read" in box.text()
    assert "broken.png" in box.detailedText()
    assert "broken.png" in dv.stats.toPlainText()
    box.close()
    # The other views know about the new data set.
    assert window.train_view.dataset_combo.findData(rec.id) >= 0

    # Filtering by class shows only that class.
    i = next(k for k in range(dv.show_combo.count()) if dv.show_combo.itemText(k).startswith("dark"))
    dv.show_combo.setCurrentIndex(i)
    assert dv.model.rowCount() == 6
    labels = {dv.model.data(dv.model.index(r, 0)) for r in range(6)}
    assert labels == {"dark"}


def test_cancel_import_adds_nothing(window, project, qtbot):
    dv = window.datasets_view
    window.show_view("datasets")
    before = [d.name for d in project.datasets()]
    assert dv.import_dataset("shapes", "many-shapes", n=400_000, size=32)
    qtbot.wait(50)
    with qtbot.waitSignal(dv._import_worker.cancelled, timeout=30_000):
        dv.cancel_button.click()
    # (the worker counts as done a moment before its queued `finished` resets the buttons)
    qtbot.waitUntil(lambda: not dv.importing and not dv.cancel_button.isVisible(), timeout=10_000)
    assert [d.name for d in project.datasets()] == before
    assert not dv.cancel_button.isVisible() and dv.import_button.isEnabled()



def test_project_and_datasets_views_import_through_the_same_flow(window, project, qtbot, tmp_path,
                                                                 monkeypatch):
    """Both views hand the import to one ImportFlow: the same progress text, the same cancel
    result, the same report of skipped files."""
    import engine.data.folder as folder_loader
    from gui.import_flow import ImportDialog, ImportFlow
    folder = _image_folder(tmp_path / "imgs")
    # Slow each decode a little, so that Cancel (clicked at once) lands before the loader's last
    # progress report and nothing is stored; the loader and the flow are otherwise the real ones.
    store_one = folder_loader._store_one
    monkeypatch.setattr(folder_loader, "_store_one", lambda *a, **k: (time.sleep(0.03), store_one(*a, **k))[1])
    pv, dv = window.project_view, window.datasets_view
    before = [d.name for d in project.datasets()]
    results = {}
    for key, view, cancel, add in (("project", pv, pv.cancel_import_button, pv.add_button),
                                   ("datasets", dv, dv.cancel_button, dv.import_button)):
        window.show_view(key)
        assert type(view.import_flow) is ImportFlow and view.import_progress is view.import_flow.progress
        messages = []
        view.message.connect(lambda text, _ms, m=messages: m.append(text))
        assert view.import_dataset("image-folder", "squares", path=str(folder), size=16)
        shown = (view.import_progress.format(), view.import_progress.isVisible(), cancel.isVisible(),
                 add.isEnabled(), view.importing)
        with qtbot.waitSignal(view._import_worker.cancelled, timeout=30_000):
            cancel.click()
        qtbot.waitUntil(lambda v=view, c=cancel: not v.importing and not c.isVisible(), timeout=10_000)
        results[key] = (shown, messages[-1], [d.name for d in project.datasets()], add.isEnabled())
    assert results["project"] == results["datasets"] == (
        ("importing image-folder… %p%", True, True, False, True),
        "Import cancelled: nothing was added", before, True)

    # A failure shows the app's error dialog from either view (the Datasets view also says it
    # in its count line).
    missing = tmp_path / "missing"
    for key, view in (("project", pv), ("datasets", dv)):
        window.show_view(key)
        assert view.import_dataset("image-folder", path=str(missing))
        qtbot.waitUntil(lambda v=view: v.import_flow.last_error is not None and not v.importing, timeout=10_000)
        box = view.import_flow.last_error
        assert box.windowTitle() == "Import failed" and box.text() == f"{missing}: no such folder or file"
        assert box.isVisible() and "Traceback" in box.detailedText()
        box.close()
    assert dv.count_label.text() == f"{missing}: no such folder or file"
    assert [d.name for d in project.datasets()] == before

    # The Project view's folder entry opens the same form as the Datasets view's.
    window.show_view("project")
    entry = next(a for a in pv.add_button.menu().actions() if a.text().startswith("Image folder"))
    entry.trigger()
    dlg = pv.import_flow.dialog
    assert isinstance(dlg, ImportDialog) and dlg.kind.name == "image-folder" and dlg.isVisible()
    dlg.reject()

    # A whole import from the Project view reports the skipped file as the Datasets view does,
    # naming the items by the data's kind.
    messages = []
    pv.message.connect(lambda text, _ms: messages.append(text))
    with qtbot.waitSignal(pv.datasets_changed, timeout=30_000):
        assert pv.import_dataset("image-folder", "squares", path=str(folder), size=16)
    assert project.dataset("squares").n_items == 12
    assert messages[-1] == "Imported squares: 12 images"
    box = pv.import_flow.last_report
    assert box is not None and "12 images; 1 file could not be read" in box.text()
    assert "broken.png" in box.detailedText()
    box.close()
    qtbot.waitUntil(lambda: not pv.import_progress.isVisible(), timeout=10_000)


def test_augmentation_preview_rerolls(window, project, qtbot):
    from gui.views.datasets_view import make_preview
    dv = window.datasets_view
    with qtbot.waitSignal(dv.dataset_loaded, timeout=30_000):
        window.show_view("datasets")
    methods = [dv.method_combo.itemData(i) for i in range(dv.method_combo.count())]
    assert "simclr" in methods and "byol" in methods
    assert "pca" not in methods and "autoencoder" not in methods     # no views: nothing to preview
    dv.method_combo.setCurrentIndex(methods.index("simclr"))
    originals, v1, v2 = dv.preview_arrays
    assert originals.shape == v1.shape == v2.shape == (8, 8, 8, 1)
    assert not np.array_equal(v1, v2)                 # two different views of each image
    # Exactly what the engine's preview gives for this seed and the method's default views.
    _, a, b, _ = make_preview(dv.data, "simclr", dv.preview_seed)
    assert np.array_equal(a, v1) and np.array_equal(b, v2)
    dv.reroll_button.click()
    _, w1, w2 = dv.preview_arrays
    assert dv.preview_seed == 1
    assert not np.array_equal(w1, v1) and not np.array_equal(w2, v2)
    assert len(dv.preview_grid.rows) == 3 and dv.preview_grid.n_images() == 8


def test_grid_of_60000_items_only_draws_what_is_visible(qtbot):
    from gui.views.datasets_view import DatasetsView
    n = 60_000
    rng = np.random.default_rng(0)
    data = ImageData(name="big", images=rng.integers(0, 255, (n, 28, 28, 1), dtype=np.uint8),
                     labels=rng.integers(0, 10, n), class_names=[str(i) for i in range(10)], attributes={},
                     captions=None, item_names=[f"big/{i}" for i in range(n)], split=np.zeros(n, np.uint8))
    view = DatasetsView()
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    qtbot.waitExposed(view)
    t0 = time.perf_counter()
    view.model.set_data(data)
    qtbot.wait(10)
    view.grid.scrollToBottom()
    view.grid.viewport().repaint()
    view.grid.scrollTo(view.model.index(n // 2, 0))
    view.grid.viewport().repaint()
    elapsed = time.perf_counter() - t0
    assert view.model.rowCount() == n
    made = view.model.thumbnails_made
    assert 0 < made < 1500, f"{made} thumbnails made for a screenful"
    assert elapsed < 3.0, f"setting and scrolling 60,000 items took {elapsed:.2f} s"
