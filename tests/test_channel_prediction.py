"""Channel prediction: what is held out, what the encoder sees, the loss, training, grayscale."""
import numpy as np
import pytest
import torch

from engine.augment import NO_VIEWS, normalize
from engine.methods import METHODS, DataInfo
from engine.methods.channel_prediction import ChannelPrediction, ChannelPredictionConfig


@pytest.fixture
def one_thread():
    """Small models train faster on one thread where cores are shared: a second intra-op
    thread mostly waits for a core (measured ~4× slower per step on a loaded 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _method(channels=3, size=16, **cfg):
    torch.manual_seed(0)
    return ChannelPrediction(ChannelPredictionConfig(**cfg), DataInfo("t", channels, size, size, 64))


def _images(n=8, c=3, h=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, h), generator=g, dtype=torch.uint8)


def test_registered():
    assert METHODS["channel-prediction"] is ChannelPrediction


@pytest.mark.parametrize("target", ["r", "g", "b"])
def test_fixed_channel_is_really_absent_from_the_input(target):
    m = _method(target=target)
    c = "rgb".index(target)
    x = _images(4)
    mask = m.holdout_mask(4, "cpu", torch.Generator().manual_seed(0))
    assert (mask[:, c] == 1).all() and mask.sum() == 4 * 16 * 16
    seen = []
    m.backbone.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].clone(), out.clone())))
    m.train()
    m.training_step(x, NO_VIEWS, torch.Generator().manual_seed(0))
    inp = seen[-1][0]
    assert inp.shape == (4, 6, 16, 16)                               # 3 image planes + 3 mask planes
    assert (inp[:, c] == 0).all()                                    # the held-out channel: zeros
    others = [k for k in range(3) if k != c]
    assert torch.equal(inp[:, others], normalize(x)[:, others])      # the other two as they are
    assert torch.equal(inp[:, 3:], mask)
    # Any value in the held-out channel gives the same encoder output.
    m.eval()
    x2 = x.clone()
    x2[:, c] = 255 - x2[:, c]
    codes = []
    for img in (x, x2):
        m.training_step(img, NO_VIEWS, torch.Generator().manual_seed(0))
        codes.append(seen[-1][1])
    assert torch.equal(codes[0], codes[1])


def test_random_channel_is_one_per_image_and_all_are_drawn():
    m = _method(target="random")
    mask = m.holdout_mask(300, "cpu", torch.Generator().manual_seed(0))
    per_channel = mask.mean(dim=(2, 3))                              # (B, 3) of 0/1
    assert ((per_channel == 0) | (per_channel == 1)).all() and (per_channel.sum(1) == 1).all()
    counts = per_channel.sum(0)
    assert (counts > 70).all(), counts
    again = m.holdout_mask(300, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_grayscale_hides_a_random_half():
    m = _method(channels=1, size=8)
    mask = m.holdout_mask(200, "cpu", torch.Generator().manual_seed(1))
    assert mask.shape == (200, 1, 8, 8) and (mask.sum(dim=(1, 2, 3)) == 32).all()
    rows, cols = mask[:, 0].sum(2), mask[:, 0].sum(1)                # per-row / per-column counts
    kinds = set()
    for r, c in zip(rows, cols):
        if (r[:4] == 8).all() and (r[4:] == 0).all():
            kinds.add("top")
        elif (r[4:] == 8).all() and (r[:4] == 0).all():
            kinds.add("bottom")
        elif (c[:4] == 8).all() and (c[4:] == 0).all():
            kinds.add("left")
        elif (c[4:] == 8).all() and (c[:4] == 0).all():
            kinds.add("right")
        else:
            raise AssertionError("not a half")
    assert kinds == {"top", "bottom", "left", "right"}
    # the hidden half is absent from the input; the visible half is there as it is
    x = normalize(_images(200, 1, 8))
    inp = m.encoder_input(x, mask)
    assert (inp[:, :1][mask == 1] == 0).all()
    assert torch.equal(inp[:, :1][mask == 0], x[mask == 0]) and torch.equal(inp[:, 1:], mask)


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstruction_keeps_what_was_seen(channels):
    m = _method(channels=channels, size=16)
    m.eval()
    x = _images(4, channels, 16)
    rec = m.reconstruct(x, torch.Generator().manual_seed(0))
    mask = m.holdout_mask(4, "cpu", torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).bool().numpy()
    for k in ("original", "input", "reconstruction"):
        assert rec[k].shape == (4, 16, 16, channels) and rec[k].dtype == np.uint8
    assert np.abs(rec["original"].astype(int) - x.permute(0, 2, 3, 1).numpy()).max() <= 1
    assert (rec["input"][mask] == 128).all()                         # held out: mid grey
    assert np.array_equal(rec["reconstruction"][~mask], rec["original"][~mask])


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_loss_counts_only_held_out_values(loss):
    m = _method(target="g", loss=loss)
    x = _images(4)
    clean = normalize(x)
    mask = m.holdout_mask(4, "cpu", torch.Generator().manual_seed(0))
    out = m.predict(clean, mask)
    base = m.loss_of(out, x, clean, mask)
    x2 = x.clone()
    x2[:, 0] = 255 - x2[:, 0]                                        # a channel that is not the target
    assert torch.equal(m.loss_of(out, x2, normalize(x2), mask), base)
    x3 = x.clone()
    x3[:, 1] = 255 - x3[:, 1]                                        # the target itself
    assert not torch.equal(m.loss_of(out, x3, normalize(x3), mask), base)


def test_cross_entropy_bins_and_expected_value():
    m = _method(bins=16)
    x = torch.tensor([0, 15, 16, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert m.target_bins(x)[0, 0, 0].tolist() == [0, 0, 1, 8, 15]
    # a confident prediction of bin k draws the centre of bin k
    logits = torch.full((1, 16, 3, 1, 5), -30.0)
    for i, k in enumerate([0, 0, 1, 8, 15]):
        logits[0, k, :, 0, i] = 30.0
    values = m.predicted_values(logits)
    expected = ((torch.tensor([0, 0, 1, 8, 15]) + 0.5) / 16 - 0.5) / 0.25
    assert torch.allclose(values[0, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 16)])
@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_embed_shapes(channels, size, loss):
    m = _method(channels=channels, size=size, loss=loss)
    m.eval()
    x = normalize(_images(5, channels, size))
    e = m.embed(x)
    assert e.shape == (5, m.backbone.dim) == (5, 256) and torch.isfinite(e).all()
    loss_value, logs = m.training_step(_images(5, channels, size), NO_VIEWS, torch.Generator())
    assert logs["z"].shape == (5, 256) and loss_value.ndim == 0


def _train(m, images, steps=30, batch=64, lr=2e-3):
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    losses = []
    n = len(images) // batch
    for step in range(steps):
        x = images[(step % n) * batch:(step % n + 1) * batch]
        loss, _ = m(x, NO_VIEWS, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.mean(losses[:4]), np.mean(losses[-4:])


def test_short_training_lowers_the_loss_colour(one_thread):
    from engine.data.shapes import load
    data = load(n=256, size=16)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
    first, last = _train(_method(3, 16), x)
    assert last < 0.75 * first, (first, last)


def test_short_training_lowers_the_loss_grayscale_digits(one_thread):
    from engine.data.builtin import load
    data = load()
    x = torch.from_numpy(data.images[:512]).permute(0, 3, 1, 2).contiguous()
    first, last = _train(_method(1, 8), x)
    assert last < 0.8 * first, (first, last)


def test_embed_is_the_features_of_what_training_shows():
    x = normalize(_images(3, 3, 16))
    for target in ("g", "random"):
        m = _method(3, 16, target=target)
        m.eval()
        which = [1] if target == "g" else [0, 1, 2]
        feats = []
        for c in which:
            mask = torch.zeros_like(x)
            mask[:, c] = 1
            feats.append(m.backbone(m.encoder_input(x, mask)))
        assert torch.allclose(m.embed(x), torch.stack(feats).mean(0), atol=1e-6)
    g = _method(1, 8)
    g.eval()
    xg = normalize(_images(3, 1, 8))
    assert torch.equal(g.embed(xg), g.backbone(torch.cat([xg, torch.zeros_like(xg)], 1)))
