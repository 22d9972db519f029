"""STL-10 read lazily from its binary files (a tiny fake in the real format, no network)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.data import DataCancelled, DataError, load_images
from engine.data.tv import STL10_URL, StackedImages

CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def write_stl10(root: Path, n_unlabelled: int = 20, n_train: int = 10, n_test: int = 8) -> dict:
    """root/stl10_binary/ as in the official archive: per image 3 channels of
    96×96 bytes, each channel stored column by column; labels one byte each,
    1..10. Returns the (N, 96, 96, 3) images and 0-based labels written."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for part, n in (("unlabeled", n_unlabelled), ("train", n_train), ("test", n_test)):
        hwc = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        # byte (c * 96 + x) * 96 + y of an image is the pixel at row y, column x, channel c
        (folder / f"{part}_X.bin").write_bytes(np.ascontiguousarray(hwc.transpose(0, 3, 2, 1)).tobytes())
        labels = None
        if part != "unlabeled":
            labels = np.arange(n) % 10
            (folder / f"{part}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[part] = (hwc, labels)
    (folder / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    return written


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "tv"
    return root, write_stl10(root)


def test_fake_stl10_items_labels_and_splits(fake):
    root, written = fake
    d = load_images("torchvision", name="STL10", root=root, download=False)
    assert d.name == "STL10"
    assert d.images.shape == (38, 96, 96, 3) and d.images.dtype == np.uint8 and d.images.ndim == 4
    assert d.n == 38 and len(d.images) == 38
    assert d.class_names == CLASSES
    # labelled train, then test, then the unlabelled images
    assert d.labels.tolist() == list(range(10)) + [0, 1, 2, 3, 4, 5, 6, 7] + [-1] * 20
    assert d.split.tolist() == [0] * 10 + [1] * 8 + [0] * 20
    assert int(np.sum(d.split == 0)) == 30 and int(np.sum(d.split == 1)) == 8
    assert d.info["n_unlabelled"] == 20 and d.info["source"] == "torchvision STL10"
    assert d.item_names[:2] == ["STL10/train/0", "STL10/train/1"]
    assert d.item_names[17] == "STL10/test/7" and d.item_names[18] == "STL10/unlabeled/00"
    assert d.item_names[-1] == "STL10/unlabeled/19"
    # pixels in the right orientation, read through every kind of index
    train, test, unlabelled = written["train"][0], written["test"][0], written["unlabeled"][0]
    np.testing.assert_array_equal(d.images[3], train[3])
    np.testing.assert_array_equal(d.images[-1], unlabelled[19])
    np.testing.assert_array_equal(d.images[8:21], np.concatenate([train[8:], test, unlabelled[:3]]))
    np.testing.assert_array_equal(d.images[[25, 0, 12]], np.stack([unlabelled[7], train[0], test[2]]))
    np.testing.assert_array_equal(d.images[::10], np.stack([train[0], test[0], unlabelled[2], unlabelled[12]]))
    assert d.images[12, 5, 7, 2] == test[2, 5, 7, 2] and d.images[12, 5, 7].tolist() == test[2, 5, 7].tolist()
    np.testing.assert_array_equal(d.images[d.split == 1], test)
    assert type(d.images[4:6]) is np.ndarray and type(d.images[4]) is np.ndarray
    np.testing.assert_array_equal(np.asarray(d.images), np.concatenate([train, test, unlabelled]))
    sub = d.subset(np.array([20, 2]))
    np.testing.assert_array_equal(sub.images, np.stack([unlabelled[2], train[2]]))
    assert sub.labels.tolist() == [-1, 2]


def test_same_pixels_as_torchvisions_reader(fake, monkeypatch):
    tvd = pytest.importorskip("torchvision.datasets")
    root, _ = fake
    # torchvision checks the real files' md5 even with download=False; the fake has other sums.
    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)
    d = load_images("torchvision", name="STL10", root=root, download=False)
    for split, offset, picks in (("train", 0, (0, 4, 9)), ("test", 10, (0, 7)), ("unlabeled", 18, (0, 13, 19))):
        ds = tvd.STL10(str(root), split=split, download=False)
        assert ds.classes == CLASSES
        for i in picks:
            image, label = ds[i]
            np.testing.assert_array_equal(d.images[offset + i], np.asarray(image))
            assert d.labels[offset + i] == label


def test_images_are_read_lazily(fake):
    root, written = fake
    d = load_images("torchvision", name="STL10", root=root, download=False)
    assert isinstance(d.images, StackedImages) and not isinstance(d.images, np.ndarray)
    assert all(isinstance(p, np.memmap) for p in d.images.parts)

    touched: list[tuple[int, object]] = []

    class Spy:
        def __init__(self, k, part):
            self.k, self.part = k, part

        def __len__(self):
            return len(self.part)

        def __getitem__(self, key):
            touched.append((self.k, key))
            return self.part[key]

    d.images.parts = [Spy(k, p) for k, p in enumerate(d.images.parts)]
    np.testing.assert_array_equal(d.images[12], written["test"][0][2])
    assert touched == [(1, 2)]                        # only the test file, only its item 2
    touched.clear()
    d.images[16:20]
    assert [k for k, _ in touched] == [1, 2] and touched[0][1] == slice(6, 8)
    # the file itself is read on demand: a change on disk shows through
    unlabelled = root / "stl10_binary" / "unlabeled_X.bin"
    d2 = load_images("torchvision", name="STL10", root=root, download=False)
    raw = bytearray(unlabelled.read_bytes())
    raw[0] = (raw[0] + 1) % 256                     # image 0, channel 0, row 0, column 0
    unlabelled.write_bytes(bytes(raw))
    assert d2.images[18, 0, 0, 0] == raw[0] != written["unlabeled"][0][0, 0, 0, 0]


def test_present_files_need_no_download(fake, offline):
    root, _ = fake
    d = load_images("torchvision", name="STL10", root=root)            # download on, network off
    assert d.n == 38


def test_progress_and_cancel(fake):
    root, _ = fake
    seen: list[tuple[int, int]] = []
    load_images("torchvision", name="STL10", root=root, download=False,
                progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]
    with pytest.raises(DataCancelled):
        load_images("torchvision", name="STL10", root=root, download=False, cancel=lambda: len(seen) > 4,
                    progress=lambda done, total: seen.append((done, total)))
    assert seen[4:] == [(0, 4)]                       # stopped before reading the first file


def test_offline_without_files_says_what_to_get(tmp_path: Path, offline):
    root = tmp_path / "tv"
    folder = root / "stl10_binary"
    files = "train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin"
    with pytest.raises(DataError) as err:
        load_images("torchvision", name="STL10", root=root)
    assert str(err.value) == (
        f"could not download STL10 to {root}: no internet connection? "
        "(<urlopen error [Errno -3] Temporary failure in name resolution>). "
        f"Missing in {folder}: {files}. To add it by hand, download {STL10_URL} (2.6 GB) and unpack it "
        f"in {root}, so that {folder} holds {files} and class_names.txt; or import an image folder instead.")
    with pytest.raises(DataError) as err:
        load_images("torchvision", name="STL10", root=root, download=False)
    assert str(err.value) == (
        f"STL10 is not in {folder} and downloading is off (missing: {files}). Turn download on, or "
        f"download {STL10_URL} (2.6 GB) and unpack it in {root}, so that {folder} holds {files} and "
        "class_names.txt; or import an image folder instead.")


def test_damaged_files_give_clear_errors(fake):
    root, _ = fake
    folder = root / "stl10_binary"
    (folder / "test_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(DataError, match=r"test_y.bin: 3 labels for 8 images"):
        load_images("torchvision", name="STL10", root=root, download=False)
    (folder / "test_y.bin").write_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 11]))
    with pytest.raises(DataError, match=r"test_y.bin: labels must be 1..10, found 1..11"):
        load_images("torchvision", name="STL10", root=root, download=False)
    (folder / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DataError, match=r"train_X.bin: 1,000 bytes is not a whole number of 96×96 RGB images"):
        load_images("torchvision", name="STL10", root=root, download=False)
    (folder / "train_X.bin").unlink()
    with pytest.raises(DataError, match=r"downloading is off \(missing: train_X.bin\)"):
        load_images("torchvision", name="STL10", root=root, download=False)


def test_stacked_images_rejects_bad_indices():
    images = StackedImages([np.zeros((2, 3, 3, 1), np.uint8), np.ones((1, 3, 3, 1), np.uint8)])
    assert images.shape == (3, 3, 3, 1) and images[2].sum() == 9 and images[-3].sum() == 0
    assert images[5:9].shape == (0, 3, 3, 1) and images[[]].shape == (0, 3, 3, 1)
    for bad in (3, -4, [0, 3], np.ones(2, bool), [0.5]):
        with pytest.raises(IndexError):
            images[bad]
