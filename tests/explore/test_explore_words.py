"""The Words view's data without Qt: a word2vec run's vectors and word map, a masked
language model's fill-mask model, and which runs are text runs."""
from __future__ import annotations

import numpy as np
import pytest

from engine.explore.words import WordMap, WordsRun, fill_mask, load_fill_mask_model, load_words_run, text_runs
from engine.workbench import create_run, import_dataset, run_training, run_word_vectors

MLM_TINY = {"tokenizer": "word", "vocab_size": "60", "dim": "32", "depth": "1", "heads": "2", "max_len": "24",
            "batch_size": "64", "epochs": "1"}


def _trained(project, method, overrides) -> int:
    run_id = create_run(project, "captions", method, overrides)
    events = list(run_training(project, run_id))
    assert type(events[-1]).__name__ == "Finished", events[-1]
    return run_id


@pytest.fixture
def captions(project):
    _, data = import_dataset(project, "shapes-captions", "captions", n=300)
    return data


def test_a_word2vec_run(project, captions):
    run_id = _trained(project, "word2vec", {"epochs": "2", "sample": "0", "dim": "16", "threads": "1"})
    info = load_words_run(project, run_id)
    assert isinstance(info, WordsRun) and info.run_id == run_id and info.run.method == "word2vec"
    expected = run_word_vectors(project, run_id)
    assert info.wv.words == expected.words and np.array_equal(info.wv.vectors, expected.vectors)
    assert info.model is None and load_fill_mask_model(project, run_id) is None     # no [MASK] to fill
    m = info.map
    assert isinstance(m, WordMap) and "red" in m.words and "circle" in m.words
    assert len(m.words) == len(m.counts) == len(m.projections["pca"][1])
    vocab_counts = dict(zip(captions.vocab, captions.counts))
    assert [int(c) for c in m.counts] == [int(vocab_counts[w]) for w in m.words]
    assert "pca" in m.projections and m.projections["pca"][1].shape[1] == 2
    with pytest.raises(AttributeError):
        info.model = "x"                                            # frozen
    assert [r.id for r in text_runs(project)] == [run_id]


def test_a_masked_language_model_run(project, captions):
    image_run = create_run(project, "digits", "simclr", {})
    run_id = _trained(project, "mlm", MLM_TINY)
    info = load_words_run(project, run_id)
    assert info.wv is None and info.map is None                      # no word vectors
    assert info.model is not None and hasattr(info.model, "fill_mask")
    answer = fill_mask(info.model, "a small [MASK] circle", k=3)
    assert len(answer) == 1 and len(answer[0]) == 3                 # one [MASK], three tokens
    probs = [p for _, p in answer[0]]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    runs = [r.id for r in text_runs(project)]
    assert run_id in runs and image_run not in runs
