"""engine/evaluate.py: kNN against a hand-written reference, linear probe, collapse metrics."""
import math

import numpy as np
import pytest
import torch

from engine.evaluate import (
    collapse_metrics,
    evaluate_features,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    principal_components,
    raw_pixel_features,
)


def brute_force_knn(train_x, train_y, test_x, k, temperature, n_classes):
    """The InstDisc/MoCo weighted kNN written out one test item at a time."""
    tr = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    preds = []
    for q in test_x:
        q = q / np.linalg.norm(q)
        sims = tr @ q
        order = np.argsort(-sims, kind="stable")[: min(k, len(tr))]
        scores = np.zeros(n_classes)
        for i in order:
            scores[train_y[i]] += math.exp(sims[i] / temperature)
        preds.append(int(np.argmax(scores)))
    return np.array(preds)


def blobs(n_per_class, n_classes, dim, spread, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), dim))
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm]


# --------------------------------------------------------------------------- kNN

@pytest.mark.parametrize("k,temperature", [(1, 0.1), (5, 0.1), (20, 0.5), (200, 0.07)])
def test_knn_matches_brute_force_reference(k, temperature):
    rng = np.random.default_rng(k)
    train_x = rng.normal(size=(150, 12)).astype(np.float32)
    train_y = rng.integers(0, 4, 150)
    test_x = rng.normal(size=(60, 12)).astype(np.float32)
    test_y = rng.integers(0, 4, 60)

    ref = brute_force_knn(train_x.astype(np.float64), train_y, test_x.astype(np.float64), k, temperature, 4)
    pred = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, n_classes=4)
    np.testing.assert_array_equal(pred, ref)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=k, temperature=temperature,
                        n_classes=4) == pytest.approx(np.mean(ref == test_y))


def test_knn_well_separated_clusters_score_one():
    x, y = blobs(60, 5, 16, spread=10.0, seed=0)
    assert knn_accuracy(x[:200], y[:200], x[200:], y[200:], k=20) == 1.0


def test_knn_clips_k_to_the_training_set():
    rng = np.random.default_rng(1)
    train_x, train_y = rng.normal(size=(20, 8)), rng.integers(0, 3, 20)
    test_x = rng.normal(size=(30, 8))
    np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=1000),
                                  knn_predict(train_x, train_y, test_x, k=20))
    np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=1000),
                                  brute_force_knn(train_x, train_y, test_x, 20, 0.1, 3))


def test_knn_chunking_gives_identical_predictions():
    rng = np.random.default_rng(2)
    train_x, train_y = rng.normal(size=(300, 32)), rng.integers(0, 10, 300)
    test_x = rng.normal(size=(101, 32))
    one = knn_predict(train_x, train_y, test_x, k=25, chunk=10_000)
    for chunk in (1, 7, 64):
        np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=25, chunk=chunk), one)


def test_knn_temperature_changes_the_vote():
    # Query at angle 0; one class-0 item at cos 0.9 and two class-1 items at cos 0.5.
    def unit(cos):
        return [cos, math.sqrt(1 - cos * cos)]

    train_x = np.array([unit(0.9), unit(0.5), unit(0.5)], dtype=np.float32)
    train_y = np.array([0, 1, 1])
    test_x = np.array([[2.0, 0.0]], dtype=np.float32)  # not unit length: normalised inside
    # T=0.1: e^9 ≈ 8103 beats 2·e^5 ≈ 297.  T=10: e^0.09 ≈ 1.09 loses to 2·e^0.05 ≈ 2.10.
    assert knn_predict(train_x, train_y, test_x, k=3, temperature=0.1)[0] == 0
    assert knn_predict(train_x, train_y, test_x, k=3, temperature=10.0)[0] == 1
    assert knn_accuracy(train_x, train_y, test_x, np.array([0]), k=3, temperature=0.1) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, np.array([0]), k=3, temperature=10.0) == 0.0


def test_knn_accepts_torch_tensors_and_checks_inputs():
    x, y = blobs(30, 3, 8, spread=5.0, seed=3)
    acc_np = knn_accuracy(x[:60], y[:60], x[60:], y[60:], k=10)
    acc_t = knn_accuracy(torch.from_numpy(x[:60]), torch.from_numpy(y[:60]),
                         torch.from_numpy(x[60:]).double(), torch.from_numpy(y[60:]), k=10)
    assert isinstance(acc_t, float) and acc_t == acc_np
    with pytest.raises(ValueError):
        knn_accuracy(x[:60], y[:59], x[60:], y[60:])
    with pytest.raises(ValueError):
        knn_accuracy(x[:60], y[:60] - 5, x[60:], y[60:])
    with pytest.raises(ValueError):
        knn_accuracy(x[:60], y[:60], x[60:, :4], y[60:])
    with pytest.raises(ValueError):
        knn_accuracy(x[:60], y[:60], x[60:], y[60:], k=0)


# --------------------------------------------------------------------------- linear probe

def test_linear_probe_separable_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 20)).astype(np.float32)
    scores = x @ rng.normal(size=(20, 4))
    y = scores.argmax(axis=1)                       # linearly separable by construction ...
    top2 = np.sort(scores, axis=1)[:, -2:]
    keep = top2[:, 1] - top2[:, 0] > 1.0            # ... with a margin
    x, y = x[keep], y[keep]
    acc = linear_probe_accuracy(x[:1000], y[:1000], x[1000:], y[1000:])
    assert acc >= 0.99


def test_linear_probe_random_labels_is_near_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    y = rng.integers(0, 10, 3000)
    acc = linear_probe_accuracy(x[:2000], y[:2000], x[2000:], y[2000:])
    assert 0.05 <= acc <= 0.16


def test_linear_probe_single_training_class():
    x = np.random.default_rng(2).normal(size=(20, 3))
    assert linear_probe_accuracy(x[:10], np.zeros(10), x[10:], np.array([0] * 7 + [1] * 3)) == 0.7


@pytest.mark.parametrize("informative,redundant", [(30, 0), (40, 10)])
def test_linear_probe_torch_agrees_with_sklearn(informative, redundant):
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=4000, n_features=64, n_informative=informative, n_redundant=redundant,
                               n_classes=10, n_clusters_per_class=1, random_state=0)
    x = x.astype(np.float32)
    ours = linear_probe_accuracy(x[:3000], y[:3000], x[3000:], y[3000:])
    theirs = linear_probe_accuracy(x[:3000], y[:3000], x[3000:], y[3000:], backend="sklearn")
    assert 0.4 < theirs < 0.8                      # a problem where the probe has work to do
    assert abs(ours - theirs) <= 0.005


def test_linear_probe_is_deterministic_and_label_values_do_not_matter():
    x, y = blobs(300, 3, 16, spread=0.6, seed=6)
    args = (x[:600], y[:600], x[600:], y[600:])
    acc = linear_probe_accuracy(*args)
    assert 0.5 < acc < 0.99
    assert linear_probe_accuracy(*args) == acc
    # Labels 3, 7, 42 instead of 0, 1, 2: the same problem.
    relabel = np.array([3, 7, 42])
    assert linear_probe_accuracy(x[:600], relabel[y[:600]], x[600:], relabel[y[600:]]) == acc
    # Tensors in, and the loss summed over pieces of 97 rows: the same optimisation.
    assert linear_probe_accuracy(torch.from_numpy(x[:600]), torch.from_numpy(y[:600]),
                                 torch.from_numpy(x[600:]), torch.from_numpy(y[600:])) == acc
    assert linear_probe_accuracy(*args, chunk=97) == pytest.approx(acc, abs=0.004)


def test_linear_probe_constant_feature_and_bad_arguments():
    x, y = blobs(100, 2, 4, spread=4.0, seed=7)
    x[:, 2] = 5.0                                  # a constant column must not become NaN
    assert linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:]) >= 0.95
    with pytest.raises(ValueError):
        linear_probe_accuracy(x[:150], y[:150], x[150:, :3], y[150:])
    with pytest.raises(ValueError):
        linear_probe_accuracy(x[:150], y[:149], x[150:], y[150:])
    with pytest.raises(ValueError):
        linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:], backend="svm")


# --------------------------------------------------------------------------- collapse

def test_collapse_metrics_healthy_gaussian():
    z = np.random.default_rng(0).normal(size=(4000, 64))
    m = collapse_metrics(z)
    assert m["std"] == pytest.approx(1 / 8, rel=0.03)
    assert m["std_ratio"] == pytest.approx(1.0, abs=0.03)
    assert m["effective_rank"] > 60
    assert m["rank_ratio"] == pytest.approx(m["effective_rank"] / 64)


def test_collapse_metrics_identical_rows_are_zero():
    z = np.tile(np.random.default_rng(1).normal(size=(1, 32)), (256, 1)).astype(np.float32)
    m = collapse_metrics(torch.from_numpy(z))
    assert m == {"std": pytest.approx(0, abs=1e-6), "std_ratio": pytest.approx(0, abs=1e-5),
                 "effective_rank": 0.0, "rank_ratio": 0.0}


def test_collapse_metrics_rank_one_and_known_spectrum():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(500, 1)) * rng.normal(size=(1, 48)) + rng.normal(size=(1, 48))
    assert collapse_metrics(z)["effective_rank"] == pytest.approx(1.0, abs=1e-4)

    # Centred data with singular values (3, 1): p = (3/4, 1/4).
    u = np.linalg.qr(rng.normal(size=(100, 2)))[0]
    u -= u.mean(axis=0)
    u = np.linalg.qr(u)[0]                           # orthonormal and still centred
    zc = u @ np.diag([3.0, 1.0]) @ np.linalg.qr(rng.normal(size=(5, 2)))[0].T
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert collapse_metrics(zc)["effective_rank"] == pytest.approx(expected, rel=1e-6)
    assert collapse_metrics(zc)["rank_ratio"] == pytest.approx(expected / 5, rel=1e-6)


def test_collapse_metrics_wide_batch_and_grad_tensor():
    z = torch.randn(16, 256, requires_grad=True)
    m = collapse_metrics(z)
    assert 0 < m["rank_ratio"] <= 1 and m["effective_rank"] <= 16
    assert all(isinstance(v, float) for v in m.values())


# --------------------------------------------------------------------------- convenience

def test_evaluate_features_prefixes_keys():
    x, y = blobs(40, 3, 8, spread=8.0, seed=4)
    out = evaluate_features(x[:80], y[:80], x[80:], y[80:], prefix="raw_", k=10)
    assert set(out) == {"raw_knn", "raw_linear"}
    assert out["raw_knn"] == 1.0 and out["raw_linear"] == 1.0
    assert set(evaluate_features(x[:80], y[:80], x[80:], y[80:], which=("knn",))) == {"knn"}
    with pytest.raises(ValueError):
        evaluate_features(x, y, x, y, which=("svm",))


def test_raw_pixel_features():
    imgs = np.random.default_rng(5).integers(0, 256, size=(6, 4, 5, 3), dtype=np.uint8)
    f = raw_pixel_features(imgs)
    assert f.shape == (6, 60) and f.dtype == np.float32
    expected = imgs.reshape(6, -1) / 255.0
    expected -= expected.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(f, expected, atol=1e-6)
    np.testing.assert_allclose(f.mean(axis=1), 0, atol=1e-6)
    # Each image on its own: converting a subset gives the same rows.
    np.testing.assert_array_equal(raw_pixel_features(imgs[2:4]), f[2:4])
    assert raw_pixel_features(imgs[..., 0]).shape == (6, 20)


def test_raw_pixel_features_shrinks_large_images_and_takes_chunks():
    imgs = np.random.default_rng(8).integers(0, 256, size=(10, 96, 96, 3), dtype=np.uint8)
    f = raw_pixel_features(imgs)
    assert f.shape == (10, 32 * 32 * 3) and f.dtype == np.float32
    # 96 -> 32: each feature is the mean of a 3×3 block, then the image's mean is subtracted.
    blocks = imgs.reshape(10, 32, 3, 32, 3, 3).mean(axis=(2, 4)).reshape(10, -1) / 255.0
    np.testing.assert_allclose(f, blocks - blocks.mean(axis=1, keepdims=True), atol=1e-5)
    # A generator of chunks gives the same rows as the whole array.
    np.testing.assert_array_equal(raw_pixel_features(imgs[i:i + 3] for i in range(0, 10, 3)), f)
    # Longer side to 32, aspect kept; grayscale too.
    assert raw_pixel_features(imgs[:, :48, :, 0]).shape == (10, 16 * 32)
    # A constant image has no features left after centring.
    flat = np.full((2, 64, 64, 3), 77, dtype=np.uint8)
    np.testing.assert_allclose(raw_pixel_features(flat), 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        raw_pixel_features(iter([]))


def test_principal_components_fit_on_train_only():
    rng = np.random.default_rng(9)
    basis = np.linalg.qr(rng.normal(size=(300, 3)))[0].T          # three orthonormal directions
    train = (rng.normal(size=(500, 3)) * [10.0, 5.0, 2.0]) @ basis + 3.0 + rng.normal(size=(500, 300)) * 0.01
    test = rng.normal(size=(40, 300))
    tr, te = principal_components(train, test, dim=3)
    assert tr.shape == (500, 3) and te.shape == (40, 3) and tr.dtype == np.float32
    # The projection keeps the training variance along the three directions, largest first ...
    np.testing.assert_allclose(tr.std(axis=0), [10.0, 5.0, 2.0], rtol=0.1)
    # ... and the test set goes through the training mean and directions.
    centred = train - train.mean(axis=0)
    directions = np.linalg.lstsq(centred, tr, rcond=None)[0]
    np.testing.assert_allclose(te, (test - train.mean(axis=0)) @ directions, atol=1e-3)
    again = principal_components(train, test, dim=3)
    np.testing.assert_array_equal(again[0], tr)
    # Narrow features come back unprojected.
    np.testing.assert_array_equal(principal_components(train[:, :5], dim=8)[0], train[:, :5].astype(np.float32))
