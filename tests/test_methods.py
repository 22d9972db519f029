"""Every registered method: builds, trains a step, embeds, checkpoints, resumes.

Parametrised over the registry, so a method added to ``METHODS`` is tested here
without anyone writing a new test.
"""
import numpy as np
import pytest
import torch

from engine.augment import default_views, normalize
from engine.config import check
from engine.methods import METHODS, DataInfo
from engine.store.tensors import pack_state, unpack_state


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


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.reconstruct is not METHODS["simclr"].reconstruct])
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
