"""word2vec: sampling against the formulas, planted structure, formats, training through the workbench."""
import numpy as np
import pytest

from engine import workbench
from engine.data.text import build_corpus
from engine.methods import METHODS
from engine.methods.word2vec import (Word2Vec, Word2VecConfig, _sample_noise, alias_table, build_vocab,
                                     keep_probabilities, noise_distribution, subsample, window_span)
from engine.train import Evaluation, Finished, RunControl, Started, Step, EmbeddingsSaved
from engine.tasks.word2vec import train_corpus, word_vectors


def test_registered_as_a_text_method():
    assert METHODS["word2vec"] is Word2Vec and Word2Vec.modality == "text"


def test_subsampling_probability_matches_the_formula():
    counts = np.array([1000, 100, 10, 1])
    sample = 1e-2
    t = sample * counts.sum()                       # 11.11
    expected = np.minimum(1, (np.sqrt(counts / t) + 1) * t / counts)
    np.testing.assert_allclose(keep_probabilities(counts, sample), expected, rtol=1e-6)
    assert keep_probabilities(counts, 0).tolist() == [1, 1, 1, 1]
    # The kernel's draws keep each word at that rate (and always drop unknown words).
    tokens = np.array([0, 1, 2, 3, -1] * 20000, np.int32)
    keep = keep_probabilities(counts, sample)
    sen = np.empty(len(tokens), np.int32)
    n, _ = subsample(tokens, 0, len(tokens), keep, sen, np.uint64(12345))
    kept = np.bincount(sen[:n], minlength=4) / 20000
    np.testing.assert_allclose(kept, expected, atol=0.01)


def test_window_is_shrunk_uniformly():
    window, n, pos = 5, 100, 50
    used = np.zeros(window + 1)
    r = np.uint64(7)
    trials = 20000
    for _ in range(trials):
        lo, hi, r = window_span(pos, n, window, r)
        assert hi - pos == pos - lo + 1              # symmetric: [pos − b, pos + b]
        used[1:pos - lo + 1] += 1
    # Distance d is used with probability (window − d + 1) / window.
    expected = (window - np.arange(1, window + 1) + 1) / window
    np.testing.assert_allclose(used[1:] / trials, expected, atol=0.015)
    lo, hi, _ = window_span(0, 3, 5, np.uint64(1))
    assert lo == 0 and hi <= 3                      # clipped at the sentence ends


def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = np.array([500, 200, 100, 50, 10, 1])
    p = noise_distribution(counts)
    np.testing.assert_allclose(p, counts ** 0.75 / (counts ** 0.75).sum())
    prob, alias = alias_table(p)
    r = np.uint64(99)
    draws = np.zeros(len(counts))
    for _ in range(60000):
        r, i = _sample_noise(r, prob, alias)
        draws[i] += 1
    np.testing.assert_allclose(draws / draws.sum(), p, atol=0.01)


def test_vocabulary_keeps_frequent_words_most_frequent_first():
    counts = np.array([3, 9, 1, 9, 5])
    assert build_vocab(counts, 2).tolist() == [1, 3, 4, 0]
    assert build_vocab(counts, 2, max_vocab=2).tolist() == [1, 3]


def planted(seed=0, n=3000):
    """Word w{a}{b} always appears with context words of pool a and pool b: its
    vector should be the sum of an a-part and a b-part, so w0 0 : w0 1 :: w2 0 : w2 1."""
    rng = np.random.default_rng(seed)
    sents = []
    for _ in range(n):
        a, b = rng.integers(4), rng.integers(2)
        ctx = [f"a{a}x{k}" for k in rng.choice(6, 2, replace=False)] + \
              [f"b{b}y{k}" for k in rng.choice(6, 2, replace=False)]
        rng.shuffle(ctx)
        ctx.insert(2, f"w{a}{b}")
        sents.append(" ".join(ctx))
    return build_corpus("planted", sents, heldout=0)


def fit(data, epochs=10, seed=0, **kw):
    cfg = Word2VecConfig(**{"dim": 16, "window": 2, "min_count": 1, "sample": 0.0, "threads": 1, **kw})
    tokens, offsets = train_corpus(data)
    counts = np.bincount(tokens, minlength=len(data.vocab))
    ids = build_vocab(counts, 1)
    remap = np.full(len(data.vocab), -1, np.int32)
    remap[ids] = np.arange(len(ids))
    m = Word2Vec(cfg, ids, counts[ids], seed=seed)
    losses = []
    for e in range(epochs):
        loss, n_pred, _ = m.train_sentences(remap[tokens], offsets, 0, len(offsets) - 1, 0.025 * (1 - e / epochs),
                                            0.025 * (1 - (e + 1) / epochs), seed * 1000 + e)
        losses.append(loss / n_pred)
    return m, losses


@pytest.mark.parametrize("arch,objective", [("skipgram", "negative"), ("cbow", "negative"),
                                            ("skipgram", "softmax")])
def test_planted_structure_gives_the_right_neighbours_and_analogies(arch, objective):
    data = planted()
    m, losses = fit(data, arch=arch, objective=objective)
    assert losses[-1] < losses[0]
    wv = word_vectors(m, data)
    right = sum(wv.analogy(f"w{a}0", f"w{a}1", f"w{c}0", k=1)[0][0] == f"w{c}1"
                for a in range(4) for c in range(4) if a != c)
    assert right >= 11, right                                      # of 12
    near = [w for w, _ in wv.neighbours("a1x0", 5)]
    assert sum(w.startswith("a1x") or w.startswith("w1") for w in near) >= 4, near
    assert wv.odd_one_out(["a0x1", "a0x2", "a0x3", "b1y0"]) == "b1y0"
    if objective == "softmax":
        v = len(wv)
        assert abs(losses[0] - np.log(v)) < 1.0                    # starts near log V, the uniform guess


def test_one_thread_is_deterministic():
    data = planted(n=400)
    a, _ = fit(data, epochs=2, seed=3)
    b, _ = fit(data, epochs=2, seed=3)
    c, _ = fit(data, epochs=2, seed=4)
    assert np.array_equal(a.syn0.numpy(), b.syn0.numpy())
    assert not np.array_equal(a.syn0.numpy(), c.syn0.numpy())


def test_softmax_refuses_large_vocabularies():
    from engine.config import ConfigError
    with pytest.raises(ConfigError, match="small vocabularies"):
        Word2Vec(Word2VecConfig(objective="softmax"), np.arange(30000), np.ones(30000))


def test_word2vec_formats_round_trip_and_load_in_gensim(tmp_path):
    from gensim.models import KeyedVectors

    from engine.text_eval import load_word2vec, save_word2vec
    words = ["the", "café", "naïve", "x"]
    vectors = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    for binary in (False, True):
        path = save_word2vec(tmp_path / f"v{int(binary)}.w2v", words, vectors, binary=binary)
        back_words, back = load_word2vec(path)
        assert back_words == words
        np.testing.assert_allclose(back, vectors, rtol=1e-5 if not binary else 0, atol=1e-6)
        kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
        assert kv.index_to_key == words
        np.testing.assert_allclose(kv["café"], vectors[1], rtol=1e-5, atol=1e-6)


FAST = {"epochs": "3", "dim": "16", "words_per_step": "2000", "threads": "1", "min_count": "2", "sample": "0",
        "checkpoint_every": "4"}


def test_trains_through_the_workbench_stops_and_resumes(project):
    workbench.import_dataset(project, "shapes-captions", "captions", n=600)
    run_id = workbench.create_run(project, "captions", "word2vec", FAST)
    events = list(workbench.run_training(project, run_id))
    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[-1] is Finished and events[-1].status == "finished", events[-1]
    started = events[0]
    assert started.total_steps == 3 * started.steps_per_epoch and started.steps_per_epoch >= 2
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and all(e.images_per_s > 0 and np.isfinite(e.loss) for e in steps)
    assert steps[-1].loss < steps[0].loss
    final = [e for e in events if isinstance(e, Evaluation)][-1].metrics
    assert final["neighbour_purity"] > 0.6, final           # colours next to colours, shapes next to shapes
    assert {"loss", "lr", "words_per_s", "neighbour_purity"} <= set(project.metric_names(run_id))
    emb = workbench.final_embeddings(project, run_id)
    ids, vecs = project.load_embeddings(emb.id)
    data = workbench.load_dataset(project, "captions")
    assert vecs.shape == (len(ids), 16) and data.item_names[ids[0]] == data.vocab[ids[0]] == "a"
    assert project.projections(emb.id)[0].kind == "pca"
    assert any(isinstance(e, EmbeddingsSaved) for e in events)
    wv = workbench.run_word_vectors(project, run_id)
    colours = {"red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"}
    assert wv.neighbours("red", 3)[0][0] in colours

    # Stopped after two steps, then resumed: the same vectors as the uninterrupted run (one thread).
    run2 = workbench.create_run(project, "captions", "word2vec", FAST)
    control = RunControl()
    events = []
    for ev in workbench.run_training(project, run2, control):
        events.append(ev)
        if isinstance(ev, Step) and ev.step == 2:
            control.stop()
    assert events[-1].status == "stopped" and project.run(run2).status == "stopped"
    events = list(workbench.run_training(project, run2))
    assert events[0].start_step == 2 and events[-1].status == "finished"
    again = workbench.run_word_vectors(project, run2)
    assert np.array_equal(again.vectors, wv.vectors)


def test_cli_words_and_exports(project, tmp_path, capsys):
    from gensim.models import KeyedVectors

    from engine.cli import main
    workbench.import_dataset(project, "shapes-captions", "captions", n=600)
    run_id = workbench.create_run(project, "captions", "word2vec", FAST)
    list(workbench.run_training(project, run_id))
    path = str(project.path)
    project.close()
    assert main(["words", "-p", path, "-r", str(run_id), "red", "-k", "3"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.strip().splitlines()) == 3
    assert "scores: centred cosine" in printed.err                # which scores, by default centred
    # --scores: the engine's numbers for that choice.
    import json

    from engine.store import Project
    reader = Project.open(path, read_only=True)
    try:
        wv = workbench.run_word_vectors(reader, run_id)
    finally:
        reader.close()
    for mode in ("raw", "centred", "abtt"):
        assert main(["words", "-p", path, "-r", str(run_id), "red", "-k", "3", "--scores", mode, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["scores"] == mode
        assert [(w, round(s, 5)) for w, s in shown["neighbours"]] == \
            [(w, round(s, 5)) for w, s in wv.neighbours("red", 3, scores=mode)]
    assert main(["words", "-p", path, "-r", str(run_id), "small:large::red:?", "--json"]) == 0
    assert '"answers"' in capsys.readouterr().out
    assert main(["words", "-p", path, "-r", str(run_id), "--odd", "red", "blue", "green", "circle"]) == 0
    assert capsys.readouterr().out.strip() == "circle"
    assert main(["words", "-p", path, "-r", str(run_id), "zebra"]) == 2
    assert "not in the vocabulary: zebra" in capsys.readouterr().err
    for fmt, binary in (("word2vec", False), ("word2vec-bin", True)):
        out = tmp_path / f"v.{fmt}"
        assert main(["export", "-p", path, "-r", str(run_id), "-f", fmt, "-o", str(out)]) == 0
        kv = KeyedVectors.load_word2vec_format(str(out), binary=binary)
        assert kv.vector_size == 16 and "red" in kv.key_to_index


def test_image_data_is_refused_clearly(project):
    # Refused before a run row exists (the run lifecycle's validation, commit 008717d).
    from engine.config import ConfigError
    with pytest.raises(ConfigError, match="trains on text"):
        workbench.create_run(project, "digits", "word2vec", {"epochs": "1"})
    assert project.runs() == []


def test_removing_the_common_direction():
    from engine.text_eval import WordVectors, abtt_components, remove_common_directions
    rng = np.random.default_rng(0)
    # Two clusters of words on top of a large direction every word shares.
    common = 50 * rng.normal(size=32)
    centres = rng.normal(size=(2, 32))
    vectors = common + np.repeat(centres, 10, axis=0) + 0.1 * rng.normal(size=(20, 32))
    wv = WordVectors([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)], vectors)
    raw = wv.neighbours("a0", 19)
    assert min(s for _, s in raw) > 0.99                                  # every raw cosine says "same"
    assert wv.random_pair_score("raw") > 0.99

    centred = remove_common_directions(vectors, "centred")
    np.testing.assert_allclose(centred.mean(0), 0, atol=1e-4)
    near = wv.neighbours("a0", 19, scores="centred")
    assert [w[0] for w, _ in near[:9]] == ["a"] * 9                       # the same ranking: own cluster first
    assert near[0][1] > 0.9 and near[-1][1] < -0.5                        # but scores that spread
    assert abs(wv.random_pair_score("centred")) < 0.1                     # unrelated words near 0
    phrase = wv.phrase_neighbours("a0 a1", 5, scores="centred")
    assert all(w.startswith("a") for w, _ in phrase) and phrase[0][1] > 0.9
    assert wv.odd_one_out(["a0", "a1", "a2", "b0"], scores="centred") == "b0"

    # All-but-the-top: also nothing left along the top principal direction.
    abtt = remove_common_directions(vectors, "abtt")
    x = vectors - vectors.mean(0)
    top = np.linalg.svd(x, full_matrices=False)[2][0]
    assert np.abs(abtt @ top).max() < 1e-3 and np.abs(x @ top).max() > 1
    assert abtt_components(24) == 1 and abtt_components(300) == 3
    assert remove_common_directions(vectors, "raw").shape == (20, 32)
    with pytest.raises(ValueError, match="scores must be one of"):
        remove_common_directions(vectors, "pca")


def test_centred_scores_spread_where_raw_cosines_do_not(project):
    """The default word2vec on the shapes captions: every raw cosine is above 0.99
    (as a first-time user saw); centred scores spread, and the ranking stays sensible."""
    colours = {"red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"}
    workbench.import_dataset(project, "shapes-captions", "captions")
    run_id = workbench.create_run(project, "captions", "word2vec", {"threads": "1"})
    assert type(list(workbench.run_training(project, run_id))[-1]) is Finished
    wv = workbench.run_word_vectors(project, run_id)
    raw = wv.neighbours("red", 10)
    assert min(s for _, s in raw) > 0.99, raw
    centred = wv.neighbours("red", 10, scores="centred")
    values = [s for _, s in centred]
    assert max(values) - min(values) > 0.3, centred                       # a real spread
    assert values == sorted(values, reverse=True) and max(values) < 0.95
    assert centred[0][0] in colours and sum(w in colours for w, _ in centred[:6]) >= 5, centred
    assert abs(wv.random_pair_score("centred")) < 0.1 < wv.random_pair_score("raw")
    # Analogies and odd-one-out take the same choice.
    assert wv.odd_one_out(["red", "blue", "green", "circle"], scores="centred") == "circle"
    answers = wv.analogy("red", "circle", "blue", k=3, scores="centred")
    assert answers[0][1] < 0.9 and answers[0][1] - answers[-1][1] > 0.01, answers
