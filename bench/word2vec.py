"""word2vec on the Brown corpus: ours against gensim 4, same hyper-parameters, same run.

Both sides: vector 100, window 5, negative 5, sample 1e-3, min_count 5, 5 epochs,
lr 0.025 → 0.0001, 2 threads, the corpus as gensim reads it (one sentence per
line, tokens split on spaces, original case; our ``text`` loader with
punctuation=keep lowercase=false heldout=0 gives the same tokens). Speed is raw
corpus words per second of training (vocabulary building excluded on both
sides). Quality is measured with the same evaluator (engine.text_eval, which
follows gensim's evaluate_word_analogies / evaluate_word_pairs:
case-insensitive, analogies within the 30,000 most frequent words) on both
sides' vectors; gensim's own analogy number is printed beside ours as a check
of the evaluator.

The machine may be shared, so the two are run interleaved ``--reps`` times and
the best speed of each counts (other processes only ever slow a rep down);
quality is from the fastest rep.

    .venv/bin/python bench/word2vec.py [--reps 2] [--epochs 5] [--threads 2] [--arch skipgram,cbow]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TEXT = ROOT.parent / "shared" / "data" / "text"

import numpy as np  # noqa: E402

NAME = "word2vec"


def ours(data, arch: str, epochs: int, threads: int, seed: int):
    from engine.train import RunConfig, TrainConfig
    from engine.tasks.word2vec import build_method, step_bounds, train_corpus, word_vectors
    from engine.methods.word2vec import Word2VecConfig, mix_seed
    cfg = Word2VecConfig(arch=arch, dim=100, window=5, negative=5, sample=1e-3, min_count=5, threads=threads)
    run = RunConfig("word2vec", TrainConfig(epochs=epochs, lr=0.025, seed=seed), cfg, None)
    tokens, offsets = train_corpus(data)
    method = build_method(run, data, tokens)
    remap = np.full(len(data.vocab), -1, np.int32)
    remap[method.vocab_ids.numpy()] = np.arange(len(method.vocab_ids), dtype=np.int32)
    model_tokens = remap[tokens]
    bounds = step_bounds(offsets, cfg.words_per_step)
    steps = (len(bounds) - 1) * epochs
    lr = lambda s: 0.025 - (0.025 - cfg.min_lr) * s / steps  # noqa: E731
    method.train_sentences(model_tokens, offsets, 0, 1, 0.0, 0.0, 0)    # compile (or load the cache) untimed
    t0 = time.perf_counter()
    step = 0
    for _ in range(epochs):
        for b in range(len(bounds) - 1):
            method.train_sentences(model_tokens, offsets, int(bounds[b]), int(bounds[b + 1]), lr(step),
                                   lr(step + 1), mix_seed(seed, step))
            step += 1
    seconds = time.perf_counter() - t0
    method.close()
    return word_vectors(method, data), seconds


def theirs(sentences, arch: str, epochs: int, threads: int, seed: int, n_words: int):
    from gensim.models import Word2Vec
    from engine.text_eval import WordVectors
    m = Word2Vec(vector_size=100, window=5, negative=5, sample=1e-3, min_count=5, workers=threads,
                 sg=int(arch == "skipgram"), alpha=0.025, min_alpha=0.0001, seed=seed)
    m.build_vocab(sentences)
    t0 = time.perf_counter()
    m.train(sentences, total_examples=len(sentences), epochs=epochs)
    seconds = time.perf_counter() - t0
    own = m.wv.evaluate_word_analogies(str(TEXT / "questions-words.txt"), restrict_vocab=30000)[0]
    words = list(m.wv.index_to_key)
    counts = np.array([m.wv.get_vecattr(w, "count") for w in words])
    return WordVectors(words, m.wv.vectors, counts), seconds, own


def quality(wv, sections, pairs) -> dict:
    from engine.text_eval import evaluate_analogies, evaluate_similarity
    a = evaluate_analogies(wv, sections)
    out = {"analogy": a["accuracy"], "n_questions": a["n_questions"]}
    for stem, p in pairs.items():
        out[stem] = evaluate_similarity(wv, p)["spearman"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="skipgram,cbow")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not (TEXT / "brown.txt").is_file():
        print(f"{NAME}: skipped: {TEXT / 'brown.txt'} is absent")
        return
    logging.getLogger("gensim").setLevel(logging.WARNING)
    import gensim
    from engine.data import load_images
    from engine.text_eval import read_analogies, read_pairs
    data = load_images("text", path=TEXT / "brown.txt", lowercase=False, punctuation="keep", heldout=0.0,
                       max_chars=10**7)
    sentences = [s.split() for s in data.sentences]
    n_words = data.n_tokens
    sections = read_analogies(TEXT / "questions-words.txt")
    pairs = {"wordsim353": read_pairs(TEXT / "wordsim353.tsv"), "simlex999": read_pairs(TEXT / "simlex999.txt")}
    print(f"{NAME}: brown.txt {data.n} sentences, {n_words} words; gensim {gensim.__version__}; "
          f"dim 100 window 5 negative 5 sample 1e-3 min_count 5, {args.epochs} epochs, {args.threads} threads, "
          f"best of {args.reps} interleaved reps")
    for arch in args.arch.split(","):
        best = {"gensim": None, "ours": None}
        for _ in range(args.reps):
            wv, sec, own = theirs(sentences, arch, args.epochs, args.threads, args.seed, n_words)
            if best["gensim"] is None or sec < best["gensim"][1]:
                best["gensim"] = (wv, sec, own)
            wv, sec = ours(data, arch, args.epochs, args.threads, args.seed)
            if best["ours"] is None or sec < best["ours"][1]:
                best["ours"] = (wv, sec, None)
        res = {}
        for side, (wv, sec, own) in best.items():
            q = quality(wv, sections, pairs)
            wps = n_words * args.epochs / sec
            res[side] = (wps, sec, q)
            print(f"{NAME}: {arch:8s} {side:6s} {wps / 1e3:7.0f} k words/s  wall {sec:6.1f} s  "
                  f"analogy {100 * q['analogy']:5.2f} % of {q['n_questions']}  "
                  f"wordsim353 rho {q['wordsim353']:.3f}  simlex999 rho {q['simlex999']:.3f}"
                  + (f"  (gensim's own analogy evaluation: {100 * own:.2f} %)" if own is not None else ""))
        (gw, _, gq), (ow, _, oq) = res["gensim"], res["ours"]
        print(f"{NAME}: {arch:8s} ratio  speed {ow / gw:.2f}x (goal >= 1.0)  "
              f"analogy {100 * (oq['analogy'] - gq['analogy']):+.2f} points (goal within 1)  "
              f"wordsim353 {oq['wordsim353'] - gq['wordsim353']:+.3f}  simlex999 {oq['simlex999'] - gq['simlex999']:+.3f}"
              " (goal within 0.02)")


if __name__ == "__main__":
    main()
