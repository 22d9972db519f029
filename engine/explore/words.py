"""The Words view's data (Qt-free): a text run's word vectors, the map of its most
frequent words, and its model when it can fill in ``[MASK]``. The queries themselves
(neighbours, analogies, odd one out) are :class:`engine.text_eval.WordVectors` methods.

The methods (torch) are imported inside the functions that need them: the GUI imports
this module at start-up and must not wait seconds for torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..maps import pca_2d
from ..text_eval import WordVectors
from ..workbench import final_embeddings, load_dataset, load_trained_method, run_word_vectors


@dataclass(frozen=True)
class WordMap:
    """The run's stored embeddings of its words, in 2-D."""
    embedding_id: int
    words: list[str]                   #: the word of each point
    counts: np.ndarray                 #: its count in the corpus
    #: kind ("pca", "umap") → (projection id or None when not stored, (n, 2) coords). Mutable on
    #: purpose: the view adds UMAP once it is computed.
    projections: dict[str, tuple[int | None, np.ndarray]]


@dataclass(frozen=True)
class WordsRun:
    """Everything the Words view shows of one text run."""
    run_id: int
    run: Any                           #: the run's record
    wv: WordVectors | None             #: its word vectors; None for a method without (a masked LM)
    map: WordMap | None                #: None without word vectors or stored embeddings
    model: Any                         #: the model when it can fill in [MASK], else None


def shows_words(method_name: str) -> bool:
    """Whether the Words view has something to show of a method's runs: word vectors, or a
    model that fills in [MASK]."""
    from ..methods import METHODS
    cls = METHODS.get(method_name)
    return cls is not None and (cls.has_word_vectors or cls.fills_masks)


def text_runs(project) -> list:
    """Finished runs of the methods the Words view shows, newest first."""
    return [r for r in reversed(project.runs()) if r.status == "finished" and shows_words(r.method)]


def load_fill_mask_model(project, run_id: int):
    """The run's model, rebuilt from its latest checkpoint, when it can fill in [MASK]; else None."""
    from ..methods import get_method
    run = project.run(run_id)
    if not get_method(run.method).fills_masks or not project.checkpoints(run_id):
        return None
    model, _ = load_trained_method(project, run_id, device="cpu")
    return model


def load_word_map(project, run_id: int, dataset_id: int) -> WordMap | None:
    """The map of the run's final word embeddings (PCA computed when none is stored), or None
    when the run stored none or they are not words of its vocabulary."""
    emb = final_embeddings(project, run_id)
    if emb is None:
        return None
    data = load_dataset(project, dataset_id)
    ids, vectors = project.load_embeddings(emb.id)
    vocab = data.vocab
    if not len(ids) or int(ids.max()) >= len(vocab):
        return None
    projections = {p.kind: (p.id, project.load_projection(p.id)) for p in project.projections(emb.id)}
    if "pca" not in projections:
        projections["pca"] = (None, pca_2d(vectors))
    return WordMap(embedding_id=emb.id, words=[vocab[int(i)] for i in ids],
                   counts=np.asarray(data.counts)[ids], projections=projections)


def load_words_run(project, run_id: int) -> WordsRun:
    """Everything the view shows for one text run (runs on a worker thread)."""
    run = project.run(run_id)
    try:
        wv = run_word_vectors(project, run_id)
    except ValueError:
        wv = None                              # a method without word vectors (a masked LM)
    word_map = load_word_map(project, run_id, run.dataset_id) if wv is not None else None
    return WordsRun(run_id=run_id, run=run, wv=wv, map=word_map, model=load_fill_mask_model(project, run_id))


def fill_mask(model, text: str, k: int = 5):
    """The model's top-k tokens per [MASK] (runs on a worker thread)."""
    return model.fill_mask(text, k=k)
