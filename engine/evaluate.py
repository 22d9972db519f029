"""How good is a representation? kNN, linear probe and collapse metrics.

All functions take numpy arrays or torch tensors (on any device) and return
plain Python floats, so their results can cross a thread boundary or go into
the project file as they are.

* :func:`knn_accuracy` — the weighted kNN classifier of Wu et al. 2018
  (InstDisc) used by MoCo, SimSiam and lightly to monitor self-supervised
  training; ours, in torch, chunked over the test set.
* :func:`linear_probe_accuracy` — logistic regression on frozen, standardised
  features: scikit-learn's objective, fitted with torch's L-BFGS on the
  features' device (scikit-learn itself with ``backend="sklearn"``).
* :func:`collapse_metrics` — the SimSiam output-std monitor and RankMe's
  effective rank.
* :func:`raw_pixel_features` (at most 32×32 pixels an image) and
  :func:`principal_components` — the raw-pixel baseline, kept cheap.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "knn_predict",
    "knn_accuracy",
    "linear_probe_accuracy",
    "collapse_metrics",
    "evaluate_features",
    "raw_pixel_features",
    "principal_components",
]


# --------------------------------------------------------------------------- helpers

def _to_numpy(a, dtype=None) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype in (torch.float16, torch.bfloat16):
            a = a.float()
        a = a.numpy()
    a = np.asarray(a)
    return a.astype(dtype, copy=False) if dtype is not None else a


def _to_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


def _check_pair(x, y, what: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} feature rows but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{what}: no items")


# --------------------------------------------------------------------------- kNN

@torch.no_grad()
def knn_predict(train_x, train_y, test_x, k: int = 200, temperature: float = 0.1,
                n_classes: int | None = None, chunk: int = 1024,
                device: str | torch.device | None = None) -> np.ndarray:
    """Predicted class of every test item by weighted cosine kNN; see :func:`knn_accuracy`.

    Returns an int64 numpy array of length ``len(test_x)``. Ties between
    class scores go to the lowest class index.
    """
    _check_pair(train_x, train_y, "train")
    if len(test_x) == 0:
        return np.zeros(0, dtype=np.int64)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if device is None:
        device = train_x.device if isinstance(train_x, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)

    bank = F.normalize(_to_tensor(train_x, device, torch.float32).reshape(len(train_x), -1), dim=1)
    queries = _to_tensor(test_x, device, torch.float32).reshape(len(test_x), -1)
    bank_y = _to_tensor(train_y, device, torch.long).flatten()
    if bank.shape[1] != queries.shape[1]:
        raise ValueError(f"train features have {bank.shape[1]} dims, test features {queries.shape[1]}")
    if int(bank_y.min()) < 0:
        raise ValueError(f"labels must be non-negative integers, found {int(bank_y.min())}")
    if n_classes is None:
        n_classes = int(bank_y.max()) + 1
    elif int(bank_y.max()) >= n_classes:
        raise ValueError(f"a training label is >= n_classes={n_classes}")

    k = min(int(k), bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk], dim=1)
        sim = q @ bank.T                                    # (c, n_train) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)               # (c, k)
        weights = (top_sim / temperature).exp()
        # The one-hot scatter of lightly's knn_predict without materialising
        # (c, k, n_classes): add each neighbour's weight to its class's score.
        scores = torch.zeros(q.shape[0], n_classes, device=device, dtype=weights.dtype)
        scores.scatter_add_(1, bank_y[top_idx], weights)
        preds.append(scores.argmax(dim=1).cpu())
    return torch.cat(preds).numpy()


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 200, temperature: float = 0.1,
                 n_classes: int | None = None, chunk: int = 1024,
                 device: str | torch.device | None = None) -> float:
    """Weighted kNN accuracy with cosine similarity (Wu et al. 2018, §3.4).

    Features are l2-normalised; for each test item the ``k`` most similar
    training items vote for their class with weight ``exp(sim / temperature)``
    and the class with the largest summed weight is predicted. This is the
    monitor used by InstDisc, MoCo (k=200, T=0.1 in their code), SimSiam and
    lightly's ``knn_predict``.

    The test set is processed ``chunk`` rows at a time, so memory is
    ``chunk × n_train`` similarities (1024 × 60,000 floats ≈ 250 MB) however
    large the test set is. ``k`` is clipped to the number of training items.
    Labels are integers in ``[0, n_classes)``; ``n_classes`` defaults to the
    largest training label plus one.

    ``device``: where to compute; by default the device of ``train_x`` when it
    is a tensor, else the CPU.
    """
    _check_pair(test_x, test_y, "test")
    pred = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature,
                       n_classes=n_classes, chunk=chunk, device=device)
    return float(np.mean(pred == _to_numpy(test_y).reshape(-1)))


# --------------------------------------------------------------------------- linear probe

# Rows of standardised training features kept on the device in one piece; beyond
# this (1 GiB of float32) they stay on the CPU and every evaluation of the loss
# streams them through the device a piece at a time (same objective, same steps).
_PROBE_RESIDENT_ELEMENTS = 1 << 28
# Scores (classes × rows) computed at once: 256 MiB of float32.
_PROBE_SCORE_ELEMENTS = 1 << 26
# Features per piece on the CPU: 8 MiB of float32, to stay in cache between the two passes.
_PROBE_CPU_PIECE_ELEMENTS = 1 << 21


def linear_probe_accuracy(train_x, train_y, test_x, test_y, *, max_iter: int = 1000,
                          C: float = 1.0, seed: int = 0, device: str | torch.device | None = None,
                          backend: str = "torch", tol: float | None = None, history_size: int = 10,
                          chunk: int | None = None) -> float:
    """Accuracy of a linear classifier trained on frozen features.

    Features are standardised with the training set's mean and standard
    deviation (a constant feature keeps scale 1), then a multinomial logistic
    regression minimises ``C·Σ cross-entropy + ½‖W‖²`` (bias unpenalised) —
    scikit-learn's ``StandardScaler`` + ``LogisticRegression(C=C)``, the
    usual linear probe. Labels can be any non-negative integers (the classes
    are the distinct training labels; a test label never seen in training is
    always wrong). With a single training class every prediction is that class.

    ``backend="torch"`` (default) minimises that objective with full-batch
    ``torch.optim.LBFGS`` (strong-Wolfe line search, ``history_size``) in
    float32 on ``device`` — by default the device of ``train_x`` when it is a
    tensor, else the CPU. It starts from zero weights and draws nothing at
    random but the rows that estimate its preconditioner (with ``seed``), so
    the same call gives the same accuracy. It stops after ``max_iter``
    iterations or when the largest entry of the (preconditioned) gradient of
    the per-item objective ``mean CE + ‖W‖²/(2·C·n)`` is below ``tol``
    (default 1e-3). The loss and gradient are summed over pieces of ``chunk``
    rows: by default cache-sized on the CPU, the whole set on a GPU. Training
    sets of more than 2**28 feature values stay in CPU memory and go through
    the device a piece at a time at every step: the same objective and steps,
    with bounded device memory.

    ``backend="sklearn"`` runs scikit-learn itself (``tol`` default 1e-4, its
    own; ``seed`` is its random_state), for comparison in tests and
    bench/linear_probe.py; ``device``, ``history_size`` and ``chunk`` are
    ignored there.

    Why torch (issue 13): the probe used to be scikit-learn, fine at 10,000
    items but far too slow on 50,000 × 512 features on this 2-core CPU (SciPy's
    L-BFGS needs ~95 iterations there). The torch probe whitens the problem
    (see ``_probe_preconditioner``) so L-BFGS needs ~12 loss evaluations, stops
    at a looser gradient tolerance that does not move the accuracy, and
    computes the loss and gradient in cache-sized pieces. bench/linear_probe.py
    on CIFAR-10 features, 50,000 × 512, 10 classes, accuracy +0.15 points:
    0.5 s against scikit-learn's 7.0 s with two threads (0.6–0.7 s against
    4.9–10.3 s with one); but with two threads on a machine busy with other
    work, 8.4 s against 50.8 s — torch's threads wait for each other there
    (see engine/loop.py ``torch_threads``).
    On a GPU it runs where the features already are. A run that stops at
    ``max_iter`` is still a valid probe.
    """
    if backend not in ("torch", "sklearn"):
        raise ValueError(f"unknown backend {backend!r}; choose 'torch' or 'sklearn'")
    _check_pair(train_x, train_y, "train")
    _check_pair(test_x, test_y, "test")
    d_train = int(np.prod(train_x.shape[1:]))
    d_test = int(np.prod(test_x.shape[1:]))
    if d_train != d_test:
        raise ValueError(f"train features have {d_train} dims, test features {d_test}")
    ytr = _to_numpy(train_y).reshape(-1)
    yte = _to_numpy(test_y).reshape(-1)
    classes = np.unique(ytr)
    if len(classes) < 2:  # nothing to learn: every prediction is the one class seen
        return float(np.mean(yte == classes[0]))
    if backend == "sklearn":
        pred = _sklearn_probe(train_x, ytr, test_x, max_iter=max_iter, C=C, seed=seed,
                              tol=1e-4 if tol is None else tol)
    else:
        if device is None:
            device = train_x.device if isinstance(train_x, torch.Tensor) else torch.device("cpu")
        pred = classes[_torch_probe(train_x, np.searchsorted(classes, ytr), test_x, len(classes),
                                    device=torch.device(device), max_iter=max_iter, C=C,
                                    tol=1e-3 if tol is None else tol, history_size=history_size,
                                    chunk=chunk, seed=seed)]
    return float(np.mean(pred == yte))


def _sklearn_probe(train_x, ytr: np.ndarray, test_x, *, max_iter: int, C: float, seed: int,
                   tol: float) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr = _to_numpy(train_x, np.float32).reshape(len(train_x), -1)
    xte = _to_numpy(test_x, np.float32).reshape(len(test_x), -1)
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol, solver="lbfgs", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(xtr), ytr)
    return clf.predict(scaler.transform(xte))


def _torch_probe(train_x, ytr: np.ndarray, test_x, n_classes: int, *, device: torch.device,
                 max_iter: int, C: float, tol: float, history_size: int,
                 chunk: int | None, seed: int) -> np.ndarray:
    """Class indices predicted for ``test_x`` by the probe of :func:`linear_probe_accuracy`."""
    n = len(train_x)
    src = train_x.device if isinstance(train_x, torch.Tensor) else torch.device("cpu")
    xtr = _to_tensor(train_x, src, torch.float32).reshape(n, -1)
    d = xtr.shape[1]
    resident = n * d <= _PROBE_RESIDENT_ELEMENTS
    home = device if resident else torch.device("cpu")
    xtr = xtr.to(home)
    # Two plain passes: torch.var_mean down the columns took 3× as long on the CPU.
    mean = xtr.mean(dim=0)
    xs = xtr - mean
    del xtr
    std = xs.square().mean(dim=0).sqrt_()
    std = torch.where(std <= 1e-6 * mean.abs(), torch.ones_like(std), std)   # constant -> scale 1
    xs /= std
    if chunk is None:
        # Pieces bound the (K, rows) scores and, off the device, the rows moved per
        # step. On the CPU, small pieces: the second pass over a piece (its
        # gradient) reads it from cache, and scores under torch's grain size
        # (32,768 values) keep the elementwise steps out of thread pools, which
        # on a busy 2-core machine wait for each other at every step. For
        # 50,000 × 512: 25-30 ms a loss evaluation instead of 40-300 ms.
        if device.type == "cpu":
            chunk = max(256, min(_PROBE_CPU_PIECE_ELEMENTS // d, 32_768 // n_classes))
        else:
            chunk = min(n if resident else _PROBE_RESIDENT_ELEMENTS // d, _PROBE_SCORE_ELEMENTS // n_classes)
        chunk = max(1, chunk)
    pieces = []
    for i in range(0, n, chunk):
        y = torch.as_tensor(ytr[i:i + chunk], dtype=torch.long, device=device)[None]
        pieces.append((xs[i:i + chunk], y, torch.full(y.shape, -1.0, device=device)))
    precond = _probe_preconditioner(xs, device, seed)

    # L-BFGS moves v; the weights are w = precond @ v (see _probe_preconditioner).
    def weights(v):
        return v if precond is None else precond @ v

    v = torch.zeros(d, n_classes, device=device)
    b = torch.zeros(n_classes, device=device)
    v.grad, b.grad = torch.zeros_like(v), torch.zeros_like(b)
    opt = torch.optim.LBFGS([v, b], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4,
                            tolerance_grad=tol, tolerance_change=1e-9,
                            history_size=history_size, line_search_fn="strong_wolfe")
    l2 = 1.0 / (C * n)

    @torch.no_grad()
    def closure():
        # Loss and gradient written out rather than by autograd, with the scores
        # laid out class by item (K, m) and few passes over them: on the CPU,
        # autograd's x.T @ g and a softmax along rows of K=10 were each several
        # times slower than g @ x and a softmax down the K rows, and every extra
        # parallel region costs a lot on a busy 2-core machine.
        w = weights(v)
        grad_w = w * l2
        loss = 0.5 * l2 * float((w * w).sum())
        b.grad.zero_()
        for x, y, minus_one in pieces:
            x = x.to(device, non_blocking=True)
            logp = F.log_softmax(torch.addmm(b[:, None], w.T, x.T), dim=0)   # (K, m)
            loss -= float(logp.gather(0, y).sum()) / n
            g = logp.exp_().scatter_add_(0, y, minus_one)   # softmax minus the one-hot label
            grad_w.add_((g @ x).T, alpha=1.0 / n)
            b.grad.add_(g.sum(dim=1), alpha=1.0 / n)
        v.grad.copy_(grad_w if precond is None else precond.T @ grad_w)
        return loss

    opt.step(closure)

    with torch.no_grad():
        w = weights(v)
        mean, std = mean.to(device), std.to(device)
        preds = [(((_to_tensor(test_x[i:i + 65536], device, torch.float32).reshape(-1, d) - mean) / std) @ w + b)
                 .argmax(dim=1).cpu() for i in range(0, len(test_x), 65536)]
    return torch.cat(preds).numpy()


def _probe_preconditioner(xs: torch.Tensor, device: torch.device, seed: int) -> torch.Tensor | None:
    """``P = L^-T`` where ``L L^T = Σ + εI``, ``Σ`` the correlation matrix of the standardised features.

    The probe's weights are written ``w = P v`` and L-BFGS moves ``v``: the
    objective in ``w`` (and so its minimum) is unchanged, but in ``v`` the data
    term looks whitened (``P^T (Σ + εI) P = I``), so L-BFGS needs far fewer
    steps (on the benchmark's 50,000 × 512 CIFAR features: 95 → 21 loss
    evaluations at scikit-learn's tolerance, 12 at ours). ``Σ`` is estimated
    from at most 10,000 rows drawn with ``seed`` — a preconditioner need not be
    exact — and ``ε = 0.01`` keeps directions the sample barely sees from
    being blown up. A Cholesky factor rather than an eigendecomposition:
    MKL's threaded ``eigh`` took 7 s instead of 0.05 s on this busy 2-core
    machine. Worth it even for 32×32 raw pixels: 10,000 × 3,072 CIFAR-10
    pixels took 370 loss evaluations (47 s, one thread) without it, 14 with it
    (15 s, 11 of them for this d×d work; scikit-learn: 202 s). Above 4096
    features the d×d work would cost more than it saves: None (no preconditioner).
    """
    n, d = xs.shape
    if d > 4096:
        return None
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:10_000]
    sample = xs[rows.to(xs.device)].to(device)
    corr = (sample.T @ sample / len(sample)).double()
    chol = torch.linalg.cholesky(corr + 0.01 * torch.eye(d, dtype=corr.dtype, device=device))
    eye = torch.eye(d, dtype=corr.dtype, device=device)
    return torch.linalg.solve_triangular(chol, eye, upper=False).T.float().contiguous()


# --------------------------------------------------------------------------- collapse

def collapse_metrics(z) -> dict[str, float]:
    """Signs of representational collapse in a batch of embeddings ``z`` (n, d).

    * ``std``: mean over dimensions of the per-dimension standard deviation of
      the l2-normalised rows (SimSiam, Chen & He 2021, §4.1). About
      ``1/sqrt(d)`` when the outputs spread over the unit sphere, 0 when every
      row is the same.
    * ``std_ratio``: ``std * sqrt(d)`` — about 1 healthy, towards 0 collapsed.
    * ``effective_rank``: RankMe (Garrido et al. 2023), ``exp(H(p))`` with
      ``p = σ / ‖σ‖₁`` the normalised singular values of the centred ``z``.
      Between 1 and ``min(n, d)``; 0 when the centred ``z`` is (numerically)
      zero, i.e. all rows identical — a complete collapse has no dimension.
    * ``rank_ratio``: ``effective_rank / min(n, d)``.

    The standard deviation uses the population formula (no n−1), so a single
    row gives 0 rather than NaN. Computed in float64 on the CPU.
    """
    z = _to_numpy(z, np.float64)
    if z.ndim != 2:
        z = z.reshape(len(z), -1)
    n, d = z.shape
    if n == 0 or d == 0:
        return {"std": 0.0, "std_ratio": 0.0, "effective_rank": 0.0, "rank_ratio": 0.0}

    norms = np.linalg.norm(z, axis=1, keepdims=True)
    zn = z / np.maximum(norms, 1e-12)
    std = float(zn.std(axis=0).mean())

    zc = z - z.mean(axis=0, keepdims=True)
    # Singular values from the eigenvalues of the smaller Gram matrix: n·d·min
    # work instead of a full SVD, and precise enough in float64.
    gram = zc.T @ zc if d <= n else zc @ zc.T
    sigma = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
    scale = float(np.linalg.norm(z))  # Frobenius norm of the uncentred data
    total = float(sigma.sum())
    if total <= 1e-9 * max(scale, 1e-30) or total == 0.0:
        erank = 0.0
    else:
        p = sigma / total
        p = p[p > 0]
        erank = float(np.exp(-(p * np.log(p)).sum()))
    return {
        "std": std,
        "std_ratio": std * math.sqrt(d),
        "effective_rank": erank,
        "rank_ratio": erank / min(n, d),
    }


# --------------------------------------------------------------------------- convenience

def evaluate_features(train_x, train_y, test_x, test_y, *, prefix: str = "", k: int = 200,
                      which: Sequence[str] = ("knn", "linear")) -> dict[str, float]:
    """Run the chosen evaluations; e.g. ``{"raw_knn": 0.91, "raw_linear": 0.93}``.

    ``which`` holds any of ``"knn"`` (:func:`knn_accuracy` with ``k``) and
    ``"linear"`` (:func:`linear_probe_accuracy`).
    """
    unknown = set(which) - {"knn", "linear"}
    if unknown:
        raise ValueError(f"unknown evaluation(s) {sorted(unknown)}; choose from 'knn', 'linear'")
    out: dict[str, float] = {}
    if "knn" in which:
        out[prefix + "knn"] = knn_accuracy(train_x, train_y, test_x, test_y, k=k)
    if "linear" in which:
        out[prefix + "linear"] = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    return out


# Raw-pixel baselines see images at most this many pixels on a side.
RAW_PIXEL_SIDE = 32


def raw_pixel_features(images) -> np.ndarray:
    """Pixels as features, the baseline every representation must beat.

    ``(N, H, W, C)`` (or ``(N, H, W)``) → ``(N, h*w*C)`` float32: integer
    images are divided by 255 (float images are taken to be in [0, 1]
    already), then each image has its own mean subtracted. Centring per image
    rather than by a data-set mean keeps the features a function of each image
    alone, so train and test can be converted separately and agree; it makes
    the cosine similarity of the kNN a correlation between images.

    Images up to 32×32 keep every pixel (h, w = H, W). Larger ones are shrunk
    so that their longer side is 32 (square images to 32×32), each new pixel
    the mean of the pixels it covers (torch's "area" resize), so the baseline
    costs at most 32·32·C features per image at any image size.

    ``images`` is an array or tensor, or an iterable of such chunks of equal
    image size (e.g. a generator reading a large collection piece by piece):
    the result is the same as for the chunks stacked, and memory stays about
    the size of the result. To cut the dimension further, see
    :func:`principal_components`.
    """
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return _raw_pixels(images)
    parts = [_raw_pixels(chunk) for chunk in images]
    if not parts:
        raise ValueError("raw_pixel_features: no images")
    return np.concatenate(parts)


def _raw_pixels(images) -> np.ndarray:
    x = _to_numpy(images)
    n = x.shape[0]
    integer = np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_
    h, w = x.shape[1:3]
    if max(h, w) <= RAW_PIXEL_SIDE:
        if integer:
            feats = x.reshape(n, -1).astype(np.float32) / np.float32(255.0)
        else:
            feats = x.reshape(n, -1).astype(np.float32)
    else:
        scale = RAW_PIXEL_SIDE / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        channels = x.shape[3] if x.ndim == 4 else 1
        feats = np.empty((n, size[0] * size[1] * channels), dtype=np.float32)
        # 256 images at a time, so the float copy of a chunk of big images stays small.
        for i in range(0, n, 256):
            part = torch.from_numpy(np.ascontiguousarray(x[i:i + 256])).reshape(-1, h, w, channels)
            part = part.permute(0, 3, 1, 2).float()
            if integer:
                part /= 255.0
            small = F.interpolate(part, size=size, mode="area")
            feats[i:i + 256] = small.permute(0, 2, 3, 1).reshape(len(part), -1).numpy()   # H, W, C order
    if feats.shape[1]:
        feats -= feats.mean(axis=1, keepdims=True)
    return feats


def principal_components(train_x, *others, dim: int = 256, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``train_x`` and each of ``others`` projected on the first ``dim`` principal components of ``train_x``.

    Fitted on the training features only (their mean and top directions,
    from ``torch.pca_lowrank`` on at most 20,000 rows drawn with ``seed`` —
    plenty to find 256 directions), then applied to every array given, e.g.
    ``tr, te = principal_components(raw[train], raw[test])``. Makes the
    raw-pixel probes cheap on wide images: 3,072 → 256 features. Features
    that already have at most ``dim`` dimensions come back as float32,
    unprojected. Returns float32 arrays, one per input.
    """
    xtr = torch.from_numpy(_to_numpy(train_x, np.float32).reshape(len(train_x), -1))
    rest = [torch.from_numpy(_to_numpy(o, np.float32).reshape(len(o), -1)) for o in others]
    n, d = xtr.shape
    if d <= dim:
        return tuple(t.numpy() for t in (xtr, *rest))
    gen = torch.Generator().manual_seed(seed)
    sample = xtr[torch.randperm(n, generator=gen)[:20_000]] if n > 20_000 else xtr
    mean = sample.mean(dim=0)
    q = min(dim + 10, *sample.shape)           # a few extra directions make the top ones accurate
    with torch.random.fork_rng(devices=[]):    # pca_lowrank draws from the global generator
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(sample - mean, q=q, center=False)
    v = v[:, :dim]
    return tuple(((t - mean) @ v).numpy() for t in (xtr, *rest))
