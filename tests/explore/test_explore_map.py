"""The Map view's data without Qt: the run's points, the timeline's aligned frames, the
lasso's point-in-polygon test and the cosine neighbours."""
from __future__ import annotations

import numpy as np
import pytest

from engine.explore.map import (MapData, Timeline, align_frames, compute_clusters, compute_timeline,
                                load_map_data, points_in_polygon)
from engine.workbench import cluster_embeddings, create_run


def inside_by_loop(points: np.ndarray, polygon: np.ndarray) -> set[int]:
    """The reference: the even-odd rule, one point and one edge at a time."""
    out = set()
    for i, (x, y) in enumerate(points):
        odd = False
        for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, axis=0)):
            if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                odd = not odd
        if odd:
            out.add(i)
    return out


def test_points_in_polygon_matches_the_even_odd_rule(lasso_cases):
    pts, star, bow = lasso_cases
    for poly in (star, bow):
        got = points_in_polygon(pts, poly)
        assert set(np.flatnonzero(got)) == inside_by_loop(pts, poly)
        assert 100 < got.sum() < 2900
        assert not got[:5].any()
    assert not points_in_polygon(pts, star[:2]).any()             # two points enclose nothing
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]])
    assert points_in_polygon(np.array([[1, 1], [3, 1], [1, -0.5]]), square).tolist() == [True, False, False]


def test_align_frames_removes_rotation_and_reflection():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)) * np.linspace(3, 0.1, 16)      # a clear first and second component
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    frames = align_frames([x, x @ q, -x])        # the same points, rotated, then mirrored
    assert frames.shape == (3, 300, 2) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[1], frames[0], atol=1e-4)
    np.testing.assert_allclose(frames[2], frames[0], atol=1e-4)
    assert 0.5 < np.abs(frames).max() < 2                         # scaled together to about [-1, 1]


def _run_with_embeddings(project, n_timeline: int) -> tuple[int, np.ndarray]:
    """A run of the digits with stored embeddings, as a finished run leaves them: a timeline
    sample of 100 items at each of ``n_timeline`` evaluations, then the final set of all items."""
    run_id = create_run(project, "digits", "simclr", {"epochs": "2"})
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(1797, 100, replace=False))
    for epoch in range(1, n_timeline + 1):
        project.save_embeddings(run_id, "timeline", sample, rng.normal(size=(100, 8)).astype(np.float32),
                                epoch=epoch)
    final = rng.normal(size=(1797, 8)).astype(np.float32)
    project.save_embeddings(run_id, "all", np.arange(1797), final, epoch=n_timeline + 1)
    return run_id, sample


def test_load_map_data(project):
    run_id, _ = _run_with_embeddings(project, 2)
    info = load_map_data(project, run_id)
    assert isinstance(info, MapData) and info.run_id == run_id and info.run.id == run_id
    assert info.split == "all" and info.points == "images" and not info.shows_words
    assert info.ids.tolist() == list(range(1797)) and info.vectors.shape == (1797, 8)
    np.testing.assert_allclose(np.linalg.norm(info.unit, axis=1), 1.0, rtol=1e-5)
    assert info.n_timeline == 2 and info.texts is None and len(info.names) == 1797
    assert set(info.projections) == {"pca"} and info.projections["pca"][0] is None   # not stored: computed
    assert info.projections["pca"][1].shape == (1797, 2)
    assert info.data.n == 1797
    with pytest.raises(AttributeError):
        info.run_id = 3                                           # frozen
    # The rows of item ids; unknown ids are left out.
    assert info.rows_of([5, 1796, 5000, -1]).tolist() == [5, 1796]
    # Cosine neighbours in embedding space, best first, the point itself excluded.
    rows, sims = info.nearest(0, 8)
    expected = info.unit @ info.unit[0]
    expected[0] = -np.inf
    assert rows.tolist() == np.argsort(-expected, kind="stable")[:8].tolist()
    np.testing.assert_allclose(sims, expected[rows])
    assert 0 not in rows and np.all(np.diff(sims) <= 0)


def test_load_map_data_refuses_an_unfinished_run(project):
    run_id = create_run(project, "digits", "simclr", {})
    with pytest.raises(ValueError, match="no final embeddings"):
        load_map_data(project, run_id)


def test_compute_timeline_ends_with_the_final_embedding(project):
    run_id, sample = _run_with_embeddings(project, 2)
    tl = compute_timeline(project, run_id)
    assert isinstance(tl, Timeline) and tl.run_id == run_id
    assert tl.epochs == [1, 2, 3] and tl.ids.tolist() == sample.tolist() and tl.frames.shape == (3, 100, 2)
    # The frames are the aligned PCA maps of the two timeline sets and of the final set's sample.
    sets = project.embedding_sets(run_id)
    timeline = [project.load_embeddings(e.id)[1] for e in sets if e.split == "timeline"]
    final = project.load_embeddings(sets[-1].id)[1][sample]
    np.testing.assert_allclose(tl.frames, align_frames(timeline + [final]), atol=1e-6)


def test_compute_timeline_needs_two_frames(project):
    run_id = create_run(project, "digits", "simclr", {})
    with pytest.raises(ValueError, match="no timeline"):
        compute_timeline(project, run_id)


def test_compute_clusters():
    vectors = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    emb_id, k, labels = compute_clusters(7, vectors, 3)
    assert (emb_id, k) == (7, 3)
    np.testing.assert_array_equal(labels, cluster_embeddings(vectors, 3))
    assert set(labels.tolist()) == {0, 1, 2}
