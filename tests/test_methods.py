"""Every registered method: builds, trains a step, embeds, checkpoints, resumes.

Parametrised over the registry, so a method added to ``METHODS`` is tested here
without anyone writing a new test.
"""
import dataclasses

import numpy as np
import pytest
import torch

from engine.augment import default_views, normalize
from engine.config import check
from engine.methods import METHODS, DataInfo, ImageMethod, Method, TextMethod
from engine.store.tensors import pack_state, unpack_state
from engine.train import TrainConfig


def _batch(n=16, c=1, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, h), generator=g, dtype=torch.uint8)


def _captioned(x):
    """An ImageData of batch ``x`` with a caption per image, for methods that need captions."""
    from engine.data import ImageData
    n = len(x)
    return ImageData("test", x.permute(0, 2, 3, 1).numpy(), None, None, {},
                     [f"item {i % 4} of {n}" for i in range(n)], [str(i) for i in range(n)], np.zeros(n))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_card_and_config(name):
    m = METHODS[name]
    check(m.Config())
    assert m.card.title and m.card.loss and m.card.paper and m.card.learns


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if m.modality == "images"))
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_method_trains_embeds_and_restores(name, channels, size):
    torch.manual_seed(0)
    cls = METHODS[name]
    info = DataInfo("test", channels, size, size, 64)
    method = cls(cls.Config(), info)
    x = _batch(16, channels, size)
    views = default_views("test", size, channels)
    kwargs = {}
    if cls.needs_captions:       # CLIP finds each image's captions by its dataset index
        method.prepare(_captioned(x))
        kwargs = {"index": torch.arange(len(x))}
    if cls.iterative:
        opt = torch.optim.SGD(method.parameters(), lr=0.01)
        loss, logs = method(x, views, torch.Generator().manual_seed(1), **kwargs)
        assert loss.ndim == 0 and torch.isfinite(loss)
        before = [p.detach().clone() for p in method.parameters()]
        loss.backward()
        opt.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, method.parameters())), "a step changed nothing"
    else:
        method.fit(normalize(x))
    method.eval()
    emb = method.embed(normalize(x))
    assert emb.shape[0] == 16 and emb.ndim == 2 and torch.isfinite(emb).all()

    # A checkpoint round trip through safetensors restores exactly the same embeddings.
    clone = cls(cls.Config(), info)
    clone.load_state_dict(unpack_state(pack_state({"model": method.state_dict()}))["model"])
    clone.eval()
    assert torch.equal(clone.embed(normalize(x)), emb)


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.reconstructs is not None])
def test_reconstructing_methods_return_drawable_images(name):
    cls = METHODS[name]
    info = DataInfo("test", 3, 16, 16, 64)
    method = cls(cls.Config(), info)
    x = _batch(4, 3, 16)
    if not cls.iterative:
        method.fit(normalize(_batch(64, 3, 16, seed=2)))
    rec = method.reconstruct(x, torch.Generator().manual_seed(0))
    for key in ("original", "input", "reconstruction"):
        assert rec[key].shape == (4, 16, 16, 3) and rec[key].dtype == np.uint8
    assert np.abs(rec["original"].astype(int) - x.permute(0, 2, 3, 1).numpy()).max() <= 1


def test_pca_reconstruction_is_exact_with_all_components():
    cls = METHODS["pca"]
    x = _batch(40, 1, 4)
    method = cls(cls.Config(dim=16), DataInfo("t", 1, 4, 4, 40))
    xn = normalize(x)
    method.fit(xn)
    rec = method.embed(xn) @ method.components + method.mean
    assert torch.allclose(rec, xn.flatten(1), atol=1e-3)
    assert abs(float(method.explained.sum()) - 1.0) < 1e-3


def test_denoising_autoencoder_corrupts_only_its_input():
    cls = METHODS["denoising-autoencoder"]
    x = normalize(_batch(4, 3, 16))
    for noise in ("gaussian", "masking"):
        m = cls(cls.Config(noise=noise, level=0.5), DataInfo("t", 3, 16, 16, 4))
        noisy = m.corrupt(x, torch.Generator().manual_seed(0))
        assert noisy.shape == x.shape and not torch.equal(noisy, x)
        if noise == "masking":
            assert ((noisy == 0) | (noisy == x)).all()


# ---------------------------------------------------------------------------------------------
# Declared kinds and capabilities: every method does what its class says it can do


TEXT_METHODS = sorted(n for n, m in METHODS.items() if m.modality == "text")
#: Small settings that train each text method in seconds on 300 shapes captions.
SMALL_TEXT_RUNS = {
    "word2vec": {"epochs": "2", "sample": "0", "dim": "16", "threads": "1"},
    "mlm": {"tokenizer": "word", "vocab_size": "60", "dim": "32", "depth": "1", "heads": "2", "max_len": "24",
            "batch_size": "64", "epochs": "1"},
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_declares_its_kind_and_implements_what_it_declares(name):
    from engine.loop import TASKS
    cls = METHODS[name]
    kind = {"images": ImageMethod, "text": TextMethod}[cls.modality]
    assert issubclass(cls, kind) and cls.trained_by in TASKS
    assert (cls.trained_by == "images") == (cls.modality == "images")
    # An operation is implemented exactly when its capability is declared.
    for declared, operation in ((cls.reconstructs is not None, "reconstruct"), (cls.fills_masks, "fill_mask"),
                                (cls.encodes_text, "encode_text")):
        assert declared == (getattr(cls, operation) is not getattr(Method, operation)), operation
    if cls.has_word_vectors or cls.fills_masks:
        assert cls.modality == "text"
    if cls.reconstructs is not None or cls.encodes_text or cls.needs_captions:
        assert cls.modality == "images"
    assert not (cls.modality == "text" and cls.uses_views)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(cls.ignores_settings) <= known, set(cls.ignores_settings) - known


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.reconstructs is not None])
def test_a_reconstructing_method_draws_at_its_sliders_default_and_ends(name):
    cls = METHODS[name]
    method = cls(cls.Config(), DataInfo("test", 3, 16, 16, 64))
    if not cls.iterative:
        method.fit(normalize(_batch(64, 3, 16, seed=2)))
    method.eval()
    x = _batch(4, 3, 16)
    slider = cls.reconstructs.slider
    settings = [None] if slider is None else [slider.default, slider.low, slider.high]
    if slider is not None:
        # The declared default and range are the Config's.
        field = {f.name: f for f in dataclasses.fields(cls.Config)}[slider.field]
        assert getattr(cls.Config(), slider.field) == slider.default
        assert field.metadata["min"] <= slider.low <= slider.default <= slider.high <= field.metadata["max"]
        assert cls.reconstruction_slider({}).field == slider.field
    trained = method.cfg
    for setting in settings:
        with method.with_setting(setting):
            if setting is not None:
                assert getattr(method.cfg, slider.field) == setting
            rec = method.reconstruct(x, torch.Generator().manual_seed(0))
        assert method.cfg is trained                       # the setting lasts the block only
        for key in ("original", "input", "reconstruction"):
            assert rec[key].shape == (4, 16, 16, 3) and rec[key].dtype == np.uint8, (setting, key)
    assert cls.reconstructs.input_title and cls.reconstructs.redraws in ("masks", "noise")


def test_a_slider_relabels_by_config():
    dae = METHODS["denoising-autoencoder"]
    assert dae.reconstruction_slider({"noise": "masking"}).label == "Masked fraction"
    assert dae.reconstruction_slider({"noise": "gaussian"}).label == "Noise level"
    assert METHODS["autoencoder"].reconstruction_slider({}) is None


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.encodes_text])
def test_a_method_that_encodes_text_puts_text_in_its_image_space(name):
    cls = METHODS[name]
    x = _batch(16, 3, 16)
    method = cls(cls.Config(), DataInfo("test", 3, 16, 16, 16))
    method.prepare(_captioned(x))
    method.eval()
    texts = method.encode_text(["item 1 of 16", "item 2 of 16"])
    images = method.embed(normalize(x)).detach().numpy()
    assert texts.shape == (2, images.shape[1]) and np.isfinite(texts).all()


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if m.modality == "images"))
def test_a_method_that_needs_captions_refuses_data_without(project, name):
    from engine.config import ConfigError
    from engine.workbench import create_run
    if METHODS[name].needs_captions:
        with pytest.raises(ConfigError, match="no captions"):
            create_run(project, "digits", name, {})       # the digits have no captions
    else:
        assert create_run(project, "digits", name, {}) > 0


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    """A finished small run of every text method on the shapes captions: {method: (project, run id)}."""
    from engine.store import Project
    from engine.workbench import create_run, import_dataset, run_training
    project = Project.create(tmp_path_factory.mktemp("text") / "t.pretext")
    import_dataset(project, "shapes-captions", "captions", n=300)
    runs = {}
    for name in TEXT_METHODS:
        run_id = create_run(project, "captions", name, SMALL_TEXT_RUNS[name])
        events = list(run_training(project, run_id))
        assert type(events[-1]).__name__ == "Finished", events[-1]
        runs[name] = run_id
    yield project, runs
    project.close()


def test_every_text_method_has_small_settings_here():
    assert sorted(SMALL_TEXT_RUNS) == TEXT_METHODS


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_a_text_method_rebuilds_from_its_state_alone(text_runs, name):
    from engine.workbench import load_trained_method
    project, runs = text_runs
    method, _ = load_trained_method(project, runs[name], device="cpu")
    assert type(method) is METHODS[name] and not method.training
    ck = project.latest_checkpoint(runs[name])
    state = method.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ck[2]["model"].items())


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_a_method_with_word_vectors_gives_neighbours_and_others_refuse(text_runs, name):
    from engine.workbench import run_word_vectors
    project, runs = text_runs
    if METHODS[name].has_word_vectors:
        wv = run_word_vectors(project, runs[name])
        near = wv.neighbours("red", k=3)
        assert len(near) == 3 and "red" not in [w for w, _ in near]
    else:
        with pytest.raises(ValueError, match="no word vectors"):
            run_word_vectors(project, runs[name])


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_a_method_that_fills_masks_fills_one(text_runs, name):
    from engine.explore.words import load_fill_mask_model
    project, runs = text_runs
    model = load_fill_mask_model(project, runs[name])
    if METHODS[name].fills_masks:
        (answer,) = model.fill_mask("a small [MASK] circle", k=3)
        assert len(answer) == 3 and all(0 <= p <= 1 for _, p in answer)
    else:
        assert model is None
