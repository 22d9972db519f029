"""The operations the CLI and the GUI share: import a dataset, start a run,
train it, compute a map, export results.

Everything here works on an open :class:`~engine.store.Project` and returns
plain values; neither front end duplicates any of it.
"""
from __future__ import annotations

import subprocess
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from . import __version__
from .data import DATASET_KINDS, DataError, ImageData, load_images
from .store import Project

if TYPE_CHECKING:
    from .train import DistInfo, Event, RunControl, RunConfig
# .train (torch) is imported inside the functions that train: importing a
# dataset (main.py new) or listing must not wait seconds for torch.

DEMO_DATASETS = (("digits", "digits", {}), ("shapes", "shapes", {"n": 2000, "size": 32, "seed": 0}))


# --------------------------------------------------------------------------------------
# Datasets


def import_dataset(project: Project, kind: str, dataset_name: str | None = None, *,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None, **params) -> tuple[int, ImageData]:
    """Load a dataset of ``kind`` with ``params`` and record it as ``dataset_name``
    (not ``name``: the torchvision kind has a ``name`` parameter of its own).

    Built-in kinds are stored as their parameters (they regenerate exactly);
    the user's files are stored as decoded arrays, so the project keeps working
    when the original folder moves or disappears.
    """
    if kind not in DATASET_KINDS:
        raise DataError(f"unknown dataset kind {kind!r} (known: {', '.join(DATASET_KINDS)})")
    data = load_images(kind, progress=progress, cancel=cancel, **params)
    name = dataset_name or data.name
    arrays = strings = None
    if not DATASET_KINDS[kind].builtin:
        arrays, strings = data.payload() if DATASET_KINDS[kind].modality == "text" else _dataset_payload(data)
    stats = data.stats()
    if data.skipped:
        stats["skipped_files"] = [f"{f}: {why}" for f, why in data.skipped[:1000]]
    dataset_id = project.add_dataset(name, kind, _jsonable(params), data.n, data.fingerprint(), stats,
                                     arrays=arrays, strings=strings)
    _cache_put(project, dataset_id, data)
    return dataset_id, data


def _dataset_payload(data: ImageData) -> tuple[dict, dict]:
    arrays = {"images": data.images, "split": data.split}
    strings = {"item_names": list(data.item_names), "name": [data.name]}
    if data.labels is not None:
        arrays["labels"] = data.labels
        strings["class_names"] = list(data.class_names or [])
    if data.captions is not None:
        strings["captions"] = list(data.captions)
    for attr, (ids, names) in data.attributes.items():
        arrays[f"attr:{attr}"] = ids
        strings[f"attr:{attr}"] = list(names)
    return arrays, strings


def kind_modality(kind: str) -> str:
    """"images" or "text": what a dataset kind loads."""
    spec = DATASET_KINDS.get(kind)
    return spec.modality if spec is not None else "images"


def _jsonable(params: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}


_CACHE: OrderedDict[tuple, ImageData] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cache_put(project: Project, dataset_id: int, data: ImageData) -> None:
    with _CACHE_LOCK:
        _CACHE[(str(project.path), dataset_id)] = data
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)


def load_dataset(project: Project, dataset: int | str) -> ImageData:
    """The items of a stored dataset: regenerated (built-in kinds) or read from the file."""
    rec = project.dataset(dataset)
    key = (str(project.path), rec.id)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    kind = DATASET_KINDS.get(rec.kind)
    if kind is not None and kind.builtin:
        data = load_images(rec.kind, **rec.params)
        if data.fingerprint() != rec.fingerprint:
            raise DataError(f"dataset {rec.name!r} regenerated differently from when it was imported "
                            "(a different Pretext version?); re-import it to train on it")
    else:
        data = _dataset_from_arrays(project, rec)
    _cache_put(project, rec.id, data)
    return data


def _dataset_from_arrays(project: Project, rec) -> ImageData:
    arrays = project.dataset_arrays(rec.id)
    if kind_modality(rec.kind) == "text":
        from .data.text import TextData
        return TextData.from_payload(rec.name, arrays, lambda key: project.dataset_strings(rec.id, key))
    if "images" not in arrays:
        raise DataError(f"dataset {rec.name!r} has no stored images in {project.path}")
    strings = lambda key: project.dataset_strings(rec.id, key)  # noqa: E731
    attributes = {key[5:]: (arr, strings(key)) for key, arr in arrays.items() if key.startswith("attr:")}
    labels = arrays.get("labels")
    captions = strings("captions") or None
    return ImageData(name=(strings("name") or [rec.name])[0], images=arrays["images"],
                     labels=labels, class_names=(strings("class_names") or None) if labels is not None else None,
                     attributes=attributes, captions=captions, item_names=strings("item_names"),
                     split=arrays["split"], skipped=[])


# --------------------------------------------------------------------------------------
# Runs


def code_version() -> str:
    """The git commit of this checkout when there is one, else the package version."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def create_run(project: Project, dataset: int | str, method: str,
               overrides: dict[str, str] | None = None, *, name: str = "",
               run_config: RunConfig | None = None) -> int:
    """Record a new run (status "created") with everything that reproduces it.

    A run that could not start (a bad or non-finite setting, a method that does not
    fit the data, a device this machine lacks) raises ConfigError and writes nothing."""
    from .train import check_runnable, default_run_config, environment_versions
    rec = project.dataset(dataset)
    data = load_dataset(project, rec.id)
    cfg = run_config or default_run_config(method, data, overrides)
    check_runnable(cfg, data)
    return project.create_run(rec.id, cfg.method, cfg.to_dict(), cfg.train.seed,
                              device=cfg.train.device, versions=environment_versions(),
                              fingerprint=rec.fingerprint, code_version=code_version(),
                              name=name or f"{cfg.method} on {rec.name}")


def run_training(project: Project, run_id: int, control: RunControl | None = None,
                 dist: DistInfo | None = None) -> Iterator[Event]:
    """Train or resume run ``run_id`` (the generator both front ends consume)."""
    from .loop import train
    run = project.run(run_id)
    data = load_dataset(project, run.dataset_id)
    return train(project, run_id, data, control, dist)


def load_trained_method(project: Project, run_id: int, device: str = "auto", checkpoint_id: int | None = None):
    """Rebuild a run's method with its latest checkpoint (or checkpoint ``checkpoint_id``), in
    eval mode: (method, device). A text method rebuilds from the state alone (it carries its
    vocabulary); an image method is built for its data set's image shape first."""
    from .methods import DataInfo, get_method
    from .train import RunConfig, pick_device
    run = project.run(run_id)
    if checkpoint_id is None:
        ck = project.latest_checkpoint(run_id)
        if ck is None:
            raise ValueError(f"run {run_id} has no checkpoint yet (status {run.status})")
        state = ck[2]
    else:
        state = project.load_checkpoint(checkpoint_id)
    cfg = RunConfig.from_dict(run.config)
    m_cls = get_method(cfg.method)
    dev = pick_device(device)
    if m_cls.modality == "text":
        method = m_cls.from_state(cfg.method_config, state["model"])
    else:
        data = load_dataset(project, run.dataset_id)
        n_train = int((data.split == 0).sum())
        method = m_cls(cfg.method_config, DataInfo(data.name, data.channels, data.height, data.width, n_train))
        method.load_state_dict(state["model"])
    method.to(dev).eval()
    return method, dev


def compute_map(project: Project, embedding_id: int, kind: str = "umap", progress=None, **params) -> int:
    """Project an embedding set to 2-D and store it; returns the projection id."""
    from .maps import project as project_2d
    _, vectors = project.load_embeddings(embedding_id)
    extra = {"progress": progress} if progress is not None and kind == "umap" else {}
    coords = project_2d(vectors, kind, **params, **extra)
    return project.save_projection(embedding_id, kind, params, coords)


def final_embeddings(project: Project, run_id: int):
    """The run's final embedding set (split "all"; "sentences" for the masked language
    model), or None before it finished."""
    sets = [e for e in project.embedding_sets(run_id) if e.split in ("all", "sentences")]
    return sets[-1] if sets else None


# --------------------------------------------------------------------------------------
# What the map shows of an item (Qt-free, so the views' logic is testable)


def _split_of(embeddings) -> str:
    return embeddings if isinstance(embeddings, str) else embeddings.split


def item_names(data, embeddings) -> list[str]:
    """The name of every item id of an embedding set (an EmbeddingRecord or its split):
    the sentences for the masked language model's split "sentences" (ids are sentence
    indices), else the data set's ``item_names`` (file names; the vocabulary for word2vec,
    whose ids are word indices)."""
    if _split_of(embeddings) == "sentences":
        return data.sentences
    return data.item_names


def item_captions(data, embeddings) -> list[str] | None:
    """The text a "caption contains…" search looks in, per item id: the captions of an
    image data set, the sentences of a sentence map, None where items have no text
    (plain images; the words of a word map are names, not captions)."""
    if _split_of(embeddings) == "sentences":
        return data.sentences
    return getattr(data, "captions", None) or None


def caption_matches(texts: list[str], ids: np.ndarray, query: str) -> np.ndarray:
    """Which items ``ids`` have a text containing ``query`` as whole words, case-insensitive
    ("red" matches "a red circle", not "tired"; "red circle" matches the phrase)."""
    import re
    words = re.findall(r"\w+", query.lower())
    if not words or texts is None:
        return np.zeros(len(ids), bool)
    pattern = re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE)
    return np.fromiter((pattern.search(texts[int(i)]) is not None for i in ids), bool, count=len(ids))


def cluster_embeddings(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means on the unit-length vectors (the cosine geometry the neighbours use):
    one cluster number per row, 0 the largest cluster, so colours stay put between runs."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    x = np.asarray(vectors, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = int(max(1, min(k, len(x))))
    if len(x) > 20_000:       # full k-means gets slow on the biggest maps; mini-batches are close
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = km.fit_predict(x)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    return rank[labels]


SELECTION_COLUMNS = ("index", "name", "label", "x", "y")


def export_selection(path: str | Path, data, embeddings, ids: np.ndarray, coords: np.ndarray) -> Path:
    """Write selected map points as CSV: item index (into the data set, or the vocabulary /
    sentences for text), name, label (empty without labels), and the map position x, y."""
    import csv
    names = item_names(data, embeddings)
    labels = getattr(data, "labels", None)
    classes = list(getattr(data, "class_names", None) or [])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SELECTION_COLUMNS)
        for i, (x, y) in zip(np.asarray(ids, np.int64), np.asarray(coords, np.float64)):
            label = ""
            if labels is not None:
                lab = int(labels[i])
                label = classes[lab] if lab < len(classes) else str(lab)
            w.writerow([int(i), names[i], label, f"{x:.6g}", f"{y:.6g}"])
    return path


# --------------------------------------------------------------------------------------
# The demo project


def ensure_demo_project(path: str | Path) -> Project:
    """Open the demo project, creating it (digits + shapes) on first use."""
    path = Path(path)
    project = Project.open_or_create(path)
    have = {d.name for d in project.datasets()}
    for name, kind, params in DEMO_DATASETS:
        if name not in have:
            import_dataset(project, kind, name, **params)
    return project


def default_demo_path() -> Path:
    return Path.home() / ".local" / "share" / "pretext" / "demo.pretext"


def export_embeddings(project: Project, embedding_id: int, out: Path, fmt: str) -> list[Path]:
    """Write an embedding set as .npy, .csv or TensorBoard-projector TSV (+ metadata)."""
    ids, vectors = project.load_embeddings(embedding_id)
    run = project.run(project.embedding_set(embedding_id).run_id)
    data = load_dataset(project, run.dataset_id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(out, vectors)
        return [out]
    if fmt == "csv":
        header = "id," + ",".join(f"d{i}" for i in range(vectors.shape[1]))
        np.savetxt(out, np.column_stack([ids, vectors]), delimiter=",", header=header, comments="",
                   fmt=["%d"] + ["%.6g"] * vectors.shape[1])
        return [out]
    if fmt == "tsv":
        np.savetxt(out, vectors, delimiter="\t", fmt="%.6g")
        meta = out.with_name(out.stem + "_metadata.tsv")
        cols = ["name"] + (["label"] if data.labels is not None else []) + \
            (["caption"] if data.captions else [])
        # TensorBoard's projector reads a header row only when there are two or
        # more columns; with one it would take "name" for the first item's name.
        lines = ["\t".join(cols)] if len(cols) > 1 else []
        item_name = item_names(data, project.embedding_set(embedding_id))
        for i in ids:
            row = [item_name[i]]
            if data.labels is not None:
                names = data.class_names or []
                lab = int(data.labels[i])
                row.append(names[lab] if lab < len(names) else str(lab))
            if data.captions:
                row.append(data.captions[i])
            lines.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in row))
        meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [out, meta]
    raise ValueError(f"unknown export format {fmt!r} (npy, csv, tsv)")


def run_word_vectors(project: Project, run_id: int):
    """A text run's word vectors (its latest checkpoint) as :class:`~engine.text_eval.WordVectors`."""
    from .methods import get_method
    from .text_eval import WordVectors
    run = project.run(run_id)
    if not get_method(run.method).has_word_vectors:
        raise ValueError(f"run {run_id} ({run.method}) has no word vectors")
    ck = project.latest_checkpoint(run_id)
    if ck is None:
        raise ValueError(f"run {run_id} has no checkpoint yet (status {run.status})")
    state = ck[2]["model"]
    data = load_dataset(project, run.dataset_id)
    ids = state["vocab_ids"].numpy()
    return WordVectors([data.vocab[i] for i in ids], state["syn0"].numpy(), state["counts"].numpy())


def export_word_vectors(project: Project, run_id: int, out: Path, binary: bool = False) -> Path:
    """A text run's vectors in the word2vec text or binary format (gensim and the C tool read both)."""
    from .text_eval import save_word2vec
    wv = run_word_vectors(project, run_id)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return save_word2vec(out, wv.words, wv.vectors, binary=binary)


def export_weights(project: Project, run_id: int, out: Path) -> Path:
    """The run's latest trained weights as a safetensors file."""
    from safetensors.torch import save_file
    ck = project.latest_checkpoint(run_id)
    if ck is None:
        raise ValueError(f"run {run_id} has no checkpoint yet")
    state = {k: v.contiguous() for k, v in ck[2]["model"].items()}
    save_file(state, str(out), metadata={"run": str(run_id), "method": project.run(run_id).method})
    return Path(out)
