"""The built-in sets: scikit-learn digits and the procedural shapes."""
from __future__ import annotations

import re

import numpy as np
import pytest

from engine.data import load_images
from engine.data import shapes as shapes_mod


def test_digits():
    d = load_images("digits")
    assert d.name == "digits"
    assert d.images.shape == (1797, 8, 8, 1) and d.images.dtype == np.uint8
    assert d.images.min() == 0 and d.images.max() == 255          # 0..16 scaled to 0..255
    assert set(np.unique(d.images)) <= {round(v * 255 / 16) for v in range(17)}
    assert d.labels.dtype == np.int64 and d.labels.shape == (1797,)
    assert d.labels[:10].tolist() == list(range(10))               # the data set's first ten
    assert d.class_names == [str(k) for k in range(10)]
    assert np.bincount(d.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert d.item_names[17] == "digits/17" and d.captions is None and d.attributes == {}
    # no natural split: a stratified 80/20 one
    for c in range(10):
        members = d.labels == c
        assert int(d.split[members].sum()) == round(members.sum() * 0.2)


@pytest.fixture(scope="module")
def shapes():
    return load_images("shapes")  # the defaults: 2,000 at 32×32, seed 0


def test_shapes_defaults_and_balance(shapes):
    assert shapes.images.shape == (2000, 32, 32, 3) and shapes.images.dtype == np.uint8
    assert shapes.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert set(shapes.attributes) == {"shape", "colour", "size", "position"}
    np.testing.assert_array_equal(shapes.labels, shapes.attributes["shape"][0])
    for key, (ids, names) in shapes.attributes.items():
        counts = np.bincount(ids, minlength=len(names))
        assert counts.min() >= len(ids) // len(names), key          # every value, evenly
    colours = shapes.attributes["colour"][1]
    assert len(colours) >= 6 and {"red", "green", "blue", "yellow", "purple", "orange"} <= set(colours)
    assert shapes.attributes["size"][1] == ["small", "medium", "large"]
    assert len(shapes.attributes["position"][1]) == 9
    stats = shapes.stats()
    assert stats["split"] == {"train": 1600, "test": 400}
    assert stats["class_counts"] == {name: 400 for name in shapes.class_names}


def test_shapes_captions_match_attributes(shapes):
    a = shapes.attributes
    templates_used = set()
    for i, caption in enumerate(shapes.captions):
        facts = {k: a[k][1][a[k][0][i]] for k in a}
        variants = shapes_mod.caption_variants(facts["shape"], facts["colour"], facts["size"],
                                               facts["position"])
        assert caption in variants, (caption, facts)
        templates_used.add(variants.index(caption))
        words = set(re.findall(r"[a-z]+", caption))
        assert {facts["shape"], facts["colour"], facts["size"]} <= words
        # No other shape, colour or size is named.
        assert not words & (set(a["shape"][1]) - {facts["shape"]})
        assert not words & (set(a["colour"][1]) - {facts["colour"]})
        assert not words & (set(a["size"][1]) - {facts["size"]})
        assert caption.endswith(shapes_mod.WHERE[facts["position"]]) or \
            caption.startswith(shapes_mod.WHERE[facts["position"]] + ",")
    assert len(templates_used) == len(shapes_mod.TEMPLATES)
    assert "a small red triangle at the top left" in shapes_mod.caption_variants(
        "triangle", "red", "small", "top left")


def test_shapes_are_deterministic_per_seed():
    a = load_images("shapes", n=300, seed=5)
    b = load_images("shapes", n=300, seed=5)
    c = load_images("shapes", n=300, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and a.fingerprint() == b.fingerprint()
    assert a.split.tolist() == b.split.tolist()
    assert not np.array_equal(a.images, c.images) and a.fingerprint() != c.fingerprint()


def test_shapes_size_param():
    d = load_images("shapes", n=40, size=48, seed=1)
    assert d.images.shape == (40, 48, 48, 3)
    small = load_images("shapes", n=40, size=16, seed=1)
    assert small.images.shape == (40, 16, 16, 3)


def test_shapes_are_visible_inside_the_image_and_where_the_label_says(shapes):
    lay = shapes_mod.layout(2000, 32, 0)
    np.testing.assert_array_equal(lay.shape, shapes.labels)
    x = np.clip(lay.cx.astype(int), 0, 31)
    y = np.clip(lay.cy.astype(int), 0, 31)
    idx = np.arange(2000)
    centre = shapes.images[idx, y, x].astype(int)
    # The image corner farthest from the shape is always background.
    far_x = np.where(lay.cx < 16, 31, 0)
    far_y = np.where(lay.cy < 16, 31, 0)
    corner = shapes.images[idx, far_y, far_x].astype(int)
    contrast = np.abs(centre - corner).max(axis=1)
    assert contrast.min() > 60, contrast.min()
    # The shape's pixels carry its colour (jitter is ±18 per channel, noise a few levels).
    palette = np.array(list(shapes_mod.COLOURS.values()))
    assert np.abs(centre - palette[lay.colour]).max() <= 18 + 25
    # Whole shape inside the image, and in the grid cell its label names.
    reach = shapes_mod.EXTENT * lay.radius
    assert (lay.cx - reach >= 0).all() and (lay.cx + reach <= 32).all()
    assert (lay.cy - reach >= 0).all() and (lay.cy + reach <= 32).all()
    col, row = lay.position % 3, lay.position // 3
    for coord, cell in ((lay.cx, col), (lay.cy, row)):
        assert (coord[cell == 0] < 16).all() and (coord[cell == 2] > 16).all()
        assert (np.abs(coord[cell == 1] - 16) <= 0.04 * 32 + 1e-4).all()
    # Large shapes cover more pixels than small ones.
    bright = (shapes.images.max(axis=3) > 150).sum(axis=(1, 2))
    by_size = [bright[shapes.attributes["size"][0] == k].mean() for k in range(3)]
    assert by_size[0] < by_size[1] < by_size[2]


def test_shapes_edges_are_anti_aliased(shapes):
    # Anti-aliasing leaves intermediate values along the edges of a circle on a
    # noise-free background; a hard-edged drawing would have only two levels.
    lay = shapes_mod.layout(2000, 32, 0)
    i = int(np.flatnonzero((lay.shape == 0) & (lay.noise_sd == 0) & (lay.size == 2))[0])
    channel = int(np.argmax(lay.fg[i] - lay.bg[i]))
    values = shapes.images[i, :, :, channel].astype(int)
    lo, hi = values.min(), values.max()
    between = ((values > lo + 0.2 * (hi - lo)) & (values < hi - 0.2 * (hi - lo))).sum()
    assert between >= 8
