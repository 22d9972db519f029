"""The ImageData type, the registry, parameter handling, splits and fingerprints."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data import (DATASET_KINDS, DataCancelled, DataError, DatasetKind, ImageData, ParamSpec,
                         load_images, stratified_split)

# load_images("digits").fingerprint(), fixed: it must not change between runs or machines.
DIGITS_FINGERPRINT = "40214229ec87a4a3691a4ebf0003bf24274e2eeafaabc9486987fcf2070fbeca"


def tiny(n: int = 6, captions: bool = True) -> ImageData:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    return ImageData(
        name="tiny",
        images=rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8),
        labels=labels,
        class_names=["a", "b"],
        attributes={"parity": (labels.copy(), ["even", "odd"])},
        captions=[f"item {i}" for i in range(n)] if captions else None,
        item_names=[f"tiny/{i}" for i in range(n)],
        split=np.array([0] * (n - 2) + [1, 1], dtype=np.uint8),
        skipped=[("bad.jpg", "zero bytes")],
    )


def test_registry_lists_the_five_kinds_with_param_specs():
    assert set(DATASET_KINDS) == {"digits", "shapes", "image-folder", "mnist-idx", "torchvision",
                                  "text", "shapes-captions", "text8"}
    for name, kind in DATASET_KINDS.items():
        assert isinstance(kind, DatasetKind) and kind.name == name and kind.title and kind.description
        assert all(isinstance(p, ParamSpec) for p in kind.params)
    assert {k for k, v in DATASET_KINDS.items() if v.builtin} == {"digits", "shapes", "shapes-captions"}
    shapes = {p.name: p for p in DATASET_KINDS["shapes"].params}
    assert (shapes["n"].default, shapes["size"].default, shapes["seed"].default) == (2000, 32, 0)
    folder = {p.name: p for p in DATASET_KINDS["image-folder"].params}
    assert folder["path"].type is Path and folder["path"].required
    assert folder["channels"].choices == ("auto", "rgb", "gray")
    tv = {p.name: p for p in DATASET_KINDS["torchvision"].params}
    assert tv["name"].choices == ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "STL10")
    assert tv["download"].default is True


def test_properties_subset_and_stats():
    d = tiny()
    assert (d.n, d.height, d.width, d.channels) == (6, 4, 5, 3)
    sub = d.subset(np.array([5, 0]))
    assert sub.n == 2
    np.testing.assert_array_equal(sub.images[0], d.images[5])
    assert sub.labels.tolist() == [1, 0]
    assert sub.attributes["parity"][0].tolist() == [1, 0]
    assert sub.captions == ["item 5", "item 0"]
    assert sub.item_names == ["tiny/5", "tiny/0"]
    assert sub.split.tolist() == [1, 0]
    masked = d.subset(d.labels == 1)
    assert masked.item_names == ["tiny/1", "tiny/3", "tiny/5"]

    stats = d.stats()
    json.dumps(stats)  # JSON-able
    assert stats["n"] == 6 and stats["size"] == [4, 5] and stats["channels"] == 3
    assert stats["n_classes"] == 2 and stats["class_counts"] == {"a": 3, "b": 3}
    assert stats["attributes"] == {"parity": {"even": 3, "odd": 3}}
    assert stats["n_skipped"] == 1
    assert stats["split"] == {"train": 4, "test": 2}


def test_imagedata_rejects_inconsistent_arrays():
    d = tiny()
    with pytest.raises(DataError, match="uint8"):
        ImageData("x", d.images.astype(np.float32), None, None, {}, None, d.item_names, d.split)
    with pytest.raises(DataError, match="labels"):
        ImageData("x", d.images, d.labels[:3], None, {}, None, d.item_names, d.split)
    with pytest.raises(DataError, match="captions"):
        ImageData("x", d.images, None, None, {}, ["a"], d.item_names, d.split)


def test_fingerprint_is_stable_and_sensitive():
    d = tiny()
    fp = d.fingerprint()
    assert len(fp) == 64 and fp == tiny().fingerprint()
    # The name, item names and split do not change what is learned: not part of it.
    same = tiny()
    same.name, same.item_names, same.split = "other", ["x"] * 6, np.zeros(6, np.uint8)
    assert same.fingerprint() == fp

    pixel = tiny()
    pixel.images[3, 2, 1, 0] ^= 1
    label = tiny()
    label.labels[0] = 1
    caption = tiny()
    caption.captions[2] = "item 2 "
    reshaped = tiny()
    reshaped.images = reshaped.images.reshape(6, 5, 4, 3)
    no_captions = tiny(captions=False)
    prints = {fp, pixel.fingerprint(), label.fingerprint(), caption.fingerprint(),
              reshaped.fingerprint(), no_captions.fingerprint()}
    assert len(prints) == 6


def test_fingerprint_is_stable_across_processes():
    # A fixed value: the same digits must give the same fingerprint in any run
    # (and on any machine), or recorded runs could not be matched to data.
    assert load_images("digits").fingerprint() == DIGITS_FINGERPRINT



def test_stratified_split_is_80_20_per_class_and_seeded():
    labels = np.repeat(np.arange(4), [100, 50, 30, 7])
    split = stratified_split(labels, len(labels), seed=1)
    assert split.dtype == np.uint8
    for c, count in zip(range(4), [100, 50, 30, 7]):
        assert int(split[labels == c].sum()) == round(count * 0.2)
    np.testing.assert_array_equal(split, stratified_split(labels, len(labels), seed=1))
    assert not np.array_equal(split, stratified_split(labels, len(labels), seed=2))
    unlabelled = stratified_split(None, 50, seed=0)
    assert int(unlabelled.sum()) == 10


def test_load_images_converts_string_params_and_rejects_bad_ones():
    d = load_images("shapes", n="12", size="16", seed="3")
    assert d.images.shape == (12, 16, 16, 3)
    with pytest.raises(DataError, match="unknown data set kind 'nope'"):
        load_images("nope")
    with pytest.raises(DataError, match=r"unknown parameter\(s\) colour .*known: n, size, seed"):
        load_images("shapes", colour="red")
    with pytest.raises(DataError, match="n='many' is not a valid int"):
        load_images("shapes", n="many")
    with pytest.raises(DataError, match="size must be at least 4"):
        load_images("shapes", size=2)
    with pytest.raises(DataError, match="channels must be one of auto, rgb, gray"):
        load_images("image-folder", path=".", channels="cmyk")
    with pytest.raises(DataError, match="'path' is required"):
        load_images("image-folder")


def test_progress_and_cancel():
    calls = []
    load_images("shapes", n=3000, size=16, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3000, 3000) and len(calls) > 1
    assert all(total == 3000 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    seen = []

    def cancel() -> bool:
        seen.append(1)
        return len(seen) > 1  # let the first chunk through, then stop

    with pytest.raises(DataCancelled) as err:
        load_images("shapes", n=3000, size=16, cancel=cancel)
    assert str(err.value) == "cancelled" and isinstance(err.value, DataError)


def test_engine_data_imports_neither_qt_nor_torch():
    # engine/ must never import Qt; torch is imported only when a torchvision
    # set is actually loaded, so listing the kinds stays instant.
    code = ("import sys, engine.data, engine.data.builtin, engine.data.shapes, engine.data.folder, "
            "engine.data.idx, engine.data.tv; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'torch')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
