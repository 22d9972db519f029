"""The BERT-style masked language model on the Brown corpus, on a fixed CPU budget.

What is measured, on held-out sentences after ``--minutes`` of training: the
masked-token accuracy and perplexity beside the unigram baseline measured on
the same masked positions in the same run (always guess the most frequent
training token; perplexity of the training token frequencies), next-sentence
accuracy beside chance (0.5), and training tokens/s (non-padding tokens).

Data: ../shared/data/text/brown.txt, one sentence per line in corpus order.
Held out: blocks of 50 consecutive sentences, every 20th block (5 %), so
held-out next-sentence pairs are real neighbours and every genre is covered.
The tokenizer (WordPiece) and the unigram counts come from the training part.

It trains through the app's own MLM task (engine/tasks/mlm.py) with the app's
schedule: linear warm-up over half an epoch, then cosine decay to zero at the
last step. The schedule is sized to the budget from the step time of a short
probe on the same model: whole epochs when the budget holds one, else one epoch
over the first training sentences that fit (in corpus order). Batch 32 and
lr 4e-3 were best of the few tried in 3 minutes here with the earlier clock-driven
linear schedule (batch 64 at 2e-3 / 4e-3: masked-acc 1.34× / 1.39× unigram;
batch 16 at 3e-3: 1.33×; batch 32 at 4e-3: 1.59×): this early in training more
updates beat bigger batches.

    .venv/bin/python bench/mlm.py [--minutes 3] [--batch 32] [--lr 4e-3] [--threads 1]
                                  [--eval 2000] [key=value ...  (MLMConfig overrides)]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.config import with_overrides  # noqa: E402
from engine.data.text import HELDOUT, TRAIN, build_corpus  # noqa: E402
from engine.loop import train_task  # noqa: E402
from engine.methods.mlm import MLMConfig, step_generator  # noqa: E402
from engine.tasks.mlm import MLMTask  # noqa: E402
from engine.train import RunConfig, TrainConfig  # noqa: E402

BROWN = ROOT.parent / "shared" / "data" / "text" / "brown.txt"
BLOCK, EVERY = 50, 20
PROBE_SECONDS = 10        # steps timed to size the schedule (on a throw-away copy of the model)


def split(sentences: list[str]) -> tuple[list[str], list[str]]:
    train, held = [], []
    for i, s in enumerate(sentences):
        (held if (i // BLOCK) % EVERY == EVERY - 1 else train).append(s)
    return train, held


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget (wall clock)")
    ap.add_argument("--batch", type=int, default=32, help="sentence pairs per step")
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (a small model on a shared 2-core machine is fastest on one)")
    ap.add_argument("--eval", type=int, default=2000, help="held-out sentences evaluated (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="MLMConfig settings as key=value")
    args = ap.parse_args()
    if not BROWN.is_file():
        print(f"mlm: skipped, {BROWN} is absent")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = with_overrides(MLMConfig(), dict(o.split("=", 1) for o in args.overrides))
    sentences = [s for s in BROWN.read_text(encoding="utf-8").splitlines() if s.strip()]
    corpus = build_corpus("brown", sentences, heldout=0)
    held_mask = (np.arange(corpus.n) // BLOCK) % EVERY == EVERY - 1
    corpus = dataclasses.replace(corpus, split=np.where(held_mask, HELDOUT, TRAIN).astype(corpus.split.dtype))
    train, held = split(corpus.sentences)
    if args.eval:
        held = held[:args.eval]

    def task(epochs: int, max_items: int, state: dict | None) -> MLMTask:
        run = RunConfig("mlm", TrainConfig(epochs=epochs, batch_size=args.batch, lr=args.lr, seed=args.seed,
                                           device="cpu", max_train_items=max_items), cfg)
        t = MLMTask(run, corpus)
        t.setup(state)
        return t

    t_start = time.perf_counter()
    probe = task(1, 0, None)                   # trains the tokenizer, counts the tokens
    tok_s = time.perf_counter() - t_start
    model = probe.model
    untrained = {"model": {k: v.clone() for k, v in model.state_dict().items()}}
    n_tokens = int(model.token_counts.sum())
    print(f"mlm brown: {len(train)} train / {len(held)} held-out sentences, {n_tokens} train subword "
          f"tokens, vocab {model.vocab_size} ({cfg.tokenizer}, trained in {tok_s:.1f} s), "
          f"dim {cfg.dim} depth {cfg.depth} max_len {cfg.max_len}, batch {args.batch}, lr {args.lr:g}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)

    # Size the app's schedule to the budget from a few timed steps, then train the untrained model.
    timed = train_task(probe, max_seconds=min(PROBE_SECONDS, args.minutes * 6))
    budget = args.minutes * 60 - (time.perf_counter() - t_start)
    steps = max(1, int(budget * timed["steps"] / timed["seconds"]))
    per_epoch = probe.steps_per_epoch
    epochs, max_items = (max(1, round(steps / per_epoch)), 0) if steps >= per_epoch else (1, steps * args.batch)
    trained = task(epochs, max_items, untrained)
    res = train_task(trained, max_seconds=budget)
    model = trained.model
    ev = model.evaluate(held, step_generator(args.seed + 12345, 0))

    acc, uacc = ev["masked_accuracy"], ev["unigram_accuracy"]
    ppl, uppl = ev["perplexity"], ev["unigram_perplexity"]
    print(f"mlm brown masked-acc {acc:.3f} vs unigram {uacc:.3f} ({acc / max(uacc, 1e-9):.2f}×) "
          f"on {int(ev['masked_tokens'])} held-out masked tokens")
    print(f"mlm brown perplexity {ppl:.1f} vs unigram {uppl:.1f} ({ppl / uppl:.2f}×, lower is better)")
    print(f"mlm brown nsp-acc {ev['nsp_accuracy']:.3f} vs chance 0.500 "
          f"({ev['nsp_accuracy'] / 0.5:.2f}×) on {int(ev['sentences'])} held-out pairs")
    print(f"mlm brown train {res['tokens_per_s']:.0f} tokens/s, {res['steps']} steps in "
          f"{res['seconds'] / 60:.1f} min (final train mlm-acc {res['mlm_accuracy']:.3f})")
    for text in ("the jury said [MASK] evidence .", "he [MASK] to the store ."):
        top = model.fill_mask(text, 5)[0]
        print(f"mlm brown fill-mask {text!r}: " + ", ".join(f"{t} {p:.2f}" for t, p in top))


if __name__ == "__main__":
    main()
