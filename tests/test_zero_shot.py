"""engine.zero_shot on constructed embeddings whose answers are known by hand."""
import numpy as np
import pytest

from engine import zero_shot as zs


def unit(*rows):
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_recall_at_k_both_ways_with_several_captions():
    # Three images along the axes; four captions: image 0 has two (one matches it
    # best, one points at image 1), image 1 one that is closest to image 2,
    # image 2 one that is exactly it.
    images = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    texts = unit([1, 0.1, 0], [0.2, 1, 0.1], [0, 0.8, 1], [0, 0, 1])
    owner = np.array([0, 0, 1, 2])
    r = zs.recall_at_k(images, texts, owner, ks=(1, 2, 3))
    # image → text. Image 0: best caption is its own (text 0) → rank 0.
    # Image 1: scores [0.1, 0.98, 0.62, 0] → text 1 (image 0's) first, its own text 2 second.
    # Image 2: scores [0, 0.1, 0.78, 1] → its own text 3 first.
    assert r["i2t_r1"] == pytest.approx(2 / 3) and r["i2t_r2"] == 1.0
    # text → image. Text 0 → image 0 first (ok). Text 1 (owner 0) → image 1 first, image 0 second.
    # Text 2 (owner 1) → image 2 (1.0) before image 1 (0.8): rank 2. Text 3 → image 2 first.
    assert r["t2i_r1"] == pytest.approx(2 / 4) and r["t2i_r2"] == 1.0 and r["t2i_r3"] == 1.0


def test_recall_skips_images_without_captions():
    images = unit([1, 0], [0, 1])
    r = zs.recall_at_k(images, unit([1, 0.1]), np.array([0]), ks=(1,))
    assert r == {"i2t_r1": 1.0, "t2i_r1": 1.0}


def test_classify_accuracy_per_class_and_confusion():
    classes = unit([1, 0], [0, 1], [1, 1])
    images = unit([1, 0.1], [0.1, 1], [1, 0.9], [1, 0.2], [0, 1])
    labels = np.array([0, 1, 2, 2, 0])
    res = zs.classify(images, classes, labels, ["a", "b", "c"])
    assert res["pred"].tolist() == [0, 1, 2, 0, 1]
    assert res["accuracy"] == pytest.approx(3 / 5)
    assert res["per_class"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    assert res["confusion"].tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_top_k_orders_by_score():
    gallery = unit([1, 0], [0, 1], [1, 1], [-1, 0])
    idx, scores = zs.top_k(np.array([1.0, 0.2]), gallery, k=3)
    assert idx.tolist() == [0, 2, 1] and np.all(np.diff(scores) <= 0)
    idx, _ = zs.top_k(np.array([1.0, 0.2]), gallery, k=10)
    assert idx.tolist() == [0, 2, 1, 3]


def test_prompt_templates_are_averaged():
    table = {"a cat": [1, 0, 0], "a photo of a cat": [0, 3, 0], "a dog": [0, 0, 1], "a photo of a dog": [0, 0, 2]}
    seen = []

    def encode(texts):
        seen.extend(texts)
        return np.array([table[t] for t in texts], dtype=np.float32)

    emb = zs.class_embeddings(encode, ["cat", "dog"], ["a {}", "a photo of a {}"])
    assert seen == ["a cat", "a photo of a cat", "a dog", "a photo of a dog"]
    # Each prompt normalised, then averaged and normalised: cat → (1, 1, 0)/√2, dog → (0, 0, 1).
    np.testing.assert_allclose(emb, [[2 ** -0.5, 2 ** -0.5, 0], [0, 0, 1]], atol=1e-6)
    # A template without {} gets the name appended.
    assert zs.prompts("cat", ["a photo of a {}", "picture:"]) == ["a photo of a cat", "picture: cat"]
    # Averaging changes the decision: an image between the two cat prompts is a cat
    # with both templates, but a dog under the first template alone.
    image = unit([0.3, 1, 0.6])
    assert zs.classify(image, emb)["pred"][0] == 0
    assert zs.classify(image, zs.class_embeddings(encode, ["cat", "dog"], ["a {}"]))["pred"][0] == 1
