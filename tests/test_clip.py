"""CLIP: the loss against the paper's pseudocode (and open_clip), the learned and
clamped temperature, captions and the held-out combinations, the 2-process
gather, and a short run on shapes through the workbench."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import workbench, zero_shot
from engine.data import ImageData, load_images
from engine.losses import clip_loss
from engine.methods import METHODS, DataInfo
from engine.store.tensors import pack_state, unpack_state

ROOT = Path(__file__).resolve().parents[1]
CLIP = METHODS["clip"]


def reference_clip_loss(i_f, t_f, w_i, w_t, t):
    """The seed's pseudocode, written out with explicit softmaxes."""
    i_e = i_f @ w_i
    i_e = i_e / i_e.norm(dim=1, keepdim=True)
    t_e = t_f @ w_t
    t_e = t_e / t_e.norm(dim=1, keepdim=True)
    logits = (i_e @ t_e.T) * math.exp(t)
    n = logits.shape[0]
    # cross-entropy with labels arange(n) along each axis: -log softmax at the diagonal
    loss_rows = -sum(logits[k, k] - torch.logsumexp(logits[k, :], 0) for k in range(n)) / n
    loss_cols = -sum(logits[k, k] - torch.logsumexp(logits[:, k], 0) for k in range(n)) / n
    return (loss_rows + loss_cols) / 2


def test_loss_matches_the_pseudocode():
    g = torch.Generator().manual_seed(0)
    i_f, t_f = torch.randn(12, 20, generator=g, dtype=torch.float64), torch.randn(12, 9, generator=g,
                                                                                   dtype=torch.float64)
    w_i, w_t = torch.randn(20, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g,
                                                                                 dtype=torch.float64)
    for t in (math.log(1 / 0.07), 0.0, 2.0):
        ref = float(reference_clip_loss(i_f, t_f, w_i, w_t, t))
        ours = float(clip_loss((i_f @ w_i).float(), (t_f @ w_t).float(), torch.tensor(t)))
        assert abs(ours - ref) < 1e-5 * max(1.0, abs(ref)), (t, ours, ref)
    # The scale is clamped at 100: t = 6 (exp 403) gives the loss of t = log 100.
    at_clamp = reference_clip_loss(i_f, t_f, w_i, w_t, math.log(100))
    assert abs(float(clip_loss((i_f @ w_i).float(), (t_f @ w_t).float(), torch.tensor(6.0))) - float(at_clamp)) < 1e-4
    # Perfectly matched pairs far apart: the loss goes to 0; all pairs identical: log n.
    eye = torch.eye(5)
    assert float(clip_loss(eye, eye, torch.tensor(math.log(100)))) < 1e-3
    same = torch.ones(5, 3)
    assert abs(float(clip_loss(same, same, torch.tensor(0.0))) - math.log(5)) < 1e-5


def test_loss_matches_open_clip():
    loss_mod = pytest.importorskip("open_clip.loss")
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    t = torch.tensor(math.log(1 / 0.07))
    theirs = loss_mod.ClipLoss()(a_n, b_n, t.exp())
    assert abs(float(clip_loss(a, b, t)) - float(theirs)) < 1e-5


def _shapes(n=60, size=16, seed=0):
    return load_images("shapes", n=n, size=size, seed=seed)


def _small(data, **cfg):
    torch.manual_seed(0)
    m = CLIP(CLIP.Config(width=4, word_dim=16, embed_dim=8, **cfg),
             DataInfo(data.name, data.channels, data.height, data.width, int((data.split == 0).sum())))
    m.prepare(data)
    return m


def _images(data):
    return torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()


def test_temperature_is_learned_and_clamped():
    data = _shapes()
    m = _small(data)
    assert abs(m.log_scale.item() - math.log(1 / 0.07)) < 1e-6
    idx = torch.from_numpy(np.flatnonzero(data.split == 0)[:16])
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    loss, logs = m(_images(data)[idx], None, torch.Generator().manual_seed(0), index=idx)
    loss.backward()
    assert m.log_scale.grad is not None and float(m.log_scale.grad.abs()) > 0
    before = m.log_scale.item()
    opt.step()
    assert m.log_scale.item() != before
    assert abs(logs["logit_scale"] - 1 / 0.07) < 1e-3
    # Pushed past the clamp: the loss uses 100 and after_step brings t back to log 100.
    with torch.no_grad():
        m.log_scale.fill_(8.0)
    _, logs = m(_images(data)[idx], None, torch.Generator().manual_seed(0), index=idx)
    assert logs["logit_scale"] == pytest.approx(100.0)
    m.after_step(0, 1)
    assert m.log_scale.item() == pytest.approx(math.log(100))
    # learn_temperature=False: t stays 1/0.07, no gradient.
    fixed = _small(data, learn_temperature=False)
    assert not fixed.log_scale.requires_grad


def test_defaults_are_the_shapes_recipe_and_no_views_reach_the_images():
    """The loop's defaults for CLIP are bench/clip_shapes.py's measured recipe, and the
    run's view settings never touch CLIP's images (a crop or colour jitter would
    contradict the caption's position and colour words)."""
    from engine.train import default_run_config
    data = _shapes()
    run = default_run_config("clip", data)
    assert (run.train.batch_size, run.train.weight_decay) == (128, 0.1)
    assert not CLIP.uses_views
    m = _small(data)
    idx = torch.from_numpy(np.flatnonzero(data.split == 0)[:16])
    plain, _ = m(_images(data)[idx], None, torch.Generator().manual_seed(0), index=idx)
    viewed, _ = m(_images(data)[idx], run.views, torch.Generator().manual_seed(0), index=idx)
    assert plain.item() == viewed.item()


def test_vocabulary_lives_in_the_state_dict():
    data = _shapes()
    m = _small(data)
    state = unpack_state(pack_state({"model": m.state_dict()}))["model"]   # safetensors round trip
    assert state["vocab_bytes"].dtype == torch.uint8
    fresh = CLIP(m.cfg, m.info)                    # never prepared: an empty vocabulary
    assert fresh.vocab == {}
    fresh.load_state_dict(state)
    assert fresh.vocab == m.vocab and "triangle" in fresh.vocab and "a" in fresh.vocab
    assert torch.equal(fresh.tokenize(["a red zebra"]), m.tokenize(["a red zebra"]))
    assert fresh.tokenize(["a red zebra"])[0, 2] == 1           # unknown word
    np.testing.assert_allclose(fresh.encode_text(["a red star"]), m.encode_text(["a red star"]))


def test_held_out_combinations_never_train():
    data = _shapes(n=400)
    m = _small(data, held_out="red circle, blue square")
    colour, shape = data.attributes["colour"][0], data.attributes["shape"][0]
    held = ((colour == 0) & (shape == 0)) | ((colour == 2) & (shape == 1))
    assert held.sum() > 0
    trainable = m._trainable.numpy()
    assert not trainable[held].any()
    assert trainable[(data.split == 0) & ~held].all() and not trainable[data.split == 1].any()
    with pytest.raises(ValueError, match="not a combination"):
        _small(data, held_out="red hexagon")
    with pytest.raises(ValueError, match="colour shape"):
        CLIP(CLIP.Config(held_out="red"), DataInfo("s", 3, 16, 16, 10))


def test_dataset_without_captions_is_a_clear_error():
    digits = load_images("digits")
    m = CLIP(CLIP.Config(width=4), DataInfo("digits", 1, 8, 8, 100))
    with pytest.raises(ValueError, match="no captions"):
        m.prepare(digits)
    with pytest.raises(ValueError, match="index"):
        m(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), None, torch.Generator())


def test_several_captions_per_image_are_drawn_in_turn():
    imgs = np.zeros((4, 8, 8, 3), np.uint8)
    data = ImageData("t", imgs, None, None, {}, ["red one\nrouge un", "blue", "", "green"],
                     list("abcd"), np.zeros(4))
    m = CLIP(CLIP.Config(width=4, word_dim=8, embed_dim=4), DataInfo("t", 3, 8, 8, 4))
    m.prepare(data)
    assert m._count.tolist() == [2, 1, 0, 1] and m._trainable.tolist() == [True, True, False, True]
    ids, vectors = m.extra_embeddings(data)["text"]
    assert ids.tolist() == [0, 0, 1, 3] and vectors.shape == (4, 4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_bad_caption_rows_are_skipped_and_counted(tmp_path):
    from PIL import Image
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name)
    rows = ["file,caption", "a.png,a red square", "a.png,another red square", "b.png,", "b.png,   ",
            "ghost.png,a missing image", "c.png", ",no file", "c.png,a third square"]
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n")
    d = load_images("image-folder", path=tmp_path, size=8, captions=tmp_path / "caps.csv")
    caption = dict(zip(d.item_names, d.captions))
    assert caption == {"a.png": "a red square\nanother red square", "b.png": "", "c.png": "a third square"}
    stats = d.stats()
    assert stats["n_caption_rows_bad"] == 4          # two empty captions, no caption column, no file
    assert stats["n_caption_rows_unmatched"] == 1    # ghost.png is not in the folder
    assert stats["n_items_without_caption"] == 1

    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                       {"id": 3, "file_name": "gone.png"}],
            "annotations": [{"image_id": 1, "caption": "red"}, {"image_id": 1, "caption": "a red square"},
                            {"image_id": 2, "caption": ""}, {"image_id": 9, "caption": "no image"},
                            {"image_id": 3, "caption": "missing file"}]}
    (tmp_path / "captions_train.json").write_text(json.dumps(coco))
    d = load_images("image-folder", path=tmp_path, size=8, captions=tmp_path / "captions_train.json")
    assert dict(zip(d.item_names, d.captions)) == {"a.png": "red\na red square", "b.png": "", "c.png": ""}
    assert d.stats()["n_caption_rows_bad"] == 2 and d.stats()["n_caption_rows_unmatched"] == 1


def test_two_processes_gather_the_global_batch(tmp_path):
    """Loss and every gradient of a 2-process step equal one process's on the whole batch."""
    from safetensors.torch import load_file
    sys.path.insert(0, str(Path(__file__).parent))
    from _clip_ddp_worker import ddp_setup
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "_clip_ddp_worker.py"), str(out)]
    done = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = load_file(str(out))

    method, images, batch = ddp_setup()
    loss, _ = method(images[batch], None, torch.Generator().manual_seed(0), index=batch)
    loss.backward()
    sizes = got["sizes"].tolist()
    assert sizes[0] != sizes[1] and sum(sizes) == int(method._trainable[batch].sum())   # uneven shards
    assert abs(float(got["loss"][0]) - loss.item()) < 1e-5
    grads = {n: p.grad for n, p in method.named_parameters() if p.grad is not None}
    assert set(f"grad.{n}" for n in grads) == {k for k in got if k.startswith("grad.")}
    for n, g in grads.items():
        torch.testing.assert_close(got[f"grad.{n}"], g, rtol=1e-4, atol=1e-6, msg=n)


@pytest.fixture
def one_thread():
    """One torch and one BLAS thread: on the shared 2-core machine two threads wait for
    each other at every op (a 3× slower run under load), and the test needs no speed-up."""
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def test_short_run_on_shapes_beats_chance(tmp_path, one_thread):
    from engine.cli import main as cli_main
    from engine.store import Project
    path = tmp_path / "s.pretext"
    with Project.create(path) as p:
        workbench.import_dataset(p, "shapes", "shapes", n=800, size=16, seed=0)
        run = workbench.create_run(p, "shapes", "clip",
                                   {"epochs": "10", "batch_size": "64", "width": "8", "word_dim": "32",
                                    "embed_dim": "32", "lr": "3e-3", "eval_every": "0", "timeline_items": "0",
                                    "checkpoint_every": "1000", "held_out": "red circle"})
        events = list(workbench.run_training(p, run))
        assert type(events[-1]).__name__ == "Finished", events[-1]
        m = p.latest_metrics(run)
        for key in ("zs_shape", "zs_colour", "zs_size", "i2t_r1", "i2t_r5", "t2i_r10", "zs_combo_heldout",
                    "zs_combo_seen", "logit_scale"):
            assert key in m, key
        # 100 steps on 16×16 images: far from converged, but clearly above chance.
        assert m["zs_colour"] > 0.35 and m["zs_size"] > 0.55     # chance: 1/8 and 1/3
        assert m["t2i_r5"] > 0.4 and m["i2t_r5"] > 0.4           # chance: 5/160
        sets = {e.split: e for e in p.embedding_sets(run)}
        assert sets["text"].n == 800 and sets["text"].dim == sets["all"].dim == 32

        # Using the trained run: text → image search and zero-shot classification.
        hits = zero_shot.search_images(p, run, "a large yellow star", k=5)
        assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"]
        assert sum("yellow" in h["caption"] for h in hits) >= 2          # chance: 5/8 of one
        texts = zero_shot.search_texts(p, run, hits[0]["index"], k=3)
        assert len(texts) == 3 and texts[0]["score"] >= texts[2]["score"]
        res = zero_shot.zero_shot(p, run, attribute="colour", templates=["a {} shape", "{}"])
        assert res["accuracy"] > 0.35 and np.array(res["confusion"]).sum() == res["n"] == 160
        assert "zeroshot_shapes_colour" in p.latest_metrics(run)
        assert p.artifacts(run, "zeroshot_shapes_colour")
    assert cli_main(["search", "--project", str(path), "--run", str(run), "--text", "a small red circle",
                     "-k", "3"]) == 0
    assert cli_main(["search", "--project", str(path), "--run", str(run), "--zero-shot",
                     "--attribute", "shape", "--json"]) == 0
