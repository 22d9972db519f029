"""The arithmetic of an image–text model's retrieval: prompt ensembles, zero-shot
classification, top-k search, recall@k, and the metrics CLIP reports at every
evaluation (Qt-free, numpy only).

Every function takes l2-normalised embeddings (rows) or a callable that encodes
text, and knows nothing of a project: :mod:`engine.methods.clip` calls
:func:`clip_metrics` from its evaluation, and :mod:`engine.zero_shot` (which
rebuilds a trained run from a project) calls the rest. This module imports no
other engine module, so neither of them reaches the other through it.

Prompt ensembling as in CLIP (Radford et al. 2021, §3.1.4): a class's text
embedding is the mean of its normalised prompt embeddings ("a {}", "a picture
of a {}", ...), normalised again.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

DEFAULT_TEMPLATES = ("a {}", "a picture of a {}", "there is a {}")
RECALL_KS = (1, 5, 10)
RETRIEVAL_ITEMS = 1000       # test images in the recall@k gallery (as COCO's 1k / 5k test sets)

EncodeText = Callable[[list[str]], np.ndarray]


def item_captions(data) -> list[list[str]]:
    """Each item's captions: ``data.captions[i]`` holds one caption per line."""
    if data.captions is None:
        return [[] for _ in range(data.n)]
    return [[c.strip() for c in (cap or "").split("\n") if c.strip()] for cap in data.captions]


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prompts(name: str, templates: Sequence[str]) -> list[str]:
    """The prompts of one class: each template with ``{}`` replaced by the name."""
    return [t.format(name) if "{}" in t else f"{t} {name}" for t in templates]


def class_embeddings(encode_text: EncodeText, class_names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """(n classes, d): per class, the normalised mean of its normalised prompt embeddings."""
    templates = list(templates) or ["{}"]
    texts = [p for name in class_names for p in prompts(name, templates)]
    emb = _normalize(encode_text(texts)).reshape(len(class_names), len(templates), -1)
    return _normalize(emb.mean(axis=1))


def classify(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray | None = None,
             class_names: Sequence[str] | None = None) -> dict:
    """Zero-shot predictions: each image takes the class whose text embedding is most similar.

    Returns ``pred`` and ``scores`` (cosine similarities), and with ``labels``:
    ``accuracy``, ``per_class`` ({class name: accuracy}, NaN for a class with
    no image) and ``confusion`` (rows: true class, columns: predicted)."""
    scores = _normalize(image_emb) @ _normalize(class_emb).T
    pred = scores.argmax(axis=1)
    out = {"pred": pred, "scores": scores}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        k = len(class_emb)
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (labels, pred), 1)
        totals = confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.diag(confusion) / totals
        out.update(accuracy=float((pred == labels).mean()) if len(labels) else float("nan"),
                   per_class={names[i]: float(per_class[i]) for i in range(k)}, confusion=confusion)
    return out


def top_k(query: np.ndarray, gallery: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows most similar to ``query`` (d,): (indices, cosine scores), best first."""
    scores = _normalize(gallery) @ _normalize(query)
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx, scores[idx]


def recall_at_k(image_emb: np.ndarray, text_emb: np.ndarray, text_owner: np.ndarray,
                ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Retrieval recall both ways, with any number of captions per image.

    ``text_owner[j]`` is the row of ``image_emb`` caption j describes.
    image → text (``i2t_r{k}``): an image counts when any of its captions is
    among its k most similar captions; text → image (``t2i_r{k}``): a caption
    counts when its image is among its k most similar images. Images without a
    caption are left out of i2t."""
    text_owner = np.asarray(text_owner, dtype=np.int64)
    sims = _normalize(image_emb) @ _normalize(text_emb).T                    # (images, texts)
    out: dict[str, float] = {}
    # i2t: the best rank among the image's own captions.
    own = text_owner[None, :] == np.arange(len(image_emb))[:, None]
    best_own = np.where(own, sims, -np.inf).max(axis=1)
    rank_i = (sims > best_own[:, None]).sum(axis=1)                          # captions scored higher
    has = own.any(axis=1)
    # t2i: the rank of the caption's own image.
    own_score = sims[text_owner, np.arange(len(text_owner))]
    rank_t = (sims > own_score[None, :]).sum(axis=0)
    for k in ks:
        out[f"i2t_r{k}"] = float((rank_i[has] < k).mean()) if has.any() else float("nan")
        out[f"t2i_r{k}"] = float((rank_t < k).mean()) if len(rank_t) else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# What CLIP reports at every evaluation of a run


def clip_metrics(method, data, feats: np.ndarray) -> dict[str, float]:
    """Zero-shot accuracy per attribute (or on the labels), recall@1/5/10 both
    ways on the test split, and on shapes the (colour, shape) combinations'
    zero-shot accuracy — held-out and seen apart when the run holds some out."""
    test = np.flatnonzero(np.asarray(data.split) == 1)
    if len(test) == 0:
        return {}
    encode, templates = method.encode_text, method.templates
    out: dict[str, float] = {}
    groups = dict(data.attributes)
    if not groups and data.labels is not None and data.class_names:
        groups = {"label": (data.labels, data.class_names)}
    for attr, (ids, names) in groups.items():
        res = classify(feats[test], class_embeddings(encode, names, templates), ids[test])
        out[f"zs_{attr}"] = res["accuracy"]

    caps = item_captions(data)
    sel = [i for i in test if caps[i]][:RETRIEVAL_ITEMS]
    if sel:
        texts = [c for i in sel for c in caps[i]]
        owner = np.array([j for j, i in enumerate(sel) for _ in caps[i]])
        out.update(recall_at_k(feats[sel], encode(texts), owner))

    if "colour" in data.attributes and "shape" in data.attributes:
        (c_ids, c_names), (s_ids, s_names) = data.attributes["colour"], data.attributes["shape"]
        combo = c_ids * len(s_names) + s_ids
        names = [f"{c} {s}" for c in c_names for s in s_names]
        res = classify(feats[test], class_embeddings(encode, names, templates), combo[test])
        held = method.held_out_mask(data)[test]
        correct = res["pred"] == combo[test]
        if held.any():
            out["zs_combo_heldout"] = float(correct[held].mean())
            out["zs_combo_seen"] = float(correct[~held].mean()) if (~held).any() else float("nan")
            for attr in ("colour", "shape"):
                ids, names_a = data.attributes[attr]
                r = classify(feats[test][held], class_embeddings(encode, names_a, templates), ids[test][held])
                out[f"zs_{attr}_heldout"] = r["accuracy"]
        else:
            out["zs_combo"] = float(correct.mean())
    return out
