"""The Map view's timeline: aligned maps of the embedding at every evaluation (the alignment
itself is tested without Qt in tests/explore/test_explore_map.py)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.workbench import create_run, run_training


@pytest.mark.timeout(180)
def test_timeline_slider_moves_points(window, project, qtbot):
    run_id = create_run(project, "digits", "simclr", {"epochs": "2", "batch_size": "128", "width": "4",
                                                     "max_train_items": "256", "timeline_items": "500"})
    for _ in run_training(project, run_id):
        pass
    mv = window.map_view
    mv.auto_umap = False
    with qtbot.waitSignal(mv.map_ready, timeout=30_000):
        window.show_map(run_id)
    assert mv.timeline_button.isEnabled()
    mv.timeline_button.click()
    qtbot.waitUntil(lambda: mv.timeline is not None, timeout=30_000)
    tl = mv.timeline
    assert tl.epochs == [1, 2] and tl.frames.shape == (2, 500, 2)
    assert mv.timeline_bar.isVisible() and mv.timeline_slider.maximum() == 10
    assert len(mv.scatter.data) == 500                 # only the timeline's sample is drawn
    start = np.c_[mv.scatter.data["x"], mv.scatter.data["y"]]
    np.testing.assert_allclose(start, tl.frames[0], atol=1e-6)

    mv.timeline_slider.setValue(5)                     # half way: the points glide between frames
    mid = np.c_[mv.scatter.data["x"], mv.scatter.data["y"]]
    np.testing.assert_allclose(mid, tl.frames.mean(axis=0), atol=1e-5)
    mv.timeline_slider.setValue(10)
    end = np.c_[mv.scatter.data["x"], mv.scatter.data["y"]]
    np.testing.assert_allclose(end, tl.frames[1], atol=1e-6)
    assert np.abs(end - start).max() > 1e-3
    assert mv.timeline_label.text().startswith("epoch 2")

    # Hover and click still work on the moving points.
    mv.select_point(3)
    assert len(mv.neighbours) == 8

    # Play runs from the first frame to the last and stops there.
    mv.play_button.click()
    assert mv.timeline_slider.value() == 0
    qtbot.waitUntil(lambda: not mv.play_button.isChecked(), timeout=10_000)
    assert mv.timeline_slider.value() == 10

    # Leaving the timeline shows the whole map again.
    mv.timeline_button.click()
    assert not mv.timeline_bar.isVisible() and len(mv.scatter.data) == 1797
