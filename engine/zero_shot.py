"""Using a trained image–text model in a project: zero-shot classification,
text → image search and image → text retrieval (Qt-free; the GUI and the CLI
call the same functions).

The project functions (:func:`search_images`, :func:`search_texts`,
:func:`zero_shot`) rebuild a trained CLIP run with
:func:`engine.workbench.load_trained_method` and call the array functions of
:mod:`engine.retrieval`, which are re-exported here. This module depends on the
methods, never the other way round: CLIP's own evaluation uses
:mod:`engine.retrieval` directly.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from .retrieval import (DEFAULT_TEMPLATES, RECALL_KS, RETRIEVAL_ITEMS, EncodeText, class_embeddings,  # noqa: F401
                        classify, clip_metrics, item_captions, prompts, recall_at_k, top_k)


# ---------------------------------------------------------------------------------------------
# On a trained run in a project


def load_clip_run(project, run_id: int):
    from .methods import get_method
    from .workbench import load_trained_method
    method_name = project.run(run_id).method
    if not get_method(method_name).encodes_text:
        raise ValueError(f"run {run_id} trained {method_name}, which has no text encoder "
                         "(search and zero-shot need a CLIP run)")
    return load_trained_method(project, run_id)


def image_embeddings(project, run_id: int, dataset_id: int, method, device) -> np.ndarray:
    """The run's stored final image embeddings when ``dataset_id`` is its own dataset, else fresh ones."""
    from .tasks.feed import ImageFeed
    from .train import embed_images
    from .workbench import final_embeddings, load_dataset
    run = project.run(run_id)
    data = load_dataset(project, dataset_id)
    if dataset_id == run.dataset_id and (emb := final_embeddings(project, run_id)) is not None:
        ids, vectors = project.load_embeddings(emb.id)
        if len(ids) == data.n:
            full = np.zeros_like(vectors)
            full[ids] = vectors
            return full
    return embed_images(method, ImageFeed(data.images, device), device)


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
