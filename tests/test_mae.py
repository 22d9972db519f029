"""The masked autoencoder: masking, patches, visible-only encoding, the loss, drawing, training."""
import numpy as np
import pytest
import torch
from torch import nn

from engine.augment import NO_VIEWS, normalize, random_patch_mask
from engine.config import ConfigError
from engine.methods import METHODS, DataInfo
from engine.methods.mae import MAEConfig, MaskedAutoencoder, normalize_patches, reconstruct_images, unnormalize_patches
from engine.nets.vit import ViT, auto_patch_size, sincos_pos_embed_2d


@pytest.fixture
def one_thread():
    """Small models train faster on one thread where cores are shared: a second intra-op
    thread mostly waits for a core (measured ~4× slower per step on a loaded 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _mae(channels=3, h=32, w=None, **cfg):
    torch.manual_seed(0)
    return MaskedAutoencoder(MAEConfig(**cfg), DataInfo("t", channels, h, w or h, 64))


def _images(n=4, c=3, h=32, w=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w or h), generator=g, dtype=torch.uint8)


def test_registered():
    assert METHODS["mae"] is MaskedAutoencoder


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_masking_keeps_exact_count_and_ids_restore_unshuffles(ratio):
    B, L, D = 5, 64, 3
    ids_keep, mask, ids_restore = random_patch_mask(B, L, ratio, torch.Generator().manual_seed(1))
    n_keep = round(L * (1 - ratio))
    assert ids_keep.shape == (B, n_keep)
    assert (mask.sum(1) == L - n_keep).all()
    # the kept patches are exactly the unmasked ones, each once
    assert (torch.gather(mask, 1, ids_keep) == 0).all()
    assert all(len(set(row.tolist())) == n_keep for row in ids_keep)
    # unshuffle(shuffle(x)) == x
    x = torch.randn(B, L, D)
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(ids_shuffle[:, :n_keep], ids_keep)
    shuffled = torch.gather(x, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, D))
    assert not torch.equal(shuffled, x)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D)), x)


def test_decoder_puts_every_visible_token_back_in_its_place():
    m = _mae(3, 32, decoder_dim=128)                   # decoder as wide as the tiny encoder
    m.decoder_embed, m.decoder_norm, m.decoder_pred = nn.Identity(), nn.Identity(), nn.Identity()
    m.decoder_blocks = nn.ModuleList()
    m.decoder_pos_embed.zero_()
    B, L = 3, m.num_patches
    ids_keep, mask, ids_restore = random_patch_mask(B, L, 0.75, torch.Generator().manual_seed(0))
    latent = torch.cat([torch.full((B, 1, 128), -5.0),
                        (ids_keep.float() + 1).unsqueeze(-1).expand(-1, -1, 128)], dim=1)
    out = m.forward_decoder(latent, ids_restore)
    assert out.shape == (B, L, 128)
    pos = torch.arange(L).float().expand(B, L) + 1
    visible = mask == 0
    assert torch.equal(out[..., 0][visible], pos[visible])            # token of patch i lands at i
    assert torch.allclose(out[mask.bool()], m.mask_token.reshape(1, 128).expand(int(mask.sum()), 128))


@pytest.mark.parametrize("c,h,w,patch", [(1, 8, 8, 0), (3, 32, 32, 0), (3, 16, 24, 4), (1, 28, 28, 7)])
def test_patchify_round_trip_and_layout(c, h, w, patch):
    m = _mae(c, h, w, patch=patch)
    p = m.patch
    x = torch.randn(2, c, h, w)
    t = m.patchify(x)
    assert t.shape == (2, (h // p) * (w // p), p * p * c)
    assert torch.equal(m.unpatchify(t), x)
    # patch 0 is the top-left p×p square, pixels in (row, col, channel) order; patch 1 is to its right
    assert torch.equal(t[:, 0], x[:, :, :p, :p].permute(0, 2, 3, 1).reshape(2, -1))
    assert torch.equal(t[:, 1], x[:, :, :p, p:2 * p].permute(0, 2, 3, 1).reshape(2, -1))


def test_patch_size_auto_and_validation():
    assert [auto_patch_size(s, s) for s in (8, 16, 28, 32, 64, 96)] == [2, 2, 4, 4, 8, 8]
    assert auto_patch_size(30, 30) == 3                     # 4 doesn't divide 30: the largest that does
    with pytest.raises(ConfigError) as err:
        _mae(3, 32, patch=3)
    assert "patch" in err.value.problems and "32×32" in str(err.value)
    with pytest.raises(ConfigError):
        MAEConfig(decoder_dim=66)
    with pytest.raises(ConfigError, match="norm_pix_loss"):
        _mae(1, 8, patch=1)
    assert _mae(1, 8, patch=1, norm_pix_loss=False).num_patches == 64


def test_encoder_sees_only_visible_patches():
    m = _mae(3, 32)
    L = m.num_patches
    assert L == 64
    seen = []
    m.encoder.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    x = normalize(_images(4))
    for ratio, n_keep in ((0.75, 16), (0.5, 32), (0.9, 6), (0.0, 64)):
        latent, mask, _ = m.forward_encoder(x, ratio, torch.Generator().manual_seed(0))
        assert seen[-1] == (4, 1 + n_keep, m.encoder.dim)            # cls + the visible patches
        assert latent.shape == (4, 1 + n_keep, m.encoder.dim)
    # Changing the pixels of removed patches changes nothing the encoder computes.
    latent, mask, _ = m.forward_encoder(x, 0.75, torch.Generator().manual_seed(3))
    pix = m.unpatchify(mask.unsqueeze(-1).expand(-1, -1, m.patch ** 2 * 3))
    changed = x + 3.0 * pix
    latent2, mask2, _ = m.forward_encoder(changed, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(mask, mask2) and torch.equal(latent, latent2)
    latent3, _, _ = m.forward_encoder(x + 3.0 * (1 - pix), 0.75, torch.Generator().manual_seed(3))
    assert not torch.allclose(latent, latent3)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_counts_only_masked_patches(norm_pix):
    m = _mae(3, 32, norm_pix_loss=norm_pix)
    x = normalize(_images(2))
    loss, pred, mask = m.forward_mae(x, 0.75, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and loss > 0
    p2c = m.patch ** 2 * 3
    patches = m.patchify(x)
    b_vis, i_vis = (mask == 0).nonzero()[0].tolist()
    b_mask, i_mask = (mask == 1).nonzero()[0].tolist()
    for b, i, same in ((b_vis, i_vis, True), (b_mask, i_mask, False)):
        edited = patches.clone()
        edited[b, i] = torch.randn(p2c)
        other = m.forward_loss(m.unpatchify(edited), pred, mask)
        assert torch.equal(other, m.forward_loss(x, pred, mask)) == same
    # the value by hand: mean over masked patches of the per-patch mean squared error
    target = normalize_patches(patches)[0] if norm_pix else patches
    per_patch = (pred - target).pow(2).mean(-1)
    assert torch.allclose(loss, per_patch[mask == 1].mean(), rtol=1e-5)


def test_ratio_zero_loss_covers_every_patch():
    m = _mae(1, 8)
    loss, _, mask = m.forward_mae(normalize(_images(3, 1, 8)), 0.0, torch.Generator().manual_seed(0))
    assert mask.sum() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert m.decoder_pred.weight.grad.abs().sum() > 0


def test_norm_pix_unnormalisation_recovers_the_target():
    patches = torch.randn(3, 16, 48) * 2 + 0.7
    normed, mean, var = normalize_patches(patches)
    assert torch.allclose(normed.mean(-1), torch.zeros(3, 16), atol=1e-5)
    assert torch.allclose(unnormalize_patches(normed, mean, var), patches, atol=1e-5)
    # and through the drawing path: a perfect per-patch-normalised prediction draws the original
    m = _mae(3, 32, norm_pix_loss=True)
    x = _images(2)
    m.forward_decoder = lambda latent, ids_restore: normalize_patches(m.patchify(normalize(x)))[0]
    rec = m.reconstruct(x, torch.Generator().manual_seed(0))
    assert np.abs(rec["reconstruction"].astype(int) - x.permute(0, 2, 3, 1).numpy()).max() <= 1
    assert np.array_equal(rec["pasted"], rec["reconstruction"])
    assert list(rec) == ["original", "input", "reconstruction", "pasted"]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_reconstruct_images_at_any_ratio(ratio):
    m = _mae(3, 32)
    m.train()
    imgs = _images(5).permute(0, 2, 3, 1).numpy()
    out = reconstruct_images(m, imgs, ratio, seed=4)
    assert m.training                                                # mode left as it was
    for k in ("original", "input", "reconstruction", "pasted"):
        assert out[k].shape == (5, 32, 32, 3) and out[k].dtype == np.uint8
    assert np.abs(out["original"].astype(int) - imgs).max() <= 1
    mask = out["mask"]
    assert mask.shape == (5, 8, 8)
    assert (mask.reshape(5, -1).sum(1) == 64 - round(64 * (1 - ratio))).all()
    removed = np.kron(mask, np.ones((4, 4), bool))[..., None].repeat(3, -1)
    assert (out["input"][removed] == 128).all()                      # removed patches are grey
    assert np.array_equal(out["pasted"][~removed], out["original"][~removed])
    assert np.array_equal(out["pasted"][removed], out["reconstruction"][removed])
    if ratio == 0:
        assert np.array_equal(out["input"], out["original"])
    again = reconstruct_images(m, imgs, ratio, seed=4)
    assert all(np.array_equal(out[k], again[k]) for k in out)
    # grayscale (N, H, W) input, and a clear error for the wrong size
    g = _mae(1, 8)
    assert reconstruct_images(g, imgs[:, :8, :8, 0], ratio)["pasted"].shape == (5, 8, 8, 1)
    with pytest.raises(ValueError, match="shape"):
        reconstruct_images(g, imgs, ratio)


def test_embed_uses_all_patches_and_pools():
    m = _mae(1, 8)
    m.eval()
    x = normalize(_images(6, 1, 8))
    mean = m.embed(x)
    assert mean.shape == (6, 128)
    assert torch.allclose(mean, m.encoder.tokens(x)[:, 1:].mean(1))
    m.cfg.pool = "cls"
    assert torch.allclose(m.embed(x), m.encoder.tokens(x)[:, 0])
    _, logs = m.training_step(_images(6, 1, 8), NO_VIEWS, torch.Generator().manual_seed(0))
    assert logs["z"].shape == (6, 128) and not logs["z"].requires_grad


def test_vit_sincos_positions_and_sizes():
    pe = sincos_pos_embed_2d(16, 2, 3)
    assert pe.shape == (1, 7, 16) and torch.equal(pe[0, 0], torch.zeros(16))
    assert len({tuple(r.tolist()) for r in pe[0, 1:]}) == 6              # every position distinct
    assert ViT(3, 32, 32, size="small").dim == 192
    assert not any("pos_embed" in k for k in _mae(1, 8).state_dict())  # fixed, not stored


def test_short_training_on_digits_lowers_the_loss(one_thread):
    from engine.data.builtin import load
    data = load()
    x_all = torch.from_numpy(data.images[:512]).permute(0, 3, 1, 2).contiguous()
    m = _mae(1, 8)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.05)
    losses = []
    for step in range(40):
        x = x_all[(step % 8) * 64:(step % 8 + 1) * 64]
        loss, _ = m(x, NO_VIEWS, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.75 * first, (first, last)


def test_visible_patch_embedding_equals_the_convolution():
    vit = ViT(3, 32, 32, patch=4)
    x = torch.randn(2, 3, 32, 32)
    full = vit.embed_patches(x)
    ids = torch.stack([torch.randperm(64)[:16] for _ in range(2)])
    part = vit.embed_patches(x, ids)
    assert torch.allclose(part, torch.gather(full, 1, ids.unsqueeze(-1).expand(-1, -1, 128)), atol=1e-5)


def test_trains_under_bf16_autocast():
    """The loop runs steps under bf16 autocast on CUDA; the same code on the CPU's autocast."""
    m = _mae(3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = m(_images(4, 3, 16), NO_VIEWS, torch.Generator().manual_seed(0))
        emb = m.embed(normalize(_images(2, 3, 16)))
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and emb.shape == (2, 128)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_mae_warns_before_training_on_images_too_small_for_patches():
    """Digits (8×8) leave MAE a few pixels per patch: the user is told before the run, with what
    MAE needs instead; 32×32 images get no warning, and no other method warns on 8×8."""
    from engine.methods import METHODS
    warning = METHODS["mae"].data_warning(8, 8)
    assert warning is not None and "8×8" in warning and "32 px" in warning
    assert METHODS["mae"].data_warning(32, 32) is None
    assert "fine-tuning" in METHODS["mae"].card.needs
    assert [name for name, m in METHODS.items() if m.data_warning(8, 8)] == ["mae"]
