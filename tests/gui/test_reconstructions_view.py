"""The Reconstructions view: pictures from a checkpoint, live sliders, stored pictures (what is
computed, and the stored grids split into rows, is tested without Qt in
tests/explore/test_explore_reconstructions.py)."""
from __future__ import annotations

import numpy as np
import torch

from engine.methods import DataInfo, get_method
from engine.tasks.images import save_reconstructions
from engine.train import RunConfig, images_tensor
from engine.workbench import create_run, load_dataset


def _run_with_checkpoint(project, method: str, **overrides) -> int:
    """A run of ``method`` on the digits with one checkpoint of its (seeded, untrained) weights
    and the pictures the loop stores with a checkpoint: the view only needs those."""
    run_id = create_run(project, "digits", method, {"epochs": "1", **overrides})
    cfg = RunConfig.from_dict(project.run(run_id).config)
    data = load_dataset(project, "digits")
    torch.manual_seed(0)
    m = get_method(method)(cfg.method_config, DataInfo(data.name, data.channels, data.height, data.width, 100))
    project.save_checkpoint(run_id, 1, 1, {"model": m.state_dict(), "optim": {}, "step": 1})
    save_reconstructions(project, run_id, m.eval(), images_tensor(data), torch.device("cpu"), 0, 1)
    project.update_run(run_id, status="finished")
    return run_id


def _wait_for(qtbot, rv, setting):
    qtbot.waitUntil(lambda: rv.result is not None and rv.result.key[2] == setting and not rv.busy,
                    timeout=30_000)


def test_mae_mask_slider_recomputes_live(window, project, qtbot):
    from engine.methods.mae import reconstruct_images
    from engine.explore.reconstructions import ModelCache
    run_id = _run_with_checkpoint(project, "mae")
    create_run(project, "digits", "simclr", {"epochs": "1"})      # no pictures: not listed
    rv = window.reconstructions_view
    window.show_view("reconstructions")
    assert [rv.run_combo.itemData(i) for i in range(rv.run_combo.count())] == [run_id]
    assert rv.slider.isVisible() and rv.slider_label.text() == "Mask ratio"
    assert rv.slider.value() == 75                                   # the trained ratio
    _wait_for(qtbot, rv, 0.75)
    titles = [t for t, _ in rv.grid.rows]
    assert titles == ["original", "masked input", "reconstruction", "visible + predicted"]
    first = dict(rv.result.rows)
    assert first["input"].shape == (16, 8, 8, 1)

    # Moving the slider redraws the pictures: exactly the engine's reconstruction at that ratio.
    rv.slider.setValue(25)
    _wait_for(qtbot, rv, 0.25)
    second = dict(rv.result.rows)
    assert np.array_equal(second["original"], first["original"])       # the same images…
    assert not np.array_equal(second["input"], first["input"])         # …masked less
    cache = rv._cache
    expected = reconstruct_images(cache.method, load_dataset(project, "digits").images[rv.result.items],
                                  0.25, seed=rv.seed)
    assert np.array_equal(second["input"], expected["input"])
    assert np.array_equal(second["pasted"], expected["pasted"])
    assert isinstance(cache, ModelCache) and cache.key[0] == run_id

    # A burst of slider moves: only the latest request counts.
    ready = []
    rv.pictures_ready.connect(ready.append)
    for v in range(30, 60, 3):
        rv.slider.setValue(v)
    _wait_for(qtbot, rv, 0.57)
    qtbot.wait(300)
    assert rv.result.key[2] == 0.57 and len(ready) <= 2

    # "New masks" draws other masks for the same images.
    before = dict(rv.result.rows)["input"]
    rv.sample_button.click()
    qtbot.waitUntil(lambda: rv.result.key[3] == 1 and not rv.busy, timeout=30_000)
    assert not np.array_equal(dict(rv.result.rows)["input"], before)

    # The pictures stored at the checkpoint: rows titled as the live ones, and the ratio they
    # were made with (the trained 75 %, not the slider's 57 %).
    rv.tabs.setCurrentIndex(1)
    assert rv.saved_slider.maximum() == 0 and rv.saved_view.n_images() == 16
    assert [t for t, _ in rv.saved_view.rows] == ["original", "masked input", "reconstruction",
                                                  "visible + predicted"]
    assert rv.saved_view.rows[0][1].shape == (16, 8, 8, 3)
    assert "step 1" in rv.saved_label.text()
    assert "made at mask ratio 75 %, as trained" in rv.saved_label.text() and rv.slider.value() == 57
    assert not rv.slider.isEnabled() and not rv.sample_button.isEnabled()     # they draw the Live tab only
    assert "made at mask ratio 75 %" in rv.status.text() and "57" not in rv.status.text()
    rv.tabs.setCurrentIndex(0)
    assert rv.slider.isEnabled() and rv.sample_button.isEnabled()
    assert "at mask ratio 57 %: 16 test images" in rv.status.text()


def test_denoising_noise_slider(window, project, qtbot):
    run_id = _run_with_checkpoint(project, "denoising-autoencoder", width="4")
    rv = window.reconstructions_view
    window.show_view("reconstructions")
    rv.show_run(run_id)
    assert rv.slider_label.text() == "Noise level" and rv.slider.value() == 50
    rv.slider.setValue(0)
    _wait_for(qtbot, rv, 0.0)
    rows = dict(rv.result.rows)
    assert np.array_equal(rows["input"], rows["original"])            # no noise: the image itself
    rv.slider.setValue(90)
    _wait_for(qtbot, rv, 0.9)
    rows = dict(rv.result.rows)
    assert np.abs(rows["input"].astype(int) - rows["original"]).mean() > 10
    # The method's own setting is left as trained.
    assert rv._cache.method.cfg.level == 0.5


def test_tiles_fill_the_space(window, project, qtbot):
    """The grid picks the columns that make the tiles largest, and lays out again on resize."""
    from gui.views.reconstructions_view import fitted_columns
    assert fitted_columns(16, 4, 8, 8, 1200, 300) == 16          # wide and short: one band
    assert fitted_columns(16, 4, 8, 8, 1000, 600) == 8           # two bands of eight
    assert fitted_columns(16, 4, 8, 8, 300, 1200) == 4           # narrow and tall: four bands
    run_id = _run_with_checkpoint(project, "mae")
    rv = window.reconstructions_view
    window.show_view("reconstructions")
    rv.show_run(run_id)
    _wait_for(qtbot, rv, 0.75)
    grid = rv.grid
    wide = grid.layout_for(1400, 330)
    tall = grid.layout_for(500, 1400)
    assert wide[0] == 16 and tall[0] < 16
    # A bigger view draws bigger tiles (the view is not stuck at one size).
    grid.resize(700, 400)
    grid.repaint()
    small = grid.tile
    grid.resize(1400, 800)
    grid.repaint()
    assert grid.tile[0] > small[0] and grid.tile[0] * grid.columns > 0.5 * (1400 - 150)
