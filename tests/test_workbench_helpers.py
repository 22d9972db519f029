"""The small Qt-free helpers behind the Map view: names per embedding split, caption
search, k-means colours and the selection export."""
import csv
import re
from types import SimpleNamespace

import numpy as np
import pytest

from engine.data import load_images
from engine.workbench import (SELECTION_COLUMNS, caption_matches, cluster_embeddings, export_selection,
                              item_captions, item_names)


@pytest.fixture(scope="module")
def captions():
    return load_images("shapes-captions", n=300, seed=0)


@pytest.fixture(scope="module")
def shapes():
    return load_images("shapes", n=60, size=8, seed=0)


def test_item_names_follow_the_split(captions, shapes):
    # The masked language model stores sentence indices; word2vec stores vocabulary indices.
    assert item_names(captions, "sentences") is captions.sentences
    assert item_names(captions, SimpleNamespace(split="sentences"))[7] == captions.sentences[7]
    assert item_names(captions, "all") is captions.vocab
    assert captions.sentences[3] != captions.vocab[3]
    assert item_names(shapes, SimpleNamespace(split="all")) == shapes.item_names
    # Captions to search: sentences, image captions, nothing for words.
    assert item_captions(captions, "sentences") is captions.sentences
    assert item_captions(captions, "all") is None
    assert item_captions(shapes, "all") == shapes.captions


def test_caption_matches_whole_words_case_insensitive():
    texts = ["A red circle", "a tired square", "RED square, left", "red-ish blob", "blue circle"]
    ids = np.arange(5)
    assert caption_matches(texts, ids, "red").tolist() == [True, False, True, True, False]
    assert caption_matches(texts, ids, "  Red ").tolist() == [True, False, True, True, False]
    assert caption_matches(texts, ids, "red square").tolist() == [False, False, True, False, False]
    assert caption_matches(texts, ids, "").tolist() == [False] * 5
    assert caption_matches(texts, np.array([4, 0]), "circle").tolist() == [True, True]     # in ids order
    assert caption_matches(None, ids, "red").tolist() == [False] * 5


def test_caption_matches_agrees_with_a_plain_word_split(captions):
    ids = np.arange(0, captions.n, 2)
    for word in ("red", "circle", "small", "left"):
        want = [word in re.findall(r"\w+", captions.sentences[i].lower()) for i in ids]
        got = caption_matches(captions.sentences, ids, word)
        assert got.tolist() == want
        assert 0 < got.sum() < len(ids)


def test_cluster_embeddings_finds_planted_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 5
    sizes = [120, 80, 50, 30]
    truth = np.repeat(np.arange(4), sizes)
    x = centres[truth] + rng.normal(size=(len(truth), 16)) * 0.2
    labels = cluster_embeddings(x, 4)
    assert labels.shape == (280,) and set(labels.tolist()) == {0, 1, 2, 3}
    # Each planted group is one cluster, numbered by size (0 = the largest).
    for g in range(4):
        assert set(labels[truth == g].tolist()) == {g}
    assert len(set(cluster_embeddings(x, 7).tolist())) == 7
    assert set(cluster_embeddings(x[:3], 10).tolist()) == {0, 1, 2}        # k is capped at n


def test_export_selection_writes_the_rows(tmp_path, shapes, captions):
    ids = np.array([5, 0, 42])
    coords = np.array([[0.5, -0.25], [1.0, 2.0], [-0.125, 3.5]], np.float32)
    out = export_selection(tmp_path / "sub" / "sel.csv", shapes, "all", ids, coords)
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert tuple(rows[0]) == SELECTION_COLUMNS
    assert len(rows) == 4
    for row, i, (x, y) in zip(rows[1:], ids, coords):
        assert int(row[0]) == i
        assert row[1] == shapes.item_names[i]
        assert row[2] == shapes.class_names[shapes.labels[i]]
        assert (float(row[3]), float(row[4])) == (x, y)
    # A sentence map: names are the sentences (commas quoted), no labels.
    out = export_selection(tmp_path / "s.csv", captions, "sentences", np.array([3]), np.array([[0.0, 1.0]]))
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[1] == ["3", captions.sentences[3], "", "0", "1"]
