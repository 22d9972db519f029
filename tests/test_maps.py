"""engine/maps.py: PCA against scikit-learn, UMAP on separated blobs, drawing coordinates."""
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from engine import maps
from engine.maps import normalise_coords, pca_2d, project, umap_2d, warm_up_umap_in_background

ROOT = Path(__file__).resolve().parents[1]


def three_blobs(seed=0, n=100, dim=32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 5
    y = np.repeat(np.arange(3), n)
    return (centres[y] + rng.normal(size=(3 * n, dim))).astype(np.float32), y


def loo_knn_2d(coords, y):
    """Euclidean 5-NN accuracy in the map, 5-fold cross-validated."""
    return cross_val_score(KNeighborsClassifier(5), coords, y, cv=5).mean()


# --------------------------------------------------------------------------- PCA

def test_pca_matches_sklearn_up_to_sign():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 40)) * np.linspace(5, 0.1, 40)).astype(np.float32)
    ours = pca_2d(x)
    ref = PCA(n_components=2, svd_solver="full").fit_transform(x.astype(np.float64))
    assert ours.shape == (500, 2) and ours.dtype == np.float32
    for j in range(2):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], atol=1e-3 * np.abs(ref[:, j]).max())


def test_pca_is_deterministic_with_a_fixed_sign():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 10)) * [5, 3, 1, 1, 1, 1, 1, 1, 1, 1]
    a = pca_2d(x)
    np.testing.assert_array_equal(a, pca_2d(x))
    perm = rng.permutation(300)
    np.testing.assert_allclose(pca_2d(x[perm]), a[perm], atol=1e-4)   # sign does not follow row order
    np.testing.assert_allclose(pca_2d(-x), -a, atol=1e-4)              # loadings fixed, scores follow data
    np.testing.assert_allclose(pca_2d(x + 100.0), a, atol=1e-3)        # centred


def test_pca_tiny_inputs():
    assert pca_2d(np.zeros((0, 5))).shape == (0, 2)
    np.testing.assert_array_equal(pca_2d(np.ones((1, 5))), np.zeros((1, 2)))
    two = pca_2d(np.array([[0.0, 0.0], [2.0, 0.0]]))
    np.testing.assert_allclose(np.abs(two[:, 0]), [1, 1], atol=1e-6)
    np.testing.assert_array_equal(two[:, 1], [0, 0])
    one_dim = pca_2d(np.arange(6.0)[:, None])
    np.testing.assert_allclose(np.abs(one_dim[:, 0]), np.abs(np.arange(6.0) - 2.5), atol=1e-5)
    np.testing.assert_array_equal(one_dim[:, 1], 0)


# --------------------------------------------------------------------------- drawing, dispatch

def test_normalise_coords():
    rng = np.random.default_rng(2)
    c = rng.uniform(size=(1000, 2)) * [40, 10] + [100, -7]
    n = normalise_coords(c)
    assert n.dtype == np.float32
    assert np.abs(n).max() < 1.1 and np.abs(n[:, 0]).max() > 0.9
    np.testing.assert_allclose(np.percentile(n, [1, 99], axis=0).mean(axis=0), 0, atol=1e-6)
    spread = np.percentile(n, 99, axis=0) - np.percentile(n, 1, axis=0)
    assert spread[0] / spread[1] == pytest.approx(4.0, rel=0.05)           # aspect kept
    # one far outlier does not squash the rest
    c[0] = [1e6, 1e6]
    assert np.abs(normalise_coords(c)[1:]).max() < 1.1
    np.testing.assert_array_equal(normalise_coords(np.full((5, 2), 3.0)), 0)
    assert normalise_coords(np.zeros((0, 2))).shape == (0, 2)


def test_project_dispatches():
    x = np.random.default_rng(3).normal(size=(50, 6))
    np.testing.assert_array_equal(project(x, "pca"), pca_2d(x))
    with pytest.raises(ValueError):
        project(x, "tsne")
    # fewer than 4 points: UMAP falls back to PCA without importing umap
    np.testing.assert_array_equal(project(x[:3], "umap"), pca_2d(x[:3]))


def test_umap_is_not_imported_at_module_import():
    code = ("import sys, engine.maps, engine.evaluate; "
            "assert 'umap' not in sys.modules and 'numba' not in sys.modules; "
            "assert not any(m.startswith('PySide6') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_numba_cache_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delitem(sys.modules, "numba", raising=False)   # no live numba config to reload
    assert maps.numba_cache_dir() == str(tmp_path / "pretext" / "numba")
    assert (tmp_path / "pretext" / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    assert maps.numba_cache_dir() == "/somewhere/else"


# --------------------------------------------------------------------------- UMAP

@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_graph_matches_sklearn(metric):
    x, _ = three_blobs(seed=4, n=40, dim=8)
    idx, dist = maps._knn_graph(x, 6, metric, chunk=17)
    ref_d, ref_i = NearestNeighbors(n_neighbors=6, metric=metric).fit(x).kneighbors(x)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(x)))       # itself first, at distance 0
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(ref_i, axis=1))
    np.testing.assert_allclose(dist, ref_d, atol=2e-3 if metric == "euclidean" else 1e-5)


def test_exact_graph_is_used_within_the_cpu_budget():
    assert maps._use_exact_knn(10_000, 512, "cosine", "cpu")
    assert not maps._use_exact_knn(60_000, 512, "cosine", "cpu")
    assert maps._use_exact_knn(60_000, 512, "euclidean", "cuda")
    assert not maps._use_exact_knn(100, 8, "manhattan", "cuda")


def test_warm_up_then_umap_separates_blobs_deterministically():
    pytest.importorskip("umap")
    thread = warm_up_umap_in_background()
    assert isinstance(thread, threading.Thread) and thread.daemon
    assert warm_up_umap_in_background() is thread
    thread.join(timeout=240)          # compiles numba code (cached between runs)
    assert not thread.is_alive()

    x, y = three_blobs()
    calls = []
    a = umap_2d(x, seed=0, progress=lambda f, msg: calls.append((f, msg)))
    assert a.shape == (300, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert loo_knn_2d(a, y) == 1.0
    # the three clusters are apart: nearest centroid of another cluster is far
    cents = np.stack([a[y == c].mean(axis=0) for c in range(3)])
    radius = max(np.linalg.norm(a[y == c] - cents[c], axis=1).max() for c in range(3))
    gaps = [np.linalg.norm(cents[i] - cents[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > radius

    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any("epoch" in msg for _, msg in calls)

    np.testing.assert_array_equal(umap_2d(x, seed=0), a)             # same seed, same map

    # An earlier map as init keeps the clusters where they were (aligned timelines).
    b = umap_2d(x + 0.05 * np.random.default_rng(1).normal(size=x.shape), seed=1, init=a)
    a_n, b_n = normalise_coords(a), normalise_coords(b)
    cents_a = np.stack([a_n[y == c].mean(axis=0) for c in range(3)])
    cents_b = np.stack([b_n[y == c].mean(axis=0) for c in range(3)])
    nearest = np.linalg.norm(cents_b[:, None] - cents_a[None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(nearest, [0, 1, 2])


def test_umap_small_inputs_and_bad_init():
    pytest.importorskip("umap")
    x, _ = three_blobs(seed=5, n=2, dim=6)   # 6 points, fewer than n_neighbors + 1
    out = umap_2d(x, n_neighbors=15, seed=0)
    assert out.shape == (6, 2) and np.isfinite(out).all()
    with pytest.raises(ValueError):
        umap_2d(x, init=np.zeros((5, 2)))
