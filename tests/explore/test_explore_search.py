"""The Search view's work without Qt: a CLIP run's session answers text → images and
image → captions as the engine's zero-shot functions do, and the job dispatcher keeps
one session per (project, run, data set)."""
from __future__ import annotations

import numpy as np
import pytest

from engine import workbench, zero_shot
from engine.explore.search import (CaptionMatches, SearchHits, SearchSession, SessionHolder, label_sets, run_job,
                                   run_templates, split_items)


def test_split_items_fall_back_to_all():
    # A data set without a test split falls back to all its items.
    items, used = split_items(np.array([0, 1, 0, 1, 1]), "test")
    assert items.tolist() == [1, 3, 4] and used == "test"
    assert split_items(np.array([0, 1, 0]), "train")[0].tolist() == [0, 2]
    items, used = split_items(np.zeros(4, int), "test")
    assert items.tolist() == [0, 1, 2, 3] and used == "all"
    assert split_items(np.array([0, 1]), "all")[0].tolist() == [0, 1]


def test_run_templates_and_label_sets():
    assert run_templates({"method_config": {"templates": "a {} | {} shape |"}}) == ["a {}", "{} shape"]
    assert run_templates({}) == ["a {}", "a picture of a {}", "there is a {}"]
    stats = {"class_counts": {"0": 5, "1": 7}, "attributes": {"colour": {"red": 3, "blue": 9}}}
    assert label_sets(stats) == {"label": ["0", "1"], "colour": ["red", "blue"]}
    assert label_sets({}) == {}


def test_session_answers_as_the_engine_does(project, clip_run):
    shapes = project.dataset("shapes").id
    split = workbench.load_dataset(project, "shapes").split
    s = SearchSession(project, clip_run, shapes)
    hits = s.search("a large red circle", 7, "all")
    assert isinstance(hits, SearchHits)
    expected = zero_shot.search_images(project, clip_run, "a large red circle", k=7)
    assert hits.index.tolist() == [h["index"] for h in expected]
    np.testing.assert_allclose(hits.score, [h["score"] for h in expected], rtol=1e-5)
    assert (hits.searched, hits.split, hits.pool_size, hits.text) == ("all", "all", 300, "a large red circle")
    assert hits.images.shape == (7, 16, 16, 3) and len(hits.captions) == len(hits.names) == 7
    test = s.search("a large red circle", 5)               # the held-out (test) images by default
    assert test.searched == "test" and test.pool_size == int((split == 1).sum())
    assert all(split[i] == 1 for i in test.index)
    assert test.index.tolist() == [h["index"] for h in zero_shot.search_images(
        project, clip_run, "a large red circle", k=300) if split[h["index"]] == 1][:5]

    described = s.describe(int(hits.index[2]), 10)
    assert isinstance(described, CaptionMatches) and described.index == hits.index[2]
    assert len(described.texts) == 10 and np.all(np.diff(described.score) <= 0)
    assert described.texts[0] == zero_shot.search_texts(project, clip_run, described.index, k=1)[0]["text"]
    assert len(set(s.texts)) == len(s.texts) and described.count.min() >= 1    # each distinct caption once
    with pytest.raises(ValueError, match="no item 300"):
        s.describe(300, 3)


def test_run_job_keeps_one_session_and_stores_zero_shot(project, clip_run):
    shapes = project.dataset("shapes").id
    holder = SessionHolder()
    job = ("search", clip_run, shapes, "a blue square", 3, "test")
    assert run_job(project, holder, job)[0] == job
    first = holder.session
    _, described = run_job(project, holder, ("describe", clip_run, shapes, 4, 2))
    assert holder.session is first and described.index == 4 and len(described.texts) == 2
    zs_job = ("zero_shot", clip_run, shapes, "colour", None, ["a {}"])
    _, res = run_job(project, holder, zs_job)
    ref = zero_shot.zero_shot(project, clip_run, attribute="colour", templates=["a {}"], store=False)
    assert res["accuracy"] == pytest.approx(ref["accuracy"]) and res["attribute"] == "colour"
    assert project.latest_metrics(clip_run)["zeroshot_shapes_colour"] == pytest.approx(ref["accuracy"])
