"""The Map view's data: a finished run's embeddings, their 2-D maps, k-means
clusters, lasso selection and the timeline of how the map formed (Qt-free; the
GUI calls these on worker threads).

The timeline: the run stores the embeddings of a fixed sample at every
evaluation ("timeline" sets); each one is mapped with PCA and rotated/reflected
onto the previous frame (orthogonal Procrustes), so that the frames differ only
by what training changed, not by an arbitrary rotation of the axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..maps import normalise_coords, pca_2d
from ..workbench import cluster_embeddings, compute_map, final_embeddings, item_captions, item_names, load_dataset


@dataclass(frozen=True)
class MapData:
    """Everything the Map view shows of one run."""
    run_id: int
    run: Any                          #: the run's record
    embedding_id: int                 #: its final embedding set
    split: str                        #: that set's split: "all", or "sentences" (masked language model)
    ids: np.ndarray                   #: (n,) item id of each point
    vectors: np.ndarray               #: (n, d) the embeddings
    unit: np.ndarray                  #: (n, d) the same, l2-normalised (for cosine neighbours)
    #: kind ("pca", "umap") → (projection id or None when not stored, (n, 2) coords); the latest
    #: of each kind. Mutable on purpose: the view adds UMAP once it is computed.
    projections: dict[str, tuple[int | None, np.ndarray]]
    data: Any                         #: the dataset (ImageData)
    n_timeline: int                   #: how many evaluations stored a timeline sample
    names: list[str]                  #: each point's name
    texts: list[str] | None           #: each point's caption or sentence, None without
    points: str                       #: what a point is: "images", "words" or "sentences"
    row_of: np.ndarray                #: row_of[item id] = its row on the map, -1 when not on it

    @property
    def shows_words(self) -> bool:
        """Points are words or sentences (hover shows text), not images."""
        return self.points != "images"

    def rows_of(self, items) -> np.ndarray:
        """The map rows of item ids ``items`` (those not on this map are left out)."""
        items = np.asarray(items, np.int64).ravel()
        ok = (items >= 0) & (items < len(self.row_of))
        rows = self.row_of[items[ok]]
        return rows[rows >= 0]

    def nearest(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the ``k`` points nearest to ``row`` in embedding space
        (not on the map), best first, itself excluded."""
        sims = self.unit @ self.unit[row]
        sims[row] = -np.inf
        k = min(k, len(sims) - 1)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return top, sims[top]


@dataclass(frozen=True)
class Timeline:
    """A run's timeline: the same sample of items at each evaluation, mapped and aligned."""
    run_id: int
    epochs: list[int]                 #: the epoch of each frame (the last: the final embedding)
    ids: np.ndarray                   #: (n,) item ids of the sample
    frames: np.ndarray                #: (F, n, 2) aligned coordinates, about [-1, 1]


def load_map_data(project, run_id: int) -> MapData:
    """Everything the view shows for one run (runs on a worker thread)."""
    emb = final_embeddings(project, run_id)
    if emb is None:
        raise ValueError(f"run {run_id} has no final embeddings yet (it has not finished)")
    ids, vectors = project.load_embeddings(emb.id)
    projections = {}
    for p in project.projections(emb.id):
        projections[p.kind] = (p.id, project.load_projection(p.id))   # the latest of each kind wins
    run = project.run(run_id)
    data = load_dataset(project, run.dataset_id)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    n_timeline = len({e.epoch for e in project.embedding_sets(run_id) if e.split == "timeline"})
    # The items are sentences (the masked language model), words (word2vec) or images.
    if emb.split == "sentences":
        points = "sentences"
    else:
        points = "words" if getattr(data, "modality", "images") == "text" else "images"
    # row_of[item id] = its row on the map (-1: not on it), to find the same items in a second map.
    row_of = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, np.int64)
    row_of[ids] = np.arange(len(ids))
    if "pca" not in projections and "umap" not in projections:
        projections["pca"] = (None, pca_2d(vectors))     # not stored (yet): the view needs one map at once
    return MapData(run_id=run_id, run=run, embedding_id=emb.id, split=emb.split, ids=ids, vectors=vectors,
                   unit=unit, projections=projections, data=data, n_timeline=n_timeline,
                   names=item_names(data, emb), texts=item_captions(data, emb), points=points, row_of=row_of)


def compute_umap(project, embedding_id: int, progress=None) -> tuple[int, int, np.ndarray]:
    """Compute and store the UMAP map (on a worker thread): (embedding id, projection id, coords)."""
    proj_id = compute_map(project, embedding_id, "umap")
    if progress is not None:
        progress(1.0, "done")
    return embedding_id, proj_id, project.load_projection(proj_id)


def compute_clusters(embedding_id: int, vectors: np.ndarray, k: int) -> tuple[int, int, np.ndarray]:
    """k-means clusters of an embedding set (on a worker thread): (embedding id, k, labels)."""
    return embedding_id, k, cluster_embeddings(vectors, k)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of the (n, 2) ``points`` lie inside the closed (m, 2) ``polygon``.

    Even-odd rule: a ray from the point to the right crosses the outline an odd
    number of times. Vectorised over the points, one pass per edge, after a
    bounding-box cut (a lasso is usually small beside the map). NaN points (not
    drawn) are outside."""
    pts = np.asarray(points, np.float64)
    poly = np.asarray(polygon, np.float64)
    inside = np.zeros(len(pts), bool)
    if len(poly) < 3 or not len(pts):
        return inside
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero((pts[:, 0] >= lo[0]) & (pts[:, 0] <= hi[0])
                              & (pts[:, 1] >= lo[1]) & (pts[:, 1] <= hi[1]))
    x, y = pts[cand, 0], pts[cand, 1]
    odd = np.zeros(len(cand), bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
        c = np.flatnonzero((ay > y) != (by > y))       # the edge spans the point's height
        if len(c):
            x_edge = ax + (y[c] - ay) * (bx - ax) / (by - ay)
            odd[c] ^= x[c] < x_edge
    inside[cand] = odd
    return inside


def align_frames(frames: list[np.ndarray]) -> np.ndarray:
    """PCA maps of successive embeddings of the same items, each rotated (or reflected)
    onto the one before: (F, n, 2), centred, scaled together to about [-1, 1].

    Each frame is centred and scaled to unit RMS radius, then turned by the orthogonal
    matrix R minimising ||frame·R − previous|| (Procrustes: R = U Vᵀ from the SVD of
    frameᵀ·previous), so only what training changed moves between frames."""
    out, prev = [], None
    for x in frames:
        c = pca_2d(x).astype(np.float64)
        c -= c.mean(axis=0)
        rms = float(np.sqrt((c ** 2).sum(axis=1).mean()))
        if rms > 0:
            c /= rms
        if prev is not None:
            u, _, vt = np.linalg.svd(c.T @ prev)
            c = c @ (u @ vt)
        out.append(c)
        prev = c
    stacked = np.stack(out) if out else np.zeros((0, 0, 2))
    if stacked.size:
        stacked = normalise_coords(stacked.reshape(-1, 2)).reshape(stacked.shape)
    return stacked.astype(np.float32)


def compute_timeline(project, run_id: int) -> Timeline:
    """The aligned frames of a run's timeline (on a worker thread). The last frame is the final
    embedding of the same items."""
    latest: dict[int, object] = {}
    for e in project.embedding_sets(run_id):
        if e.split == "timeline":
            latest[int(e.epoch or 0)] = e           # a resumed run may store an epoch again: keep the last
    epochs = sorted(latest)
    ids, vectors = None, []
    for ep in epochs:
        ids_e, v = project.load_embeddings(latest[ep].id)
        if ids is None:
            ids = ids_e
        elif not np.array_equal(ids_e, ids):
            raise ValueError(f"the timeline of run {run_id} changed its sample at epoch {ep}")
        vectors.append(v)
    final = final_embeddings(project, run_id)
    if final is not None and ids is not None:
        f_ids, f_vec = project.load_embeddings(final.id)
        pos = {int(i): k for k, i in enumerate(f_ids)}
        if all(int(i) in pos for i in ids):
            vectors.append(f_vec[[pos[int(i)] for i in ids]])
            epochs.append(int(final.epoch or (epochs[-1] + 1 if epochs else 0)))
    if len(vectors) < 2:
        raise ValueError("this run has no timeline: it stored embeddings at fewer than two evaluations "
                         "(train for two epochs or more with evaluations on)")
    return Timeline(run_id=run_id, epochs=epochs, ids=ids, frames=align_frames(vectors))
