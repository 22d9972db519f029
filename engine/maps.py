"""2-D maps of embeddings: PCA at once, UMAP when numba has compiled.

umap-learn compiles its numba kernels on first use in every new process
(12–55 s here), so this module never imports it at module level: the GUI
shows :func:`pca_2d` immediately, calls :func:`warm_up_umap_in_background`
early, and computes :func:`umap_2d` in a worker thread. Before umap (and so
numba) is first imported, ``NUMBA_CACHE_DIR`` is pointed at a writable cache
folder so that kernels compiled with ``cache=True`` are reused by later
processes.

All UMAP fits in a process are serialised by one lock: numba's default
"workqueue" threading layer aborts the whole process when two threads run
parallel kernels at the same time, and a warm-up thread plus a map worker
would do exactly that.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["pca_2d", "umap_2d", "project", "normalise_coords", "warm_up_umap_in_background"]

Progress = Callable[[float, str], None]

_UMAP_LOCK = threading.Lock()
_WARM_UP: threading.Thread | None = None
_WARM_UP_GUARD = threading.Lock()


# --------------------------------------------------------------------------- PCA

def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components' scores, ``(n, d) → (n, 2)`` float32.

    scikit-learn's ``PCA`` with ``svd_solver="auto"`` (covariance eigh when
    n ≫ d, randomised SVD for wide data) and a fixed ``random_state``, so the
    result is deterministic. Each axis's sign is then fixed so that the
    component's largest-magnitude loading is positive (what recent
    scikit-learn does too), so maps do not flip between versions or runs.
    Fewer than two samples or dimensions leave the missing axes at zero.
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    x = x.reshape(n, -1) if n else x.reshape(0, int(np.prod(x.shape[1:], dtype=np.int64)))
    d = x.shape[1]
    out = np.zeros((n, 2), dtype=np.float32)
    n_comp = min(2, n - 1, d)   # n points span at most n−1 directions
    if n_comp < 1:
        return out
    from sklearn.decomposition import PCA

    # Centre first (mean in float64): scikit-learn's covariance solver forms
    # XᵀX − n·μμᵀ, which loses float32 precision when the data sit far from 0.
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    pca = PCA(n_components=n_comp, svd_solver="auto", random_state=0).fit(x)
    comps = pca.components_.astype(np.float32)             # (n_comp, d)
    biggest = np.abs(comps).argmax(axis=1)
    signs = np.sign(comps[np.arange(n_comp), biggest])
    signs[signs == 0] = 1
    comps *= signs[:, None]
    out[:, :n_comp] = x @ comps.T
    return out


# --------------------------------------------------------------------------- UMAP

def numba_cache_dir() -> str:
    """Point numba's on-disk cache at a writable folder unless the user chose one."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        return chosen
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    for candidate in (Path(base) / "pretext" / "numba",
                      Path(tempfile.gettempdir()) / "pretext-numba"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                break
        except OSError:
            continue
    os.environ["NUMBA_CACHE_DIR"] = str(candidate)
    if "numba" in sys.modules:  # imported already by someone else: make it re-read the variable
        try:
            sys.modules["numba"].core.config.reload_config()
        except Exception:  # pragma: no cover - best effort only
            pass
    return str(candidate)


def _import_umap():
    numba_cache_dir()
    try:
        import umap  # noqa: PLC0415 - deliberately lazy: importing compiles numba code
    except ImportError as exc:
        raise ImportError("UMAP maps need the umap-learn package (pip install umap-learn); "
                          "PCA maps work without it") from exc
    return umap


class _TqdmProgress:
    """A file for tqdm that turns umap's epoch bar into ``progress`` calls.

    umap-learn reports the layout optimisation only through tqdm; we ask tqdm
    for the bare ``"n total"`` and parse that. An exception raised by the
    callback propagates out of ``fit`` and so cancels the map.
    """

    def __init__(self, progress: Progress, start: float = 0.3):
        self.progress = progress
        self.start = start

    def write(self, s: str) -> int:
        parts = s.strip().split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            done, total = int(parts[0]), max(int(parts[1]), 1)
            self.progress(self.start + (1.0 - self.start) * done / total,
                          f"optimising layout, epoch {done}/{total}")
        return len(s)

    def flush(self) -> None:
        pass


# For these metrics (distances as umap-learn and pynndescent define them) the
# neighbour graph is computed exactly with torch: always on a GPU, and on the
# CPU up to _EXACT_CPU_WORK multiply-adds (n²·d; 20,000 points × 500 dims,
# about 8 s on 2 cores, less than NN-descent's compile alone). Beyond that, or
# for other metrics, umap-learn's own NN-descent runs.
_EXACT_METRICS = ("cosine", "euclidean")
_EXACT_CPU_WORK = 2.0e11


def _use_exact_knn(n: int, d: int, metric: str, device: str) -> bool:
    if metric not in _EXACT_METRICS:
        return False
    return device != "cpu" or float(n) * n * d <= _EXACT_CPU_WORK


def _knn_graph(x: np.ndarray, k: int, metric: str, device: str = "cpu", chunk: int = 1024,
               progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row (itself first), as umap-learn wants them.

    Returns ``(indices int32, distances float32)``, both ``(n, k)``: cosine
    distance ``1 − cos`` or euclidean distance. Chunked over rows, so memory
    is ``chunk × n`` similarities.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    n = x.shape[0]
    xt = torch.from_numpy(x).to(device)
    if metric == "cosine":
        xt = F.normalize(xt, dim=1)
    sq = (xt * xt).sum(dim=1)
    indices = np.empty((n, k), dtype=np.int32)
    dists = np.empty((n, k), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, chunk):
            q = xt[start:start + chunk]
            rows = torch.arange(q.shape[0], device=xt.device)
            if metric == "cosine":
                score = q @ xt.T                                   # similarity: larger is nearer
            else:
                score = 2 * (q @ xt.T) - sq[None, :]               # −‖q−x‖² + ‖q‖²
            score[rows, start + rows] = float("inf")               # each point is its own first neighbour
            top, idx = score.topk(k, dim=1)
            if metric == "cosine":
                dist = (1.0 - top).clamp_(0.0, 2.0)
            else:
                dist = (sq[start:start + chunk, None] - top).clamp_(min=0.0).sqrt_()
            dist[:, 0] = 0.0
            indices[start:start + chunk] = idx.cpu().numpy()
            dists[start:start + chunk] = dist.cpu().numpy()
            if progress is not None:
                progress(0.2 * min(start + chunk, n) / n, "finding nearest neighbours")
    return indices, dists


def _default_device() -> str:
    try:
        import torch  # noqa: PLC0415

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover
        return "cpu"


def umap_2d(x: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
            seed: int | None = 0, init=None, progress: Progress | None = None) -> np.ndarray:
    """UMAP (McInnes et al. 2018, umap-learn) of ``x`` (n, d) to ``(n, 2)`` float32.

    * ``seed`` set: deterministic (umap-learn then runs single-threaded);
      ``None``: all cores and not reproducible.
    * ``init``: ``None`` for umap's spectral initialisation, a umap init name
      (``"spectral"``, ``"pca"``, ``"random"``), or an ``(n, 2)`` array — e.g.
      the previous epoch's map, so that a timeline of maps stays aligned.
    * ``progress(fraction, message)`` is called with a fraction in [0, 1]:
      0–0.2 while the neighbour graph is built, 0.3–1 through the layout
      epochs, 1 at the end. Raise from it to cancel.
    * Tiny inputs: ``n_neighbors`` is reduced to ``n − 1`` when there are not
      enough points; with fewer than 4 points (too few for UMAP's graph and
      spectral layout) the result is :func:`pca_2d`.

    For the cosine and euclidean metrics the neighbour graph is computed
    exactly with torch (GPU when there is one) and handed to umap-learn as
    ``precomputed_knn``, unless that is too much work for the CPU (see
    ``_EXACT_CPU_WORK``). That skips pynndescent's NN-descent, whose numba
    code cannot be cached and takes most of the 12–55 s first-call compile.

    The first call in a process still compiles some numba code (see the
    module notes); fits from several threads run one at a time.
    """
    return _umap(x, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed,
                 init=init, progress=progress)


def _umap(x, *, n_neighbors, min_dist, metric, seed, init, progress, n_epochs=None,
          device: str | None = None, exact: bool | None = None) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    n, d = x.shape
    if progress is not None:
        progress(0.0, "finding nearest neighbours")
    if n < 4:
        out = pca_2d(x)
        if progress is not None:
            progress(1.0, "done (too few points for UMAP: PCA)")
        return out
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be at least 2, got {n_neighbors}")
    n_neighbors = min(int(n_neighbors), n - 1)

    init_arg = "spectral" if init is None else init
    if not isinstance(init_arg, str):
        init_arg = np.asarray(init_arg, dtype=np.float32)
        if init_arg.shape != (n, 2):
            raise ValueError(f"init must have shape ({n}, 2), got {init_arg.shape}")
        if not np.isfinite(init_arg).all():
            raise ValueError("init contains NaN or infinite values")
    elif n <= n_neighbors + 2 and init_arg == "spectral":
        # The spectral layout needs more points than components + 1 and a
        # connected graph; on a handful of points PCA is the safer start.
        init_arg = "pca"

    device = device or _default_device()
    if exact is None:
        exact = _use_exact_knn(n, d, metric, device)
    precomputed = (None, None, None)
    if exact:
        knn_i, knn_d = _knn_graph(x, n_neighbors, metric, device, progress=progress)
        precomputed = (knn_i, knn_d, None)

    umap = _import_umap()
    tqdm_kwds = None
    if progress is not None:
        tqdm_kwds = {"disable": False, "file": _TqdmProgress(progress), "bar_format": "{n} {total}\n",
                     "mininterval": 0.1}
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        init=init_arg,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
        n_epochs=n_epochs,
        precomputed_knn=precomputed,
        tqdm_kwds=tqdm_kwds,
        verbose=False,
    )
    with _UMAP_LOCK, warnings.catch_warnings():
        # Without a search index umap warns that transform() is unavailable; we never call it.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        emb = reducer.fit_transform(x)
    if progress is not None:
        progress(1.0, "done")
    return np.ascontiguousarray(emb, dtype=np.float32)


def project(x, kind: str, **params) -> np.ndarray:
    """``kind`` ``"pca"`` → :func:`pca_2d`; ``"umap"`` → :func:`umap_2d` with ``params``."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    kind = kind.lower()
    if kind == "pca":
        if params:
            raise TypeError(f"pca takes no parameters, got {sorted(params)}")
        return pca_2d(x)
    if kind == "umap":
        return umap_2d(x, **params)
    raise ValueError(f"unknown projection {kind!r}; choose 'pca' or 'umap'")


def normalise_coords(c) -> np.ndarray:
    """Centre a map on its middle and scale it to about [-1, 1] for drawing.

    The middle is the midpoint of the 1st and 99th percentiles and the scale
    the larger half-range between them (the same for both axes, so shapes are
    not distorted), so a few far outliers do not squash the rest of the map;
    they fall a little outside [-1, 1]. NaNs stay NaN; an empty or single-point
    map becomes zeros.
    """
    c = np.asarray(c, dtype=np.float32)
    if c.size == 0:
        return c.copy()
    finite = c[np.isfinite(c).all(axis=1)] if c.ndim == 2 else c[np.isfinite(c)]
    if len(finite) == 0:
        return c.copy()
    lo = np.percentile(finite, 1, axis=0)
    hi = np.percentile(finite, 99, axis=0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2
    if not np.isfinite(half) or half <= 0:
        half = float(np.max(np.abs(finite - centre))) if len(finite) else 0.0
    out = c - centre
    if half > 0:
        out = out / half
    return out.astype(np.float32)


def warm_up_umap_in_background() -> threading.Thread:
    """Import umap and fit a tiny data set in a daemon thread, so numba compiles early.

    Covers the code path of maps computed with the exact neighbour graph (up
    to about 20,000 points of 500 dims on the CPU, any size on a GPU): the
    fuzzy simplicial set, the spectral initialisation and the layout
    optimiser. Started once per process; later calls return the same thread.
    Failures are swallowed (the real fit will raise them where they can be
    shown). A map requested meanwhile waits for the warm-up to finish, which
    is no slower than compiling itself.
    """
    global _WARM_UP
    with _WARM_UP_GUARD:
        if _WARM_UP is not None:
            return _WARM_UP

        def work() -> None:
            try:
                rng = np.random.default_rng(0)
                data = rng.normal(size=(64, 8)).astype(np.float32)
                # The path of maps with an exact graph (most maps). NN-descent,
                # which only larger maps on the CPU use, is not warmed: its compile
                # takes most of a minute of both cores and would hold the UMAP lock.
                _umap(data, n_neighbors=10, min_dist=0.1, metric="cosine", seed=0, init=None,
                      progress=None, n_epochs=20)
            except Exception:  # pragma: no cover - a warm-up is only an optimisation
                pass

        _WARM_UP = threading.Thread(target=work, name="umap-warm-up", daemon=True)
        _WARM_UP.start()
        return _WARM_UP
