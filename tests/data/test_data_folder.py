"""image-folder: folders and zips of the user's own images."""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine.data import DataError, load_images


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def solid(mode: str, colour, size=(20, 20)) -> Image.Image:
    return Image.new(mode, size, colour)


def png_header(width: int, height: int) -> bytes:
    """A PNG that only claims a size: enough to trip a decompression-bomb check."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def noise_bytes(fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def colour_of(d, name: str) -> np.ndarray:
    return d.images[d.item_names.index(name)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two classes with every colour mode worth converting."""
    root = tmp_path / "pets"
    save(root / "cats" / "red.png", solid("RGB", (255, 0, 0)))
    save(root / "cats" / "gray.png", solid("L", 100))
    half = solid("RGBA", (0, 0, 255, 255), (20, 20))
    half.paste((255, 0, 0, 0), (0, 10, 20, 20))                 # bottom half fully transparent
    save(root / "cats" / "rgba.png", half)
    save(root / "cats" / "deep.png", Image.fromarray(np.full((20, 20), 25700, np.uint16)))  # I;16
    save(root / "dogs" / "cmyk.tif", solid("CMYK", (255, 0, 0, 0)))                         # cyan
    palette = solid("RGB", (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    save(root / "dogs" / "pal.gif", palette)
    save(root / "dogs" / "photo.jpg", solid("RGB", (250, 250, 0), (40, 30)), quality=95)
    save(root / "dogs" / "wide.bmp", Image.fromarray(np.concatenate(          # red | green | blue
        [np.full((20, 20, 3), c, np.uint8) for c in ([255, 0, 0], [0, 255, 0], [0, 0, 255])], axis=1)))
    save(root / "dogs" / "mask.webp", solid("L", 255).convert("1"), lossless=True)
    (root / "notes.txt").write_text("not an image and not named like one")
    (root / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_folder_classes_and_colour_conversions(tree: Path):
    d = load_images("image-folder", path=tree, size=8)
    assert d.name == "pets"
    assert d.images.shape == (9, 8, 8, 3) and d.images.dtype == np.uint8
    assert d.class_names == ["cats", "dogs"]
    by_name = dict(zip(d.item_names, d.labels.tolist()))
    assert by_name == {"cats/deep.png": 0, "cats/gray.png": 0, "cats/red.png": 0, "cats/rgba.png": 0,
                       "dogs/cmyk.tif": 1, "dogs/mask.webp": 1, "dogs/pal.gif": 1, "dogs/photo.jpg": 1,
                       "dogs/wide.bmp": 1}
    assert d.item_names == sorted(d.item_names)
    assert d.skipped == []
    assert (colour_of(d, "cats/red.png") == [255, 0, 0]).all()
    assert (colour_of(d, "cats/gray.png") == 100).all()
    rgba = colour_of(d, "cats/rgba.png")
    # Opaque blue top, transparent bottom composited on white (Lanczos rings by a level or two).
    assert np.abs(rgba[:3].astype(int) - [0, 0, 255]).max() <= 2
    assert np.abs(rgba[-3:].astype(int) - [255, 255, 255]).max() <= 2
    assert (colour_of(d, "cats/deep.png") == 100).all()   # 25700 / 65535 * 255, not clipped to 255
    assert (colour_of(d, "dogs/cmyk.tif") == [0, 255, 255]).all()
    assert (colour_of(d, "dogs/pal.gif") == [0, 200, 0]).all()
    assert np.abs(colour_of(d, "dogs/photo.jpg").astype(int) - [250, 250, 0]).max() <= 6
    assert (colour_of(d, "dogs/wide.bmp") == [0, 255, 0]).all()   # centre crop keeps the middle
    assert (colour_of(d, "dogs/mask.webp") == 255).all()
    stats = d.stats()
    # Every file left out is counted and named, hidden ones too (issue 11: only a count was kept).
    assert stats["n_ignored_files"] == 2 and stats["class_counts"] == {"cats": 4, "dogs": 5}
    assert stats["split"]["train"] + stats["split"]["test"] == 9


def test_channels_auto_gray_and_rgb(tmp_path: Path, tree: Path):
    gray = tmp_path / "gray"
    for k in range(3):
        save(gray / f"{k}.png", solid("L", 60 * k))
    save(gray / "rgb-but-gray.jpg", solid("RGB", (90, 90, 90)))
    auto = load_images("image-folder", path=gray, size=4)
    assert auto.channels == 1 and auto.labels is None and auto.class_names is None
    assert sorted(int(auto.images[i].mean()) for i in range(4)) == [0, 60, 90, 120]
    forced = load_images("image-folder", path=gray, size=4, channels="rgb")
    assert forced.channels == 3
    np.testing.assert_array_equal(forced.images[..., 0], auto.images[..., 0])

    as_gray = load_images("image-folder", path=tree, size=4, channels="gray")
    assert as_gray.channels == 1
    assert int(colour_of(as_gray, "cats/red.png").mean()) == 76     # ITU-R 601 luma of red
    assert load_images("image-folder", path=tree, size=4).channels == 3   # colour data stays RGB


def test_every_bad_kind_is_skipped_and_reported(tmp_path: Path):
    root = tmp_path / "mixed"
    save(root / "good.png", solid("RGB", (10, 20, 30)))
    (root / "zero.jpg").write_bytes(b"")
    jpeg, png = noise_bytes("JPEG"), noise_bytes("PNG")
    (root / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    (root / "text.jpg").write_text("this is not a JPEG")
    (root / "bomb.png").write_bytes(png_header(100_000, 100_000))      # Pillow's own hard limit
    (root / "bomb-warn.png").write_bytes(png_header(10_000, 10_000))   # Pillow only warns here
    (root / "bomb-64mp.png").write_bytes(png_header(9_000, 9_000))     # over our 64 MP limit
    os.symlink(root / "gone.png", root / "link.png")
    d = load_images("image-folder", path=root, size=8)
    assert d.item_names == ["good.png"] and d.n == 1
    reasons = dict(d.skipped)
    assert set(reasons) == {"zero.jpg", "cut.jpg", "cut.png", "text.jpg", "bomb.png", "bomb-warn.png",
                            "bomb-64mp.png", "link.png"}
    assert reasons["zero.jpg"] == "zero bytes"
    assert reasons["cut.jpg"] == "truncated file" and reasons["cut.png"] == "truncated file"
    assert reasons["text.jpg"].startswith("not an image")
    assert all(reasons[b].startswith("decompression bomb") for b in ("bomb.png", "bomb-warn.png", "bomb-64mp.png"))
    assert "9000×9000" in reasons["bomb-64mp.png"]
    assert reasons["link.png"] == "broken symlink"
    assert d.stats()["n_skipped"] == 8
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_images_are_refused_even_if_pillow_was_made_lenient(tmp_path: Path, monkeypatch):
    save(tmp_path / "ok.png", solid("RGB", (1, 2, 3)))
    jpeg = noise_bytes("JPEG")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    d = load_images("image-folder", path=tmp_path, size=4)
    assert d.skipped == [("cut.jpg", "truncated file")]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True    # the other code's setting is put back


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="file permissions do not stop root from reading")
def test_unreadable_file_is_skipped(tmp_path: Path):
    save(tmp_path / "ok.png", solid("RGB", (1, 2, 3)))
    locked = save(tmp_path / "locked.png", solid("RGB", (1, 2, 3)))
    locked.chmod(0)
    try:
        d = load_images("image-folder", path=tmp_path, size=4)
    finally:
        locked.chmod(0o644)
    assert d.skipped == [("locked.png", "unreadable (permission denied)")]


def test_no_usable_images_names_the_path(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"^{empty}: no usable images \\(no image files found"):
        load_images("image-folder", path=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("hello")
    with pytest.raises(DataError) as err:
        load_images("image-folder", path=bad)
    assert str(err.value) == (f"{bad}: no usable images (2 files skipped: a.jpg zero bytes, "
                              "b.png not an image (or a format Pillow cannot read))")
    with pytest.raises(DataError, match="no such folder or file"):
        load_images("image-folder", path=tmp_path / "missing")
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder or a .zip file"):
        load_images("image-folder", path=tmp_path / "plain.txt")


def zip_folder(folder: Path, target: Path, wrapper: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, wrapper + f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return target


def test_zip_is_equivalent_to_the_folder(tmp_path: Path, tree: Path):
    folder = load_images("image-folder", path=tree, size=8)
    plain = load_images("image-folder", path=zip_folder(tree, tmp_path / "pets.zip"), size=8)
    assert plain.name == "pets"
    np.testing.assert_array_equal(plain.images, folder.images)
    np.testing.assert_array_equal(plain.labels, folder.labels)
    np.testing.assert_array_equal(plain.split, folder.split)
    assert plain.item_names == folder.item_names and plain.class_names == folder.class_names
    assert plain.fingerprint() == folder.fingerprint()
    # Zipping the folder itself adds a wrapper folder; macOS adds its litter.
    wrapped = load_images("image-folder", size=8, path=zip_folder(
        tree, tmp_path / "wrapped.zip", wrapper="pets/",
        extra={"__MACOSX/pets/._red.png": b"junk", "pets/cats/.hidden.png": b"junk"}))
    assert wrapped.fingerprint() == folder.fingerprint() and wrapped.class_names == ["cats", "dogs"]
    assert wrapped.item_names[0] == "pets/cats/deep.png" and wrapped.skipped == []


def test_zip_members_that_are_bad_are_skipped(tmp_path: Path):
    png = noise_bytes("PNG")
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok.png", png)
        z.writestr("zero.png", b"")
        z.writestr("cut.png", png[:200])
        z.writestr("bomb.png", png_header(100_000, 100_000))
    d = load_images("image-folder", path=path, size=8)
    assert d.item_names == ["ok.png"]
    assert dict(d.skipped) == {"zero.png": "zero bytes", "cut.png": "truncated file",
                               "bomb.png": "decompression bomb (over the 64-megapixel limit)"}


def test_train_test_folders_become_the_split_and_limit_samples_evenly(tmp_path: Path):
    root = tmp_path / "split"
    for part, count in (("train", 8), ("test", 2)):
        for cls, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
            for k in range(count):
                save(root / part / cls / f"{k}.png", solid("RGB", colour, (6, 6)))
    d = load_images("image-folder", path=root, size=6)
    assert d.class_names == ["a", "b"] and d.n == 20
    assert d.stats()["split"] == {"train": 16, "test": 4} and d.stats()["split_from"] == "folders"
    assert all((s == 1) == name.startswith("test/") for s, name in zip(d.split, d.item_names))
    assert all(d.class_names[label] == name.split("/")[1] for label, name in zip(d.labels, d.item_names))

    some = load_images("image-folder", path=root, size=6, limit=10)
    assert some.n == 10 and some.stats()["class_counts"] == {"a": 5, "b": 5}
    assert some.stats()["split"] == {"train": 8, "test": 2}
    again = load_images("image-folder", path=root, size=6, limit=10)
    assert again.item_names == some.item_names                       # seeded


def test_seeded_stratified_split_without_split_folders(tmp_path: Path):
    for cls in ("x", "y"):
        for k in range(10):
            save(tmp_path / "d" / cls / f"{k}.png", solid("L", 10 * k, (4, 4)))
    d = load_images("image-folder", path=tmp_path / "d", size=4)
    assert d.stats()["split"] == {"train": 16, "test": 4} and d.stats()["split_from"] == "seeded 80/20"
    assert [int(d.split[d.labels == c].sum()) for c in (0, 1)] == [2, 2]
    assert load_images("image-folder", path=tmp_path / "d", size=4).split.tolist() == d.split.tolist()


def test_captions_from_csv_and_jsonl(tmp_path: Path, tree: Path):
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text("file,caption\n"
                        "cats/red.png,a red square\n"
                        "cats/red.png,\"a square, red\"\n"
                        "gray.png,a gray patch\n"                # bare name: unique, so it matches
                        "dogs/missing.png,nobody home\n", encoding="utf-8")
    d = load_images("image-folder", path=tree, size=4, captions=csv_file)
    caption = dict(zip(d.item_names, d.captions))
    assert caption["cats/red.png"] == "a red square\na square, red"  # several: one per line
    assert caption["cats/gray.png"] == "a gray patch"
    assert caption["dogs/pal.gif"] == ""
    stats = d.stats()
    assert stats["n_captions"] == 2 and stats["n_captions_total"] == 3
    assert stats["n_items_with_several_captions"] == 1 and stats["n_items_without_caption"] == 7
    assert stats["n_caption_rows_unmatched"] == 1

    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text("\n".join(json.dumps({"file": f, "caption": c}) for f, c in [
        ("dogs/cmyk.tif", "a cyan tile"), ("dogs/cmyk.tif", "cyan"), ("cats/rgba.png", "blue over white")]))
    j = load_images("image-folder", path=tree, size=4, captions=jsonl)
    caption = dict(zip(j.item_names, j.captions))
    assert caption["dogs/cmyk.tif"] == "a cyan tile\ncyan" and caption["cats/rgba.png"] == "blue over white"
    assert j.stats()["n_captions_total"] == 3 and j.fingerprint() != d.fingerprint()

    # Captions travel with a zip too, and a relative name is found inside it.
    archive = zip_folder(tree, tmp_path / "pets.zip", extra={"captions.jsonl": jsonl.read_bytes()})
    z = load_images("image-folder", path=archive, size=4, captions="captions.jsonl")
    assert z.captions == j.captions

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"file": "a.png"}\n')
    with pytest.raises(DataError, match="broken.jsonl, line 1"):
        load_images("image-folder", path=tree, captions=broken)
    with pytest.raises(DataError, match="captions file not found"):
        load_images("image-folder", path=tree, captions=tmp_path / "none.csv")


def test_large_photo_is_downscaled_and_centre_cropped(tmp_path: Path):
    # 1200×800 JPEG: the draft mode decodes at reduced scale; the result must
    # still be the centre square, resized.
    pixels = np.zeros((800, 1200, 3), np.uint8)
    pixels[:, :200] = [255, 0, 0]          # left strip: cropped away
    pixels[:, 200:1000] = [0, 0, 255]      # centre square
    pixels[:, 1000:] = [0, 255, 0]         # right strip: cropped away
    save(tmp_path / "big.jpg", Image.fromarray(pixels), quality=95)
    d = load_images("image-folder", path=tmp_path, size=16)
    img = d.images[0].astype(int)
    assert np.abs(img[:, 1:-1] - [0, 0, 255]).max() <= 30


def test_progress_is_reported(tmp_path: Path):
    for k in range(600):
        save(tmp_path / "many" / f"{k:03d}.png", solid("L", k % 256, (4, 4)))
    calls = []
    d = load_images("image-folder", path=tmp_path / "many", size=4,
                    progress=lambda done, total: calls.append((done, total)))
    assert d.n == 600 and calls == [(256, 600), (512, 600), (600, 600)]


@pytest.mark.shared_data
def test_cifar10_zip_from_shared_data(shared_data: Path):
    d = load_images("image-folder", path=shared_data / "cifar10" / "cifar10-jpeg.zip", limit=2000)
    assert d.images.shape == (2000, 32, 32, 3)
    assert d.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                             "ship", "truck"]
    stats = d.stats()
    assert stats["class_counts"] == {name: 200 for name in d.class_names}
    assert stats["split"] == {"train": 1667, "test": 333} or \
        abs(stats["split"]["test"] - 333) <= 5
    assert stats["n_skipped"] == 0
    assert all(name.startswith(("train/", "test/")) for name in d.item_names)
    pixels = np.asarray(d.images)
    assert 60 < pixels.mean() < 200 and pixels.std() > 30        # real photos, not blanks


def test_exif_orientation_is_applied(tmp_path: Path):
    # Stored wide (red | blue) with "rotate 90° clockwise to display": shown tall, red on top.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = [255, 0, 0]
    pixels[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "phone.jpg", Image.fromarray(pixels), exif=exif.tobytes(), quality=95)
    img = load_images("image-folder", path=tmp_path, size=8).images[0].astype(int)
    assert np.abs(img[:3] - [255, 0, 0]).max() <= 40 and np.abs(img[-3:] - [0, 0, 255]).max() <= 40


def test_cancel_stops_a_folder_load(tmp_path: Path):
    save(tmp_path / "a.png", solid("L", 1))
    with pytest.raises(DataError, match="^cancelled$"):
        load_images("image-folder", path=tmp_path, cancel=lambda: True)


def test_ignored_files_are_named_with_why(tmp_path: Path):
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(root / "cats" / "red.png")
    Image.new("RGB", (4, 4), (0, 255, 0)).save(root / ".hidden.jpg")
    Image.new("RGB", (4, 4), (0, 0, 255)).save(root / ".thumbnails" / "t.png")
    (root / "notes.txt").write_text("not an image")
    (root / "cats" / "README").write_text("no extension")
    d = load_images("image-folder", path=root, size=4)
    assert d.item_names == ["cats/red.png"]
    expected = [[".thumbnails/", "hidden folder"], [".hidden.jpg", "hidden"], ["notes.txt", "not an image"],
                ["cats/README", "not an image"]]
    assert d.info["ignored_files"] == expected and d.info["n_ignored_files"] == 4
    assert d.stats()["ignored_files"] == expected

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(root / "cats" / "red.png", "cats/red.png")
        z.write(root / ".hidden.jpg", ".hidden.jpg")
        z.writestr("notes.txt", "not an image")
        z.writestr("__MACOSX/cats/._red.png", b"junk")
    d = load_images("image-folder", path=archive, size=4)
    assert d.item_names == ["cats/red.png"]
    assert d.info["ignored_files"] == [[".hidden.jpg", "hidden"], ["notes.txt", "not an image"],
                                       ["__MACOSX/cats/._red.png", "macOS resource fork"]]
