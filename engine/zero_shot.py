"""Using a trained image–text model: zero-shot classification, text → image
search, image → text retrieval and recall@k (Qt-free; the GUI and the CLI call
the same functions).

The array functions take l2-normalised embeddings (rows) and know nothing of
the model; the project functions (:func:`search_images`, :func:`search_texts`,
:func:`zero_shot`) rebuild a trained CLIP run with
:func:`engine.workbench.load_trained_method` and call them.

Prompt ensembling as in CLIP (Radford et al. 2021, §3.1.4): a class's text
embedding is the mean of its normalised prompt embeddings ("a {}", "a picture
of a {}", ...), normalised again.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

DEFAULT_TEMPLATES = ("a {}", "a picture of a {}", "there is a {}")
RECALL_KS = (1, 5, 10)
RETRIEVAL_ITEMS = 1000       # test images in the recall@k gallery (as COCO's 1k / 5k test sets)

EncodeText = Callable[[list[str]], np.ndarray]


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
    from .methods.clip import item_captions
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


# ---------------------------------------------------------------------------------------------
# On a trained run in a project


def load_clip_run(project, run_id: int):
    from .workbench import load_trained_method
    method, device = load_trained_method(project, run_id)
    if not hasattr(method, "encode_text"):
        raise ValueError(f"run {run_id} trained {project.run(run_id).method}, which has no text encoder "
                         "(search and zero-shot need a CLIP run)")
    return method, device


def image_embeddings(project, run_id: int, dataset_id: int, method, device) -> np.ndarray:
    """The run's stored final image embeddings when ``dataset_id`` is its own dataset, else fresh ones."""
    from .train import embed_images, images_tensor
    from .workbench import final_embeddings, load_dataset
    run = project.run(run_id)
    data = load_dataset(project, dataset_id)
    if dataset_id == run.dataset_id and (emb := final_embeddings(project, run_id)) is not None:
        ids, vectors = project.load_embeddings(emb.id)
        if len(ids) == data.n:
            full = np.zeros_like(vectors)
            full[ids] = vectors
            return full
    return embed_images(method, images_tensor(data), device)


def search_images(project, run_id: int, text: str, k: int = 10,
                  dataset: int | str | None = None) -> list[dict]:
    """Text → image: the ``k`` images of ``dataset`` (default: the run's) closest to ``text``.

    Each hit: {"index", "score", "name", "caption"}."""
    from .workbench import load_dataset
    method, device = load_clip_run(project, run_id)
    dataset_id = project.dataset(dataset).id if dataset is not None else project.run(run_id).dataset_id
    data = load_dataset(project, dataset_id)
    feats = image_embeddings(project, run_id, dataset_id, method, device)
    idx, scores = top_k(method.encode_text([text])[0], feats, k)
    return [{"index": int(i), "score": float(s), "name": data.item_names[i],
             "caption": (data.captions[i] if data.captions else "")} for i, s in zip(idx, scores)]


def search_texts(project, run_id: int, image_index: int, k: int = 10,
                 texts: Sequence[str] | None = None) -> list[dict]:
    """Image → text: the ``k`` captions (of the run's dataset, or ``texts``) closest to image
    ``image_index`` of the run's dataset. Each hit: {"text", "score", "index"} (index: the
    caption's item, or its position in ``texts``)."""
    from .methods.clip import item_captions
    from .workbench import load_dataset
    method, device = load_clip_run(project, run_id)
    run = project.run(run_id)
    data = load_dataset(project, run.dataset_id)
    if texts is None:
        caps = item_captions(data)
        texts = [c for item in caps for c in item]
        owner = [i for i, item in enumerate(caps) for _ in item]
    else:
        texts, owner = list(texts), list(range(len(texts)))
    feats = image_embeddings(project, run_id, run.dataset_id, method, device)
    idx, scores = top_k(feats[image_index], method.encode_text(texts), k)
    return [{"text": texts[i], "score": float(s), "index": int(owner[i])} for i, s in zip(idx, scores)]


def zero_shot(project, run_id: int, dataset: int | str | None = None,
              templates: Sequence[str] | None = None, attribute: str | None = None,
              store: bool = True, class_texts: Sequence[str] | None = None) -> dict:
    """Zero-shot classification of ``dataset`` (default: the run's) on its labels or on
    ``attribute``, on the test split (all items when it has none).

    Returns {"attribute", "class_names", "templates", "n", "accuracy", "per_class",
    "confusion" (list of lists)}. With ``store`` the accuracy and per-class
    accuracies become metrics of the run (``zeroshot_<dataset>_<attribute>``…) and
    the whole result a JSON artifact. ``class_texts`` (one per class, in class order)
    replaces each class name in the templates, e.g. "crimson" for "red" (the GUI's
    editable class prompts); the result keeps them as "class_texts"."""
    from .workbench import load_dataset
    method, device = load_clip_run(project, run_id)
    rec = project.dataset(dataset) if dataset is not None else project.dataset(project.run(run_id).dataset_id)
    data = load_dataset(project, rec.id)
    if attribute is None:
        if data.labels is None or not data.class_names:
            raise ValueError(f"dataset {rec.name!r} has no labels; name an attribute "
                             f"({', '.join(data.attributes) or 'it has none'})")
        attribute, (ids, names) = "label", (data.labels, data.class_names)
    elif attribute in data.attributes:
        ids, names = data.attributes[attribute]
    else:
        raise ValueError(f"dataset {rec.name!r} has no attribute {attribute!r} "
                         f"(it has: {', '.join(data.attributes) or 'none'})")
    templates = list(templates or getattr(method, "templates", None) or DEFAULT_TEMPLATES)
    feats = image_embeddings(project, run_id, rec.id, method, device)
    items = np.flatnonzero(np.asarray(data.split) == 1)
    if len(items) == 0:
        items = np.arange(data.n)
    texts = list(names) if class_texts is None else [str(t) for t in class_texts]
    if len(texts) != len(names):
        raise ValueError(f"{len(texts)} class texts for the {len(names)} classes of {attribute!r}")
    res = classify(feats[items], class_embeddings(method.encode_text, texts, templates), ids[items], names)
    result = {"dataset": rec.name, "attribute": attribute, "class_names": list(names), "templates": templates,
              "class_texts": texts,
              "n": int(len(items)), "accuracy": res["accuracy"], "per_class": res["per_class"],
              "confusion": res["confusion"].tolist()}
    if store:
        key = f"zeroshot_{rec.name}_{attribute}"
        last = max((m.step for m in project.metrics(run_id)), default=0)
        rows = [(last, 0.0, key, res["accuracy"])] + \
            [(last, 0.0, f"{key}/{n}", v) for n, v in res["per_class"].items() if np.isfinite(v)]
        project.log_metrics(run_id, rows)
        project.save_artifact(run_id, key, "json", json.dumps(result).encode("utf-8"), step=last,
                              meta={"accuracy": res["accuracy"]})
    return result
