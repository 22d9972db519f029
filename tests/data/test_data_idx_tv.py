"""mnist-idx (IDX files) and torchvision sets (without touching the network)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from engine.data import DataError, load_images


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> Path:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + np.ascontiguousarray(array, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_small_generated_idx(tmp_path: Path):
    pixels = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3) * 4
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    images_file = write_idx(tmp_path / "imgs-idx3-ubyte.gz", pixels, compress=True)
    labels_file = write_idx(tmp_path / "labels-idx1-ubyte", labels)
    d = load_images("mnist-idx", images=images_file, labels=labels_file)
    assert d.name == "imgs-idx3-ubyte"
    assert d.images.shape == (5, 4, 3, 1) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images[..., 0], pixels)
    assert d.labels.tolist() == [3, 1, 4, 1, 5] and d.labels.dtype == np.int64
    assert d.class_names == ["0", "1", "2", "3", "4", "5"]
    assert d.split.tolist() == [0] * 5                            # all train by default
    assert d.item_names[2] == "imgs-idx3-ubyte/2"
    last = load_images("mnist-idx", images=images_file, test_last=2)
    assert last.split.tolist() == [0, 0, 0, 1, 1] and last.labels is None


def test_float_idx_is_scaled_to_bytes(tmp_path: Path):
    pixels = np.linspace(0, 1, 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2)
    d = load_images("mnist-idx", images=write_idx(tmp_path / "f.idx", pixels, code=0x0D))
    assert d.images[0, 0, 0, 0] == 0 and d.images[-1, -1, -1, 0] == 255


def test_bad_idx_files_give_clear_errors(tmp_path: Path):
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 20)
    with pytest.raises(DataError, match=f"{bad_magic}: not an IDX file \\(bad magic number 12340803"):
        load_images("mnist-idx", images=bad_magic)
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError, match="not an IDX file"):
        load_images("mnist-idx", images=png)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match=r"10×28×28 values .* but the file holds 100 bytes"):
        load_images("mnist-idx", images=short)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(b"\0" * 1000)[:20])
    with pytest.raises(DataError, match="broken gzip file"):
        load_images("mnist-idx", images=broken_gz)
    images = write_idx(tmp_path / "imgs", np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(DataError, match="3 labels for the 4 images"):
        load_images("mnist-idx", images=images, labels=write_idx(tmp_path / "l", np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="expected images of shape"):
        load_images("mnist-idx", images=write_idx(tmp_path / "flat", np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="test_last=9 but the file has only 4 images"):
        load_images("mnist-idx", images=images, test_last=9)
    with pytest.raises(DataError, match="no such file"):
        load_images("mnist-idx", images=tmp_path / "absent")


@pytest.mark.shared_data
def test_shared_mnist(shared_data: Path):
    d = load_images("mnist-idx", images=shared_data / "mnist" / "t10k-images-idx3-ubyte.gz",
                    labels=shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", test_last=2000)
    assert d.images.shape == (10000, 28, 28, 1) and d.images.dtype == np.uint8
    assert d.class_names == [str(k) for k in range(10)]
    assert np.bincount(d.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert d.stats()["split"] == {"train": 8000, "test": 2000}
    assert d.split[:8000].max() == 0 and d.split[8000:].min() == 1
    assert d.images.max() == 255 and 30 < d.images.mean() < 36       # MNIST's mean is ~33


def test_torchvision_without_internet_explains_what_to_do(tmp_path: Path, offline):
    root = tmp_path / "tv"
    with pytest.raises(DataError) as err:
        load_images("torchvision", name="CIFAR10", root=root)
    assert str(err.value) == (
        f"could not download CIFAR10 to {root}: no internet connection? "
        "(<urlopen error [Errno -3] Temporary failure in name resolution>). "
        "Put the files there by hand or import an image folder instead.")
    with pytest.raises(DataError, match=f"could not download MNIST to {root}: no internet connection"):
        load_images("torchvision", name="MNIST", root=root)


def test_torchvision_without_files_and_download_off(tmp_path: Path):
    pytest.importorskip("torchvision")
    with pytest.raises(DataError, match="STL10 is not in .* and downloading is off"):
        load_images("torchvision", name="STL10", root=tmp_path, download="false")
