"""The operations the CLI and the GUI share: import a dataset, start a run,
train it, compute a map, export results.

Everything here works on an open :class:`~engine.store.Project` and returns
plain values; neither front end duplicates any of it.
"""
from __future__ import annotations

import hashlib
import subprocess
import threading
from collections import OrderedDict
from dataclasses import replace
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
    the user's images are stored encoded, one row per item, written in batches
    (so memory stays bounded at any number of files), and the project keeps
    working when the original folder moves or disappears (except ``link=true``
    imports, which keep references). Data already in the project (the same
    kind and fingerprint) is not stored twice: its id comes back, and
    ``data.info["already_imported"]`` names it.
    """
    if kind not in DATASET_KINDS:
        raise DataError(f"unknown dataset kind {kind!r} (known: {', '.join(DATASET_KINDS)})")
    data = load_images(kind, progress=progress, cancel=cancel, **params)
    name = dataset_name or data.name
    fingerprint = data.fingerprint()
    for other in project.datasets():
        if other.kind == kind and other.fingerprint == fingerprint and \
                not other.stats.get("importing") and (dataset_name is None or dataset_name == other.name):
            data.info["already_imported"] = other.name
            return other.id, data
    arrays = strings = None
    images_to_store = None
    if not DATASET_KINDS[kind].builtin:
        if DATASET_KINDS[kind].modality == "text":
            arrays, strings = data.payload()
        else:
            arrays, strings = _dataset_payload(data)
            images_to_store = data.images
    stats = data.stats()
    if data.skipped:
        stats["skipped_files"] = [f"{f}: {why}" for f, why in data.skipped[:1000]]
    if images_to_store is not None:
        stats.update(storage_stats(images_to_store))
    dataset_id = project.add_dataset(name, kind, _jsonable(params), data.n, fingerprint,
                                     {**stats, "importing": True} if images_to_store is not None else stats,
                                     arrays=arrays, strings=strings)
    if images_to_store is not None:
        try:
            store_images(project, dataset_id, images_to_store, progress=progress, cancel=cancel)
        except BaseException:
            project.delete_dataset(dataset_id)      # nothing half-imported is left behind
            raise
        project.update_dataset(dataset_id, stats=stats)
        data = replace(data, images=stored_images(project, dataset_id, data.images.shape[1], data.channels))
    _cache_put(project, dataset_id, data)
    return dataset_id, data


STORE_BATCH = 512


def store_images(project: Project, dataset_id: int, images, *, progress=None, cancel=None) -> None:
    """Write ``images`` (decoded arrays or :class:`~engine.data.encoded.EncodedImages`) as
    the dataset's items, ``STORE_BATCH`` per transaction: encoded bytes are copied as
    they are, linked files as references, decoded arrays as lossless PNG."""
    from .data.encoded import LinkedItems, encode_arrays
    n = len(images)
    source = getattr(images, "source", None)
    for start in range(0, n, STORE_BATCH):
        if cancel is not None and cancel():
            from .data import DataCancelled
            raise DataCancelled()
        if progress is not None:
            progress(start, n)
        part = slice(start, min(n, start + STORE_BATCH))
        if isinstance(source, LinkedItems):
            pos = images.positions(part)
            project.add_items(dataset_id, start, None, sha256=source.sha256(pos),
                              nbytes=[source.sizes[i] for i in pos], paths=[source.full_path(i) for i in pos])
            continue
        blobs = images.encoded(part) if source is not None else encode_arrays(np.asarray(images[part]))
        project.add_items(dataset_id, start, blobs, sha256=[hashlib.sha256(b).digest() for b in blobs],
                          nbytes=[len(b) for b in blobs])
    if progress is not None:
        progress(n, n)


def storage_stats(images) -> dict:
    """How a dataset's images are kept, for the data panel and the record."""
    from .data.encoded import JPEG_QUALITY, LinkedItems
    source = getattr(images, "source", None)
    if isinstance(source, LinkedItems):
        how = "linked files (path, size and sha256 of each; the files stay where they are)"
    elif source is not None:
        how = f"encoded: files ≤ store size kept as they are, larger ones as JPEG q{JPEG_QUALITY}"
    else:
        how = "encoded: lossless PNG"
    return {"storage": how}


def stored_images(project: Project, dataset_id: int, size: int, channels: int):
    """The dataset's stored items as an :class:`~engine.data.encoded.EncodedImages`, or None."""
    from .data.encoded import EncodedImages
    source = project.dataset_items(dataset_id)
    return None if source is None else EncodedImages(source, size, channels)


def _dataset_payload(data: ImageData) -> tuple[dict, dict]:
    arrays = {"split": data.split}
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
    if rec.stats.get("importing"):
        raise DataError(f"dataset {rec.name!r} in {project.path} is still being imported, or its import "
                        "was interrupted; delete it and import it again")
    size, channels = (rec.stats.get("size") or [0])[0], rec.stats.get("channels")
    images = stored_images(project, rec.id, size, channels) if size and channels in (1, 3) else None
    if images is None:
        raise DataError(f"dataset {rec.name!r} has no stored images in {project.path}")
    strings = lambda key: project.dataset_strings(rec.id, key)  # noqa: E731
    attributes = {key[5:]: (arr, strings(key)) for key, arr in arrays.items() if key.startswith("attr:")}
    labels = arrays.get("labels")
    captions = strings("captions") or None
    return ImageData(name=(strings("name") or [rec.name])[0], images=images,
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


def labelled_embeddings(project: Project, run):
    """What an evaluation of ``run`` against its labels needs: (final embedding set, data
    set, item ids, vectors); a ValueError when the run has no embeddings or no labels."""
    emb = final_embeddings(project, run.id)
    if emb is None:
        raise ValueError(f"run {run.id} has no final embeddings yet (status {run.status})")
    data = load_dataset(project, run.dataset_id)
    if data.labels is None:
        raise ValueError(f"the dataset of run {run.id} has no labels to evaluate against")
    ids, feats = project.load_embeddings(emb.id)
    return emb, data, ids, feats


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


#: What a method's ``embed`` computes beyond the exported encoder, in words, and the
#: method's own tensors (key prefixes) that make it up, written beside the encoder.
#: A method not listed embeds with its backbone's output alone.
_EMBED_BEYOND_ENCODER: dict[str, tuple[str, tuple[str, ...]]] = {
    "autoencoder": ("the app's embedding is the bottleneck code to_code(encoder(x)), a linear map "
                    "(to_code.weight, to_code.bias in the head file) of the encoder's features", ("to_code.",)),
    "denoising-autoencoder": ("the app's embedding is the bottleneck code to_code(encoder(x)), a linear map "
                              "(to_code.weight, to_code.bias in the head file) of the encoder's features",
                              ("to_code.",)),
    "clip": ("the app's embedding is normalize(W_i(encoder(x))): the image projection W_i.weight (in the "
             "head file, no bias) then division by the L2 norm", ("W_i.",)),
    "channel-prediction": ("the encoder takes 2C channels: the normalised image with the held-out channel's "
                           "values set to 0, then C mask planes (1 = held out). The app's embedding: for a "
                           "grayscale image encoder(cat[x, zeros]); for colour, the mean over the channels "
                           "training held out (all three for target=random, else the target) of "
                           "encoder(cat[x with channel c zeroed, mask plane c = 1])", ()),
}


def _run_encoder(method) -> tuple[str, object]:
    """(kind, module) of the network a trained image method embeds with: its ``backbone``
    ("resnet", "small-cnn") or its ViT ``encoder`` (the masked autoencoder's)."""
    from .nets import ResNet, SmallCNN, ViT
    net = getattr(method, "backbone", None)
    if isinstance(net, ResNet):
        return "resnet", net
    if isinstance(net, SmallCNN):
        return "small-cnn", net
    if isinstance(getattr(method, "encoder", None), ViT):
        return "vit", method.encoder
    raise ValueError(f"{method.name} has no encoder network to export (export its embeddings or "
                     f"--format weights instead)")


def export_encoder(project: Project, run_id: int, out: Path) -> list[Path]:
    """The network an image run embeds with, alone, for code that does not use Pretext.

    Writes a safetensors file (``out``, with ``.safetensors`` appended when it ends otherwise, or
    ``run<N>-encoder.safetensors`` in the folder ``out``)
    and a JSON file beside it saying what it is; the JSON is also in the safetensors metadata
    under "pretext". A ResNet's keys are exactly torchvision's ``resnet18``/``resnet50`` with
    ``fc`` removed (the CIFAR stem: ``conv1`` a 3×3 stride-1 conv, ``maxpool`` the identity); the
    small CNN's and the ViT's are those of :mod:`engine.nets` classes, with the arguments that
    rebuild them. Where the method's embedding is more than the encoder's output (the JSON's
    "embedding" says what), the method's head tensors go to ``<name>.head.safetensors``.
    Returns the paths written."""
    import json

    import torch
    from safetensors.torch import save_file

    from .augment import MEAN, STD, normalize
    run = project.run(run_id)
    method, _ = load_trained_method(project, run_id, device="cpu")
    if method.modality != "images":
        raise ValueError(f"run {run_id} is a text run ({method.name}): export its word vectors "
                         f"(--format word2vec) or its weights instead")
    kind, net = _run_encoder(method)
    info = method.info
    out = Path(out)
    path = out / f"run{run_id}-encoder.safetensors" if out.is_dir() else out
    if path.suffix != ".safetensors":          # so the JSON beside it can never overwrite it
        path = path.with_name(path.name + ".safetensors")
    meta_path = path.with_suffix(".json")

    C = info.channels
    in_ch = (net.net.conv1.in_channels if kind == "resnet" else net.features[0][0].in_channels
             if kind == "small-cnn" else net.patch_embed.in_channels)
    desc = {"format": "pretext-encoder/1", "run": run_id, "method": method.name,
            "dataset": info.name, "in_channels": in_ch, "image_channels": C,
            "image_size": [info.height, info.width], "feature_dim": net.dim,
            "weights": path.name,
            "normalization": {"how": "uint8 image (C, H, W) → float x / 255 → (x - mean) / std per channel",
                              "mean": [MEAN] * C, "std": [STD] * C}}
    if kind == "resnet":
        state = net.net.state_dict()
        arch = f"resnet{net.depth}"
        stem = net.stem
        if stem == "cifar":
            conv1 = f"m.conv1 = torch.nn.Conv2d({in_ch}, 64, 3, 1, 1, bias=False); m.maxpool = torch.nn.Identity(); "
        else:
            conv1 = "" if in_ch == 3 else f"m.conv1 = torch.nn.Conv2d({in_ch}, 64, 7, 2, 3, bias=False); "
        desc.update(architecture=arch, stem=stem, keys="torchvision",
                    load=(f"m = torchvision.models.{arch}(); m.fc = torch.nn.Identity(); {conv1}"
                          f"m.load_state_dict(safetensors.torch.load_file('{path.name}'), strict=True); m.eval()"))
    elif kind == "small-cnn":
        state = net.state_dict()
        desc.update(architecture="small-cnn", keys="engine.nets",
                    build={"class": "engine.nets.SmallCNN",
                           "kwargs": {"in_channels": in_ch, "width": net.features[0][0].out_channels}})
    else:
        state = net.state_dict()
        desc.update(architecture="vit", keys="engine.nets", patch=net.patch,
                    build={"class": "engine.nets.ViT",
                           "kwargs": {"in_channels": in_ch, "height": info.height, "width": info.width,
                                      "patch": net.patch, "dim": net.dim, "depth": len(net.blocks),
                                      "heads": net.blocks[0].attn.heads}},
                    output="forward(x) is the mean of the patch tokens; tokens(x)[:, 0] is the cls token")

    # What the app's embedding is, in words, and whether it equals the encoder's output on this
    # run's own images (checked, not assumed: a method not in the table could still differ).
    words, head_prefixes = _EMBED_BEYOND_ENCODER.get(method.name, ("the app's embedding is the encoder's output", ()))
    if method.name == "mae":
        words = ("the app's embedding is the mean of the patch tokens (forward(x))" if method.cfg.pool == "mean"
                 else "the app's embedding is the cls token (tokens(x)[:, 0])")
    same = False
    if in_ch == C:
        data = load_dataset(project, run.dataset_id)
        with torch.no_grad():
            # Eight images only: a folder's images are decoded on access, and all of them could be many.
            first = np.ascontiguousarray(data.images[:8])
            x = normalize(torch.from_numpy(first).permute(0, 3, 1, 2).contiguous())
            emb, feats = method.embed(x).float(), net(x).float()
            same = emb.shape == feats.shape and bool(torch.allclose(emb, feats, atol=1e-5, rtol=1e-5))
    desc.update(embedding=words, embedding_is_encoder_output=same)

    head = {k: v.detach().contiguous() for k, v in method.state_dict().items()
            if any(k.startswith(p) for p in head_prefixes)}
    written = []
    if head:
        head_path = path.with_suffix(".head.safetensors")
        desc["head"] = head_path.name
        save_file(head, str(head_path), metadata={"pretext": json.dumps(desc)})
        written.append(head_path)
    text = json.dumps(desc, indent=2)
    flat = {k: str(desc[k]) for k in ("architecture", "stem", "in_channels", "image_size", "method") if k in desc}
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path),
              metadata={"pretext": json.dumps(desc), **flat})
    meta_path.write_text(text + "\n")
    return [path, meta_path, *written]
