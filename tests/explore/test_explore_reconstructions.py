"""The Reconstructions view's work without Qt: which methods reconstruct and with which
slider, the pictures of one checkpoint at any setting (the method rebuilt by the
workbench), and the stored picture grids split into rows again."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.explore.reconstructions import (ModelCache, Reconstructions, SavedPictures, compute_reconstructions,
                                            load_saved_pictures, reconstructs, setting_of, split_grid)
from engine.images import grid_png
from engine.methods import DataInfo, get_method
from engine.methods.mae import reconstruct_images
from engine.train import RunConfig
from engine.workbench import create_run, load_dataset, load_trained_method


def _run_with_checkpoint(project, method: str, **overrides) -> tuple[int, int]:
    """A run of ``method`` on the digits with one checkpoint of its seeded, untrained weights:
    (run id, checkpoint id)."""
    run_id = create_run(project, "digits", method, {"epochs": "1", **overrides})
    cfg = RunConfig.from_dict(project.run(run_id).config)
    data = load_dataset(project, "digits")
    torch.manual_seed(0)
    m = get_method(method)(cfg.method_config, DataInfo(data.name, data.channels, data.height, data.width, 100))
    ck = project.save_checkpoint(run_id, 1, 1, {"model": m.state_dict(), "optim": {}, "step": 1})
    return run_id, ck


def test_which_methods_reconstruct_and_their_slider():
    assert all(reconstructs(m) for m in ("mae", "autoencoder", "denoising-autoencoder", "channel-prediction"))
    assert not any(reconstructs(m) for m in ("simclr", "clip", "word2vec", "no such method"))
    assert setting_of("mae", {"method_config": {"mask_ratio": 0.6}}) == ("Mask ratio", 0.6)
    assert setting_of("mae", {}) == ("Mask ratio", 0.75)
    assert setting_of("denoising-autoencoder", {"method_config": {"noise": "masking", "level": 0.3}}) == \
        ("Masked fraction", 0.3)
    assert setting_of("denoising-autoencoder", {}) == ("Noise level", 0.5)
    assert setting_of("autoencoder", {}) is None


def test_mae_at_any_ratio_is_the_engines_reconstruction(project):
    run_id, ck = _run_with_checkpoint(project, "mae")
    cache = ModelCache()
    first = compute_reconstructions(project, cache, run_id, ck, None, seed=0)
    assert isinstance(first, Reconstructions) and first.key == (run_id, ck, None, 0)
    assert [k for k, _ in first.rows] == ["original", "input", "reconstruction", "pasted"]
    assert dict(first.rows)["input"].shape == (16, 8, 8, 1) and len(first.items) == 16
    split = load_dataset(project, "digits").split
    assert all(split[i] == 1 for i in first.items)                       # test images
    method = cache.method
    assert cache.key == (run_id, ck)
    # The method is the workbench's, rebuilt from that checkpoint.
    same, _ = load_trained_method(project, run_id, device="cpu", checkpoint_id=ck)
    for (name, a), b in zip(method.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a.cpu(), b), name

    second = compute_reconstructions(project, cache, run_id, ck, 0.25, seed=0)
    assert cache.method is method                                       # reused, not rebuilt
    assert np.array_equal(dict(second.rows)["original"], dict(first.rows)["original"])   # the same images…
    assert not np.array_equal(dict(second.rows)["input"], dict(first.rows)["input"])     # …masked less
    expected = reconstruct_images(method, load_dataset(project, "digits").images[second.items], 0.25, seed=0)
    assert np.array_equal(dict(second.rows)["input"], expected["input"])
    assert np.array_equal(dict(second.rows)["pasted"], expected["pasted"])
    with pytest.raises(AttributeError):
        second.key = None                                               # frozen


def test_denoising_level_is_set_for_the_request_only(project):
    run_id, ck = _run_with_checkpoint(project, "denoising-autoencoder", width="4")
    cache = ModelCache()
    rows = dict(compute_reconstructions(project, cache, run_id, ck, 0.0, seed=1).rows)
    assert np.array_equal(rows["input"], rows["original"])             # no noise: the image itself
    rows = dict(compute_reconstructions(project, cache, run_id, ck, 0.9, seed=1).rows)
    assert np.abs(rows["input"].astype(int) - rows["original"]).mean() > 10
    assert cache.method.cfg.level == 0.5                                # the method's own setting as trained


def test_saved_grids_are_split_into_titled_rows(project):
    """The training loop's PNG grid comes apart into its rows of images again."""
    rng = np.random.default_rng(0)
    for h, w, c in ((8, 8, 1), (16, 16, 3), (32, 32, 3)):
        rows = [rng.integers(0, 256, (5, h, w, c), dtype=np.uint8) for _ in range(3)]
        picture = np.asarray(Image.open(io.BytesIO(grid_png(rows))).convert("RGB"))
        back = split_grid(picture, 3, 5)
        assert back is not None and len(back) == 3
        for got, want in zip(back, rows):
            assert np.array_equal(got, np.repeat(want, 3, axis=3) if c == 1 else want)
    assert split_grid(np.zeros((50, 70, 3), np.uint8), 3, 5) is None            # not such a grid

    # A stored artifact, as the loop saves it: decoded and split.
    run_id = create_run(project, "digits", "mae", {"epochs": "1"})
    rows = [rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8) for _ in range(2)]
    project.save_artifact(run_id, "reconstructions", "png", grid_png(rows), step=7,
                          meta={"rows": ["original", "input"], "n": 4})
    saved = load_saved_pictures(project, project.artifacts(run_id, "reconstructions")[0])
    assert isinstance(saved, SavedPictures) and saved.step == 7 and saved.keys == ["original", "input"]
    assert saved.picture.ndim == 3 and saved.picture.shape[2] == 3
    assert [r.shape for r in saved.rows] == [(4, 8, 8, 3)] * 2
    assert np.array_equal(saved.rows[1], np.repeat(rows[1], 3, axis=3))
