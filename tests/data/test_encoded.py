"""Images stored encoded (issue 13): any number of items, bounded import memory, link mode."""
import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import workbench
from engine.data import DataError, load_images
from engine.data.encoded import (EncodedImages, LinkError, MemoryItems, decode, encode_array,
                                 encode_for_storage)
from engine.store import Project


def _jpeg(rgb, size=(96, 96), quality=90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(int(c) for c in rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_forty_thousand_images_at_96_px_store_and_read_back(tmp_path):
    """Beyond the old one-blob limit (40,000 × 96 × 96 × 3 = 1.1 GB decoded): stored one row
    per item, read back by index from a fresh process's connection."""
    n = 40_000
    palette = [_jpeg((r, g, 255 - r)) for r in range(0, 256, 32) for g in range(0, 256, 32)]   # 64 colours
    items = [palette[i % len(palette)] for i in range(n)]
    images = EncodedImages(MemoryItems(items), 96, 3)
    with Project.create(tmp_path / "big.pretext") as p:
        ds = p.add_dataset("big", "image-folder", {}, n, "fp", {"size": [96, 96], "channels": 3},
                           arrays={"split": np.zeros(n, np.uint8)}, strings={"item_names": [str(i) for i in range(n)]})
        workbench.store_images(p, ds, images)
    with Project.open(tmp_path / "big.pretext", read_only=True) as p:
        data = workbench.load_dataset(p, "big")
        assert data.images.shape == (n, 96, 96, 3)
        pick = np.array([0, 1, 63, 64, 12_345, 39_999])
        back = data.images[pick]
        for k, i in enumerate(pick):
            np.testing.assert_array_equal(back[k], decode(palette[i % 64], 96, 3))
        assert data.fingerprint() == workbench.load_dataset(p, "big").fingerprint()
    assert (tmp_path / "big.pretext").stat().st_size < 60 * 2**20      # encoded: ~1 KB per item


def _folder(root: Path, n: int, size=(64, 48)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.jpg", quality=80)
    return root


def _import_peak(folder: Path, tmp_path: Path, name: str) -> int:
    with Project.create(tmp_path / f"{name}.pretext") as p:
        tracemalloc.start()
        try:
            workbench.import_dataset(p, "image-folder", name, path=str(folder), size=32)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            workbench._CACHE.clear()


def test_import_memory_stays_bounded(tmp_path):
    """Ten times the files, not ten times the memory: files go through a window of the
    thread pool into a spool file, then into the project in batches."""
    small = _import_peak(_folder(tmp_path / "small", 300), tmp_path, "small")
    large = _import_peak(_folder(tmp_path / "large", 3000), tmp_path, "large")
    # Per item only a name, a label and an offset stay in memory (~100 bytes each).
    assert large < small + 3000 * 1000, (small, large)
    assert large < 3 * small, (small, large)


def test_store_size_keeps_small_files_and_shrinks_large_ones(tmp_path):
    small, large = _jpeg((10, 200, 30), (200, 150)), _jpeg((10, 200, 30), (800, 600))
    assert encode_for_storage(small, 256) == (small, False)          # kept byte for byte
    shrunk, gray = encode_for_storage(large, 256)
    with Image.open(io.BytesIO(shrunk)) as im:
        assert im.format == "JPEG" and im.size == (341, 256) and not gray
    png = encode_array(np.full((5, 7, 1), 77, np.uint8))
    assert (decode(png, 7, 1) == 77).all()                           # lossless for arrays
    # The same photo trains at several sizes without re-importing.
    images = EncodedImages(MemoryItems([shrunk]), 32, 3)
    assert images[0].shape == (32, 32, 3) and images.at_size(224)[0].shape == (224, 224, 3)


def test_identical_reimport_is_recognised(tmp_path):
    folder = _folder(tmp_path / "imgs", 12)
    with Project.create(tmp_path / "p.pretext") as p:
        first, _ = workbench.import_dataset(p, "image-folder", "photos", path=str(folder), size=16)
        again, data = workbench.import_dataset(p, "image-folder", None, path=str(folder), size=16)
        assert again == first and data.info["already_imported"] == "photos"
        assert len(p.datasets()) == 1


def test_cancelled_import_leaves_nothing(tmp_path, monkeypatch):
    """Cancel while the items are being written: the half-stored dataset goes away."""
    folder = _folder(tmp_path / "imgs", 40)
    monkeypatch.setattr(workbench, "STORE_BATCH", 8)
    with Project.create(tmp_path / "p.pretext") as p:
        stored = []

        def cancel():
            rows = p.datasets()
            stored.append(bool(rows) and rows[0].stats.get("importing"))
            return stored[-1]            # as soon as storing has begun
        with pytest.raises(DataError, match="cancelled"):
            workbench.import_dataset(p, "image-folder", "photos", path=str(folder), size=16, cancel=cancel)
        assert any(stored) and p.datasets() == []


def test_link_mode_reports_moved_and_changed_files(tmp_path):
    folder = _folder(tmp_path / "imgs", 9)
    with Project.create(tmp_path / "p.pretext") as p:
        ds, _ = workbench.import_dataset(p, "image-folder", "linked", path=str(folder), size=16, link=True)
        project_size = (tmp_path / "p.pretext").stat().st_size
        copied, _ = workbench.import_dataset(p, "image-folder", "copied", path=str(folder), size=16)
        workbench._CACHE.clear()
        linked, copy = workbench.load_dataset(p, ds), workbench.load_dataset(p, copied)
        np.testing.assert_array_equal(np.asarray(linked.images), np.asarray(copy.images))
        assert linked.images.source.problems() == []
        names = linked.item_names
        moved = folder / names[0]
        moved.rename(folder / "elsewhere.jpg")
        changed = folder / names[1]
        data = bytearray(changed.read_bytes())
        data[-3] ^= 0xFF                                      # same size, other content
        changed.write_bytes(bytes(data))
        quick = linked.images.source.problems()
        full = linked.images.source.problems(check_contents=True)
        assert quick == [(str(moved), "missing")]
        assert full == [(str(moved), "missing"), (str(changed), "changed")]
        with pytest.raises(LinkError, match=f"{moved}: moved or deleted"):
            linked.images[0]
        with pytest.raises(LinkError, match=f"{changed}: changed since it was imported"):
            linked.images[1]
        np.testing.assert_array_equal(linked.images[2], copy.images[2])      # the others still read
    assert project_size < 200_000                                 # references, not copies


def test_link_mode_needs_a_folder(tmp_path):
    import zipfile
    folder = _folder(tmp_path / "imgs", 3)
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.rglob("*.jpg"):
            z.write(f, f.relative_to(folder))
    with pytest.raises(DataError, match="link=true keeps references to files in a folder"):
        load_images("image-folder", path=archive, link=True)


def test_a_run_on_moved_linked_files_stops_before_its_first_step(tmp_path):
    from engine.train import Failed, Step
    folder = _folder(tmp_path / "imgs", 30)
    with Project.create(tmp_path / "p.pretext") as p:
        workbench.import_dataset(p, "image-folder", "linked", path=str(folder), size=16, link=True)
        gone = sorted(folder.rglob("*.jpg"))[4]
        gone.unlink()
        run = workbench.create_run(p, "linked", "simclr", {"epochs": "1", "width": "4", "batch_size": "8"})
        events = list(workbench.run_training(p, run))
        assert not any(isinstance(e, Step) for e in events)
        assert isinstance(events[-1], Failed) and f"{gone} (missing)" in events[-1].error
        assert "linked image files are missing or changed" in events[-1].error


def test_pictures_for_people_come_at_the_stored_resolution():
    from engine.data import picture
    photo = _jpeg((200, 40, 40), (120, 90))
    images = EncodedImages(MemoryItems([photo]), 16, 3)
    assert images[0].shape == (16, 16, 3)                   # what training sees
    assert picture(images, 0).shape == (90, 90, 3)          # what the hover card shows
    arr = np.zeros((2, 8, 8, 1), np.uint8)
    assert picture(arr, 1).shape == (8, 8, 1)
