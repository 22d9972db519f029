"""The BERT-style masked language model: masking, sentence pairs, the tokenizer in the
state, a planted corpus it must learn, sentence embeddings."""
import itertools

import numpy as np
import pytest
import torch

from engine.config import ConfigError
from engine.methods.mlm import (IGNORE, SPECIAL_TOKENS, MaskedLanguageModel, MLMConfig, build,
                                mask_tokens, step_generator, train_tokenizer, truncate_pair)
from engine.store.tensors import pack_state, unpack_state


@pytest.fixture
def one_thread():
    """Small models train faster on one thread where cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A planted corpus: the colour decides the animal, the animal decides the food and the place.
ANIMALS = {"red": ("fox", "berries", "forest"), "blue": ("bird", "seeds", "sky"),
           "green": ("frog", "flies", "pond"), "grey": ("wolf", "meat", "hills"),
           "white": ("goat", "grass", "mountains"), "black": ("cat", "fish", "house")}
TEMPLATES = ["the {c} {a} eats {f} in the {p} .", "a {c} {a} likes {f} .",
             "every {c} {a} lives in the {p} .", "my {c} {a} ate the {f} yesterday ."]


def planted(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    colours = list(ANIMALS)
    out = []
    for _ in range(n):
        c = colours[rng.integers(len(colours))]
        a, f, p = ANIMALS[c]
        out.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(c=c, a=a, f=f, p=p))
    return out


TINY = dict(vocab_size=200, dim=64, depth=2, heads=2, max_len=40)


@pytest.fixture(scope="module")
def tiny_model():
    """Untrained, on a little planted corpus."""
    return build(MLMConfig(**TINY), planted(300, 0))


def test_config_checks():
    with pytest.raises(ConfigError, match="heads"):
        MLMConfig(dim=100, heads=3)
    with pytest.raises(ConfigError, match="random_token_frac"):
        MLMConfig(mask_token_frac=0.95, random_token_frac=0.1)


def test_tokenizer_has_special_tokens_first_and_recognises_mask():
    tok = train_tokenizer(planted(200, 1) + ["Some Capitalised words here"], vocab_size=150)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = tok.encode("The red [MASK] eats berries", add_special_tokens=False)
    assert enc.tokens == ["the", "red", "[MASK]", "eats", "berries"]     # lower-cased, [MASK] kept whole
    bpe = train_tokenizer(planted(200, 1), vocab_size=150, kind="bpe")
    assert bpe.token_to_id("[MASK]") == 4
    assert bpe.decode(bpe.encode("the red fox", add_special_tokens=False).ids) == "the red fox"
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer(["", "  "], 100)


def test_masking_proportions_and_never_special():
    V, n_special, mask_id = 1000, 5, 4
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(n_special, V, (512, 64), generator=g)
    ids[:, 0] = 2                           # [CLS]
    ids[:, 40] = 3                          # [SEP]
    ids[:, 50:] = 0                         # padding
    special = ids < n_special
    inputs, labels = mask_tokens(ids, special, torch.Generator().manual_seed(1), vocab_size=V,
                                 mask_id=mask_id, n_special=n_special)
    chosen = labels != IGNORE
    assert not chosen[special].any()                       # specials are never chosen...
    assert torch.equal(inputs[special], ids[special])      # ...nor changed
    assert torch.equal(inputs[~chosen], ids[~chosen])      # only chosen positions change
    assert torch.equal(labels[chosen], ids[chosen])        # labels are the originals
    frac = chosen.sum().item() / (~special).sum().item()
    assert abs(frac - 0.15) < 0.005, frac                  # ~24k candidates: σ ≈ 0.0023
    n = chosen.sum().item()
    to_mask = (inputs == mask_id) & chosen
    unchanged = (inputs == ids) & chosen
    to_random = chosen & ~to_mask & ~unchanged
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02
    # A random draw equals the original with probability 1/995: counted as unchanged.
    assert abs(to_random.sum().item() / n - 0.1) < 0.015
    assert abs(unchanged.sum().item() / n - 0.1) < 0.015
    assert (inputs[to_random] >= n_special).all()          # no special token is planted
    # The generator decides everything: same seed, same corruption.
    again = mask_tokens(ids, special, torch.Generator().manual_seed(1), vocab_size=V,
                        mask_id=mask_id, n_special=n_special)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_truncate_pair_cuts_the_longer_first():
    assert truncate_pair(10, 5, 20) == (10, 5)
    assert truncate_pair(30, 5, 20) == (15, 5)
    assert truncate_pair(5, 30, 20) == (5, 15)
    assert truncate_pair(30, 30, 21) == (11, 10)
    for la, lb in itertools.product(range(0, 30, 3), repeat=2):
        a, b = truncate_pair(la, lb, 20)
        assert a + b == min(la + lb, 20) and a <= la and b <= lb


def test_nsp_pairs_are_balanced_and_correct(tiny_model):
    sentences = [f"the red fox number {i} ." for i in range(50)]
    batch = tiny_model.make_batch(sentences, 4000, torch.Generator().manual_seed(3))
    a, b, is_next = batch["a_index"], batch["b_index"], batch["is_next"].bool()
    # The last sentence has no successor, so slightly under half are real pairs.
    expected = 0.5 * (1 - 1 / 50)
    assert abs(is_next.float().mean().item() - expected) < 0.03
    assert torch.equal(b[is_next], a[is_next] + 1)
    assert (b[~is_next] != a[~is_next] + 1).all()
    assert not is_next[a == 49].any()
    # Random partners cover the corpus (not only neighbours).
    assert len(set(b[~is_next].tolist())) > 40
    # The input is [CLS] A [SEP] B [SEP] with segments 0…0 1…1, padding at the end.
    row, seg, keep = batch["ids"][0], batch["segments"][0], batch["keep"][0]
    L = int(keep.sum())
    assert row[0] == tiny_model.cls_id and row[L - 1] == tiny_model.sep_id
    assert (row[L:] == tiny_model.pad_id).all() and keep[:L].all()
    first_sep = int((row == tiny_model.sep_id).nonzero()[0])
    assert (seg[:first_sep + 1] == 0).all() and (seg[first_sep + 1:L] == 1).all()
    # Same step seed, same batch (what makes a resumed run identical).
    again = tiny_model.make_batch(sentences, 4000, torch.Generator().manual_seed(3))
    assert torch.equal(again["ids"], batch["ids"]) and torch.equal(again["is_next"], batch["is_next"])
    # Explicit indices (the loop's epoch order) are used as sentence A.
    chosen = tiny_model.make_batch(sentences, 0, torch.Generator().manual_seed(4), indices=[7, 3, 49])
    assert chosen["a_index"].tolist() == [7, 3, 49]
    with pytest.raises(ValueError, match="at least 2"):
        tiny_model.make_batch(sentences[:1], 4, torch.Generator())


def test_long_pairs_are_cut_to_max_len(tiny_model):
    long = " ".join(["fox"] * 200)
    batch = tiny_model.make_batch([long, long, long], 8, torch.Generator().manual_seed(0))
    assert batch["ids"].shape[1] == TINY["max_len"]
    assert ((batch["ids"] == tiny_model.sep_id).sum(1) == 2).all()


def test_state_round_trip_rebuilds_tokenizer_and_outputs(tiny_model):
    state = unpack_state(pack_state(tiny_model.state_dict()))        # safetensors, no pickle
    assert state["tokenizer_json"].dtype == torch.uint8
    rebuilt = MaskedLanguageModel.from_state(MLMConfig(**TINY), state)
    text = "the blue [MASK] eats seeds in the sky ."
    assert rebuilt.tokenizer.encode(text).ids == tiny_model.tokenizer.encode(text).ids
    assert rebuilt.fill_mask(text, 3) == tiny_model.fill_mask(text, 3)
    s = planted(20, 5)
    np.testing.assert_array_equal(rebuilt.embed_sentences(s), tiny_model.embed_sentences(s))
    assert torch.equal(rebuilt.token_counts, tiny_model.token_counts)
    assert rebuilt.evaluate(s, torch.Generator().manual_seed(0)) == \
        tiny_model.evaluate(s, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="tokenizer"):
        MaskedLanguageModel.from_state(MLMConfig(**TINY), {k: v for k, v in state.items()
                                                            if k != "tokenizer_json"})


def test_embed_sentences_shapes_and_padding_excluded(tiny_model):
    s = ["the red fox eats berries .", "a " + " ".join(["blue bird"] * 12) + " .", "cat"]
    e = tiny_model.embed_sentences(s)
    assert e.shape == (3, TINY["dim"]) and e.dtype == np.float32 and np.isfinite(e).all()
    # Alone (no padding) or beside a longer sentence (padded): the same vector.
    np.testing.assert_allclose(tiny_model.embed_sentences(s[:1])[0], e[0], atol=1e-5)
    assert tiny_model.embed_sentences([]).shape == (0, TINY["dim"])
    with pytest.raises(ValueError, match="MASK"):
        tiny_model.fill_mask("no mask here")


def test_planted_corpus_is_learned(one_thread):
    """After a few hundred CPU steps the colour names the animal, and held-out masked
    tokens are predicted far better than by the training-set frequencies."""
    from engine.data.text import build_corpus
    from engine.loop import train_task
    from engine.tasks.mlm import MLMTask
    from engine.train import RunConfig, TrainConfig
    train, held = planted(2000, 10), planted(200, 11)
    # The app's task and schedule (warm-up, cosine decay): 2000 // 80 = 25 steps an epoch, 8 epochs.
    run = RunConfig("mlm", TrainConfig(epochs=8, batch_size=80, lr=3e-3, device="cpu"),
                    MLMConfig(**TINY, nsp_weight=0.0))
    task = MLMTask(run, build_corpus("planted", train, heldout=0))
    task.setup(None)                # the tokenizer, the token counts and the seeded untrained model
    model = task.model
    before = model.evaluate(held, torch.Generator().manual_seed(0))
    res = train_task(task)
    assert res["steps"] == 200 and res["tokens_per_s"] > 0
    after = model.evaluate(held, torch.Generator().manual_seed(0))
    assert before["masked_accuracy"] < after["unigram_accuracy"] + 0.05
    assert after["masked_accuracy"] > after["unigram_accuracy"] + 0.3, after
    assert after["perplexity"] < after["unigram_perplexity"] / 3, after
    # The animal sits next to its colour: confidently right. The place is three tokens
    # from the animal: right, though less sure this early (chance is 1/6).
    for text, want, p_min in [("the red [MASK] eats berries in the forest .", "fox", 0.5),
                              ("a green [MASK] likes flies .", "frog", 0.5),
                              ("every grey wolf lives in the [MASK] .", "hills", 0.2)]:
        (best, p), *_ = model.fill_mask(text, 3)[0]
        assert best == want and p > p_min, (text, model.fill_mask(text, 3))
    # Two masks: one list of (token, probability) per [MASK], probabilities sorted.
    two = model.fill_mask("the [MASK] fox eats [MASK] in the forest .", 4)
    assert len(two) == 2 and all(len(t) == 4 for t in two)
    assert two[0][0][0] == "red" and two[1][0][0] == "berries"
    assert all(a[1] >= b[1] for t in two for a, b in zip(t, t[1:]))


def test_step_generator_is_deterministic():
    a = torch.rand(3, generator=step_generator(1, 5))
    assert torch.equal(a, torch.rand(3, generator=step_generator(1, 5)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(1, 6)))


# ------------------------------------------------------------------------------------------------
# Through the project's training loop

MLM_RUN = {"tokenizer": "word", "vocab_size": "60", "dim": "32", "depth": "1", "heads": "2", "max_len": "24",
           "batch_size": "64", "epochs": "4", "checkpoint_every": "7", "lr": "3e-3"}


@pytest.fixture
def captions_project(tmp_path):
    from engine import workbench
    from engine.store import Project
    project = Project.create(tmp_path / "text.pretext")
    workbench.import_dataset(project, "shapes-captions", "captions", n=1200)
    yield project
    project.close()


def test_word_vocabulary_is_the_same_on_every_run():
    sents = ["the red circle", "a blue square", "the red square", "a red circle"] * 3
    a = train_tokenizer(sents, 50, "word")
    b = train_tokenizer(list(reversed(sents)), 50, "word")
    assert a.get_vocab() == b.get_vocab()
    assert [a.id_to_token(i) for i in range(5, 8)] == ["red", "a", "circle"]   # by count, then spelling
    assert a.encode("the red [MASK]").tokens == ["the", "red", "[MASK]"]


def test_trains_in_the_loop_and_resumes_to_the_same_weights(captions_project, one_thread, tmp_path):
    from engine import workbench
    from engine.train import Evaluation, Finished, RunControl, Step
    project = captions_project
    full = workbench.create_run(project, "captions", "mlm", MLM_RUN)
    events = list(workbench.run_training(project, full))
    assert isinstance(events[-1], Finished) and events[-1].status == "finished"
    evals = [e for e in events if isinstance(e, Evaluation)]
    first, last = evals[0].metrics, evals[-1].metrics
    # The held-out text is scored beside the unigram baseline, before and after.
    assert last["masked_accuracy"] > last["unigram_accuracy"] + 0.05 > first["masked_accuracy"]
    assert last["perplexity"] < 0.9 * last["unigram_perplexity"], last
    emb = workbench.final_embeddings(project, full)
    assert emb.split == "sentences" and emb.dim == 32
    # Exported for the TensorBoard projector, each row is named by its sentence (one column:
    # no header row, as the projector expects).
    out = workbench.export_embeddings(project, emb.id, tmp_path / "s.tsv", "tsv")
    names = out[1].read_text(encoding="utf-8").splitlines()
    ids, _ = project.load_embeddings(emb.id)
    data = workbench.load_dataset(project, "captions")
    assert names[:3] == [data.sentences[i] for i in ids[:3]]

    part = workbench.create_run(project, "captions", "mlm", MLM_RUN)
    control = RunControl()
    for ev in workbench.run_training(project, part, control):
        if isinstance(ev, Step) and ev.step == 9:        # after the step-7 checkpoint
            control.stop()
    assert project.run(part).status == "stopped"
    assert list(workbench.run_training(project, part))[0].start_step == 9
    a = project.latest_checkpoint(full)[2]["model"]
    b = project.latest_checkpoint(part)[2]["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
