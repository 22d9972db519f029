"""Which images to label: pick ``budget`` items from a run's embedding, before any label is known.

``select(vectors, budget, strategy, seed)`` returns positions into ``vectors`` (sorted):

- ``"random"``: ``budget`` positions drawn uniformly without replacement (seeded).
- ``"kcenter"``: k-center greedy (Sener & Savarese, "Active learning for convolutional neural
  networks: a core-set approach", ICLR 2018). Starting from one seeded random point, add the
  point farthest from everything chosen so far, ``budget - 1`` times: the chosen set covers the
  data, i.e. the largest distance from any point to its nearest chosen point is kept small.
  Euclidean distance on L2-normalised vectors (the same order as cosine distance). Each step
  is one pass over the vectors in pieces of ``CHUNK_ROWS`` rows, so 100,000 × 512 needs the
  vectors themselves plus one distance per point.
- ``"typiclust"``: TypiClust (Hacohen, Dekel & Weinshall, "Active learning on a budget:
  opposite strategies suit high and low budgets", ICML 2022). k-means into ``budget`` clusters
  on the L2-normalised vectors (scikit-learn's KMeans up to 50 clusters, MiniBatchKMeans
  above, as the paper's code does); then, largest uncovered cluster first, the most typical
  point of each cluster, typicality = 1 / mean distance to its ``TYPICALITY_K`` = 20 nearest
  neighbours. As in the paper's code, the neighbours are looked up within the point's own
  cluster (``min(20, size - 1)`` of them): that costs cluster-size² distances rather than n²,
  and the point of a cluster with the most close neighbours is the same in nearly every case.
  If k-means leaves fewer non-empty clusters than ``budget``, the remaining picks go again to
  the clusters holding the fewest picks (largest first).

The seed changes only what is random in a strategy: the points themselves for random, the
first centre for kcenter, k-means' initialisation for typiclust.

:func:`export_selection_csv` writes the chosen items' file names, one a line, for whoever
labels them.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

STRATEGIES = ("random", "kcenter", "typiclust")
#: Neighbours whose mean distance defines a point's typicality (the paper's k).
TYPICALITY_K = 20
#: Rows of vectors per piece in the distance passes.
CHUNK_ROWS = 16384


def _normalised(vectors) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    if x.dim() != 2:
        raise ValueError(f"expected vectors of shape (n, d), got {tuple(x.shape)}")
    return torch.nn.functional.normalize(x, dim=1)


def select(vectors, budget: int, strategy: str = "random", seed: int = 0) -> np.ndarray:
    """Positions (sorted int64) of the ``budget`` items of ``vectors`` (n, d) to label."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection {strategy!r}; choose from {', '.join(STRATEGIES)}")
    n = len(vectors)
    budget = int(budget)
    if budget < 1:
        raise ValueError(f"the labelling budget must be at least 1, got {budget}")
    if budget > n:
        raise ValueError(f"cannot select {budget} items from {n}")
    if strategy == "random":
        picked = np.random.default_rng(seed).choice(n, size=budget, replace=False)
    elif strategy == "kcenter":
        picked = kcenter_greedy(_normalised(vectors), budget, seed)
    else:
        picked = typiclust(_normalised(vectors), budget, seed)
    return np.sort(np.asarray(picked, dtype=np.int64))


def _sq_distances_to(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of every row of unit vectors ``x`` to the unit vector ``centre``."""
    out = torch.empty(len(x))
    for start in range(0, len(x), CHUNK_ROWS):
        part = x[start:start + CHUNK_ROWS]
        out[start:start + CHUNK_ROWS] = (2.0 - 2.0 * (part @ centre)).clamp_(min=0.0)
    return out


def kcenter_greedy(x: torch.Tensor, budget: int, seed: int = 0) -> np.ndarray:
    """k-center greedy on unit vectors ``x``: positions in the order chosen."""
    first = int(np.random.default_rng(seed).integers(len(x)))
    picked = [first]
    nearest = _sq_distances_to(x, x[first])     # squared distance to the nearest chosen point
    for _ in range(budget - 1):
        nearest[picked[-1]] = -1.0                 # never pick a point twice (duplicates sit at 0)
        nxt = int(nearest.argmax())
        picked.append(nxt)
        nearest = torch.minimum(nearest, _sq_distances_to(x, x[nxt]))
    return np.asarray(picked, dtype=np.int64)


def coverage_radius(vectors, positions) -> float:
    """The largest distance from any item to its nearest selected item (L2-normalised
    vectors): what k-center greedy keeps small."""
    x = _normalised(vectors)
    nearest = torch.full((len(x),), float("inf"))
    for p in np.asarray(positions):
        nearest = torch.minimum(nearest, _sq_distances_to(x, x[int(p)]))
    return float(nearest.max().sqrt())


def _kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    if k <= 50:
        km = KMeans(n_clusters=k, n_init=1, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed, batch_size=max(1024, 4 * k))
    return km.fit_predict(x)


def typicality(x: torch.Tensor, k: int = TYPICALITY_K) -> torch.Tensor:
    """1 / mean distance to the ``k`` nearest other rows of ``x`` (unit vectors); a single
    row gets typicality inf (nothing near it disagrees)."""
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return torch.full((n,), float("inf"))
    out = torch.empty(n)
    for start in range(0, n, 1024):
        d2 = (2.0 - 2.0 * (x[start:start + 1024] @ x.T)).clamp_(min=0.0)
        # The k+1 smallest include the point itself (distance 0): drop it.
        near = d2.topk(k + 1, dim=1, largest=False).values[:, 1:].sqrt()
        out[start:start + 1024] = 1.0 / near.mean(dim=1).clamp_(min=1e-12)
    return out


def typiclust(x: torch.Tensor, budget: int, seed: int = 0) -> np.ndarray:
    """TypiClust on unit vectors ``x``: positions in the order chosen."""
    labels = _kmeans_labels(x.numpy(), budget, seed)
    members = [np.flatnonzero(labels == c) for c in range(budget)]
    members = [m for m in members if len(m)]
    # Each cluster's points, most typical first (ties: lower position first, for determinism).
    ranked = []
    for m in members:
        t = typicality(x[torch.from_numpy(m)]).numpy()
        ranked.append(m[np.lexsort((m, -t))])
    taken = [0] * len(members)
    picked: list[int] = []
    while len(picked) < budget:
        # The largest cluster among those with the fewest picks and points left.
        open_ = [c for c in range(len(members)) if taken[c] < len(members[c])]
        c = min(open_, key=lambda c: (taken[c], -len(members[c]), c))
        picked.append(int(ranked[c][taken[c]]))
        taken[c] += 1
    return np.asarray(picked, dtype=np.int64)


def export_selection_csv(path: str | Path, item_names, positions) -> Path:
    """Write the file names of the selected items (``item_names[p]`` for each position),
    one a row under a ``name`` header; returns the path."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name"])
        for p in np.asarray(positions, dtype=np.int64):
            w.writerow([item_names[int(p)] if item_names is not None else str(int(p))])
    return path
