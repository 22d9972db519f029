"""The Search view's work (Qt-free): a trained CLIP run kept in memory between queries,
text → images over one split of a data set, image → the run's training captions, and
the one-job-at-a-time dispatcher the view's worker calls.

A :class:`SearchSession` rebuilds the run once and keeps the image embeddings of one
data set and the embeddings of the run's training captions (computed on first use),
so a query after the first is a matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..retrieval import DEFAULT_TEMPLATES, item_captions, top_k
from ..workbench import load_dataset
from ..zero_shot import image_embeddings, load_clip_run, zero_shot


@dataclass(frozen=True)
class SearchHits:
    """Text → images: the ``k`` images closest to ``text``, best first."""
    text: str
    index: np.ndarray          #: item index of each hit in the data set
    score: np.ndarray          #: its cosine similarity to the text
    images: np.ndarray         #: its image, uint8 (k, H, W, C)
    captions: list[str]        #: its own caption ("" without)
    names: list[str]           #: its item name
    split: str                 #: the split asked for: "test", "train" or "all"
    searched: str              #: the split really searched (a data set without that split: "all")
    pool_size: int             #: how many images were ranked


@dataclass(frozen=True)
class CaptionMatches:
    """Image → text: the run's training captions closest to one item, best first."""
    index: int                 #: the item
    image: np.ndarray          #: its image
    caption: str               #: its own caption ("" without)
    name: str                  #: its item name
    texts: list[str]           #: the closest captions
    score: np.ndarray          #: their cosine similarity to the image
    count: np.ndarray          #: how many training items have each caption


def run_templates(config: dict) -> list[str]:
    """The prompt templates a run was trained (and evaluated) with."""
    text = (config.get("method_config") or {}).get("templates") or ""
    return [t.strip() for t in str(text).split("|") if t.strip()] or list(DEFAULT_TEMPLATES)


def split_items(split: np.ndarray, which: str) -> tuple[np.ndarray, str]:
    """The items of ``which`` split ("test", "train" or "all") and the split they really are:
    a data set without such a split falls back to all its items."""
    split = np.asarray(split)
    if which in ("test", "train"):
        items = np.flatnonzero(split == (1 if which == "test" else 0))
        if len(items):
            return items, which
    return np.arange(len(split)), "all"


def label_sets(stats: dict) -> dict[str, list[str]]:
    """A data set's label sets from its stored summary: {"label" | attribute: class names}."""
    out = {}
    if stats.get("class_counts"):
        out["label"] = list(stats["class_counts"])
    for attr, counts in (stats.get("attributes") or {}).items():
        out[attr] = list(counts)
    return out


class SearchSession:
    """A CLIP run rebuilt once, with the image embeddings of one data set and the
    embeddings of the run's training captions (computed on first use).

    Only ever used by one worker at a time."""

    def __init__(self, project, run_id: int, dataset_id: int):
        self.key = (str(project.path), run_id, dataset_id)
        self.method, self.device = load_clip_run(project, run_id)
        self.data = load_dataset(project, dataset_id)
        self.feats = image_embeddings(project, run_id, dataset_id, self.method, self.device)
        # The captions to retrieve: the run's training-set captions, each distinct text once
        # (shapes repeats its phrasings: ten copies of one caption would hide the others).
        caps = item_captions(load_dataset(project, project.run(run_id).dataset_id))
        counts: dict[str, int] = {}
        for item in caps:
            for c in item:
                counts[c] = counts.get(c, 0) + 1
        self.texts = list(counts)
        self.text_counts = np.array([counts[t] for t in self.texts], dtype=np.int64)
        self._text_emb: np.ndarray | None = None

    def search(self, text: str, k: int, split: str = "test") -> SearchHits:
        """The ``k`` images of ``split`` ("test", "train", "all") closest to ``text``."""
        pool, searched = split_items(self.data.split, split)
        best, scores = top_k(self.method.encode_text([text])[0], self.feats[pool], k)
        idx = pool[best]
        return SearchHits(text=text, index=idx, score=scores, images=self.data.images[idx],
                          captions=[self.caption(i) for i in idx], names=[self.data.item_names[i] for i in idx],
                          split=split, searched=searched, pool_size=len(pool))

    def caption(self, i: int) -> str:
        """Item ``i``'s own caption ("" without)."""
        return (self.data.captions[i] or "") if self.data.captions else ""

    def describe(self, index: int, k: int) -> CaptionMatches:
        """Image → text: the run's captions closest to item ``index`` of the data set."""
        if not 0 <= index < self.data.n:
            raise ValueError(f"no item {index}: the data set has {self.data.n} items")
        if not self.texts:
            raise ValueError("the run's training set has no captions to retrieve")
        if self._text_emb is None:
            self._text_emb = self.method.encode_text(self.texts)
        idx, scores = top_k(self.feats[index], self._text_emb, k)
        return CaptionMatches(index=index, image=self.data.images[index], caption=self.caption(index),
                              name=self.data.item_names[index], texts=[self.texts[i] for i in idx],
                              score=scores, count=self.text_counts[idx])


class SessionHolder:
    """The one session a worker keeps between jobs (None before the first)."""
    session: SearchSession | None = None


def run_job(project, holder: SessionHolder, job: tuple) -> tuple:
    """One request of the view (on the worker thread): ("search", run, dataset, text, k, split),
    ("describe", run, dataset, index, k) or ("zero_shot", run, dataset, attribute, class texts,
    templates). Returns (job, result): :class:`SearchHits`, :class:`CaptionMatches`, or
    :func:`engine.zero_shot.zero_shot`'s dict (stored with the run)."""
    kind, run_id, dataset_id, *args = job
    if kind == "zero_shot":
        attribute, class_texts, templates = args
        return job, zero_shot(project, run_id, dataset_id, templates=templates,
                              attribute=None if attribute == "label" else attribute,
                              class_texts=class_texts, store=True)
    key = (str(project.path), run_id, dataset_id)
    if holder.session is None or holder.session.key != key:
        holder.session = None                         # free the old model before building the new one
        holder.session = SearchSession(project, run_id, dataset_id)
    s = holder.session
    return job, (s.search(*args) if kind == "search" else s.describe(*args))
