"""A BERT-style masked language model with next-sentence prediction (Devlin et al. 2019).

Self-supervision from context on text: hide some tokens of a sentence and ask a
Transformer encoder to guess them from both sides, and ask it whether the second
of two sentences really followed the first.

* **Tokens.** A WordPiece (or BPE) vocabulary trained on the corpus with HF
  ``tokenizers`` (:func:`train_tokenizer`), with the special tokens [PAD] [UNK]
  [CLS] [SEP] [MASK].
* **Inputs.** ``[CLS] A [SEP] B [SEP]``: A is a sentence, B is the sentence
  after it half of the time and a random sentence otherwise (the NSP label);
  token + learned position + segment (0 for A, 1 for B) embeddings.
* **Masking** (:func:`mask_tokens`): each non-special token is chosen with
  probability 15 %; of the chosen, 80 % become [MASK], 10 % a random token, 10 %
  stay as they are (so the model cannot learn that only [MASK] needs predicting).
  Every draw comes from the ``torch.Generator`` the caller passes in, seeded per
  step, so a resumed run makes the same batches.
* **Encoder.** Pre-LayerNorm Transformer blocks written out below (attention via
  ``F.scaled_dot_product_attention`` with the padding masked out) and a final norm.
* **Heads.** MLM: dense + GELU + LayerNorm, then a projection onto the vocabulary
  that re-uses the token-embedding matrix (weight tying, as BERT), computed only
  at the chosen positions (the other 85 % would be thrown away). NSP: a linear
  layer on the [CLS] state.
* **Loss.** L = CE(masked tokens) + nsp_weight · CE(is-next).

The tokenizer rides in the state dict as its JSON text in a uint8 buffer, so a
checkpoint made of tensors only (safetensors, no pickle) rebuilds the whole model:
:meth:`MaskedLanguageModel.from_state`. Training-set token counts ride the same
way (buffer ``token_counts``) for the unigram baseline of :meth:`evaluate`.

Use, from a plain list of sentence strings::

    model = build(MLMConfig(), train_sentences)          # tokenizer + counts
    loss, logs, n_tokens = model.training_step(SentenceBatch(train_sentences, list(range(64))), step_seed(0, 0))
    model.evaluate(held_out_sentences, g)                # accuracy, perplexity, unigram baseline
    model.fill_mask("the jury said [MASK] evidence", k=5)
    model.embed_sentences(["a sentence", "another"])     # (2, dim), mean-pooled
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, check, param
from .base import MethodCard, TextMethod

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]
#: Cross-entropy's "no target here" label.
IGNORE = -100


@dataclass
class MLMConfig:
    vocab_size: int = param(8000, "Subword vocabulary size the tokenizer is trained to (at most; a "
                                  "small corpus can give fewer)", min=len(SPECIAL_TOKENS) + 1, max=100_000)
    tokenizer: str = param("wordpiece", "Subword model: WordPiece (BERT's) or byte-pair encoding; or whole "
                                        "words (the only one whose vocabulary is the same on every run)",
                           choices=("wordpiece", "bpe", "word"))
    lowercase: bool = param(True, "Lower-case and strip accents before tokenising")
    max_len: int = param(64, "Longest input in tokens, [CLS] and [SEP]s included; longer pairs "
                             "are cut, the longer sentence first", min=8, max=512)
    dim: int = param(128, "Width of the token states", min=16, max=1024)
    depth: int = param(2, "Transformer blocks", min=1, max=24)
    heads: int = param(4, "Attention heads (must divide the width)", min=1, max=16)
    mlp_ratio: float = param(4.0, "Hidden width of each block's MLP, as a multiple of the width",
                             min=1.0, max=8.0, advanced=True)
    dropout: float = param(0.0, "Dropout in the blocks. It draws from torch's global random "
                                "state, not the step's generator, so a resumed run matches an "
                                "uninterrupted one exactly only at 0", min=0.0, max=0.5, advanced=True)
    mask_prob: float = param(0.15, "Fraction of the (non-special) tokens chosen for prediction",
                             min=0.01, max=0.5)
    mask_token_frac: float = param(0.8, "Of the chosen tokens, the fraction replaced by [MASK]",
                                   min=0.0, max=1.0, advanced=True)
    random_token_frac: float = param(0.1, "Of the chosen tokens, the fraction replaced by a random "
                                          "token (the rest stay unchanged)", min=0.0, max=1.0, advanced=True)
    nsp_weight: float = param(1.0, "Weight of the next-sentence-prediction loss (0 = MLM only)",
                              min=0.0, max=10.0)

    def __post_init__(self):
        bad = {}
        if self.dim % self.heads:
            bad["heads"] = f"{self.heads} heads do not divide the width {self.dim}"
        if self.mask_token_frac + self.random_token_frac > 1.0 + 1e-9:
            bad["random_token_frac"] = (f"[MASK] ({self.mask_token_frac}) and random "
                                        f"({self.random_token_frac}) fractions add up to more than 1")
        if bad:
            raise ConfigError(bad)


# ------------------------------------------------------------------------------------------------
# Tokenizer

def train_tokenizer(sentences: Sequence[str], vocab_size: int = 8000, kind: str = "wordpiece",
                    lowercase: bool = True):
    """A subword tokenizer trained on ``sentences`` (HF ``tokenizers``, runs in Rust).

    BERT's normaliser (optionally lower-casing and stripping accents) and
    pre-tokeniser (split on whitespace and punctuation), then WordPiece or BPE
    merges learned up to ``vocab_size``. The special tokens come first, so
    [PAD] is id 0.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase,
                                            clean_text=True, handle_chinese_chars=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if not any(s.strip() for s in sentences):
        raise ValueError("cannot train a tokenizer: the corpus has no text")
    if kind == "word":
        # Whole words, the most frequent first (ties by spelling): counted here rather
        # than by a trainer, so the same corpus always gives the same vocabulary —
        # the subword trainers break ties in a different order in every process.
        counts: dict[str, int] = {}
        for s in sentences:
            for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(s)):
                counts[w] = counts.get(w, 0) + 1
        ranked = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
        words = SPECIAL_TOKENS + ranked[:max(0, vocab_size - len(SPECIAL_TOKENS))]
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        tok.add_special_tokens(SPECIAL_TOKENS)      # so "[MASK]" in a query stays one token
        return tok
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                            min_frequency=2, show_progress=False)
        tok.decoder = decoders.WordPiece()
    elif kind == "bpe":
        # The suffix marks word ends, so the decoder knows where the spaces were.
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      min_frequency=2, end_of_word_suffix="</w>", show_progress=False)
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r} (known: wordpiece, bpe, word)")
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.train_from_iterator(sentences, trainer=trainer, length=len(sentences))
    return tok


def tokenizer_to_tensor(tokenizer) -> torch.Tensor:
    """The tokenizer's JSON as a uint8 tensor (checkpoints hold tensors only)."""
    return torch.frombuffer(bytearray(tokenizer.to_str().encode("utf-8")), dtype=torch.uint8).clone()


def tokenizer_from_tensor(t: torch.Tensor):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(bytes(t.detach().cpu().numpy().tobytes()).decode("utf-8"))


# ------------------------------------------------------------------------------------------------
# Masking

def mask_tokens(ids: torch.Tensor, special: torch.Tensor, generator: torch.Generator, *,
                vocab_size: int, mask_id: int, n_special: int, mask_prob: float = 0.15,
                mask_frac: float = 0.8, random_frac: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: ``(inputs, labels)`` from ``ids`` (B, L).

    Each position where ``special`` is False is chosen with probability
    ``mask_prob``; a chosen token becomes [MASK] with probability ``mask_frac``,
    a random non-special token with probability ``random_frac``, else stays.
    ``labels`` holds the original id at chosen positions and ``IGNORE`` elsewhere.
    Random ids are drawn from ``n_special .. vocab_size-1`` (the special tokens
    come first in the vocabulary), so a [PAD] or [CLS] is never planted.
    """
    # Draw on the generator's device (the loop's generator may be CPU or CUDA), then move.
    gdev = generator.device
    chosen_u = torch.rand(ids.shape, generator=generator, device=gdev).to(ids.device)
    kind_u = torch.rand(ids.shape, generator=generator, device=gdev).to(ids.device)
    random_ids = torch.randint(n_special, vocab_size, ids.shape, generator=generator,
                               device=gdev).to(ids.device)
    chosen = (chosen_u < mask_prob) & ~special
    to_mask = chosen & (kind_u < mask_frac)
    to_random = chosen & (kind_u >= mask_frac) & (kind_u < mask_frac + random_frac)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    return inputs, labels


def truncate_pair(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Lengths after cutting the longer sentence first until ``la + lb <= budget``
    (BERT's ``truncate_seq_pair``, in closed form)."""
    if la + lb <= budget:
        return la, lb
    half = budget // 2
    if la <= half:
        return la, budget - la
    if lb <= half:
        return budget - lb, lb
    return budget - half, half


# ------------------------------------------------------------------------------------------------
# The encoder

class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep`` (B, L) bool: False at padding, which no position may attend to."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(LN(x)), then x + MLP(LN(x)). Pre-LN
    trains stably without BERT's long learning-rate warm-up."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), keep))
        return x + self.mlp(self.norm2(x))


# ------------------------------------------------------------------------------------------------
# The model

@dataclass(frozen=True)
class SentenceBatch:
    """One step's sentences A: ``sentences[i]`` for each i in ``indices`` (the epoch's
    order; ``sentences`` in document order, so sentence i + 1 really follows i)."""
    sentences: Sequence[str]
    indices: torch.Tensor | Sequence[int]


class MaskedLanguageModel(TextMethod):
    name = "mlm"
    Config = MLMConfig
    trained_by = "mlm"
    fills_masks = True
    card = MethodCard(
        title="Masked language model (BERT)",
        family="text",
        learns="Contextual token states from guessing hidden words from both sides, and sentence "
               "states from telling a real next sentence from a random one.",
        loss="L = −Σ_{i∈masked} log p(x_i | x_\\masked) − log p(IsNext | [CLS]); 15 % of tokens "
             "chosen: 80 % [MASK], 10 % random, 10 % unchanged",
        paper="Devlin, Chang, Lee, Toutanova. BERT: Pre-training of Deep Bidirectional "
              "Transformers for Language Understanding. NAACL 2019",
        url="https://arxiv.org/abs/1810.04805")

    #: Loop settings that suit it on the CPU (bench/mlm.py: more, smaller steps learn
    #: faster this early than fewer big ones).
    train_defaults = {"batch_size": 32, "lr": 4e-3, "weight_decay": 0.01, "warmup_epochs": 0.1,
                      "epochs": 3, "checkpoint_every": 500}

    def __init__(self, cfg: MLMConfig, tokenizer):
        """``tokenizer``: trained on the corpus (:func:`train_tokenizer`); it sizes everything."""
        check(cfg)
        super().__init__(cfg)
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"the tokenizer must have {', '.join(SPECIAL_TOKENS)} as ids 0-4, "
                             f"got {ids} (use train_tokenizer)")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.n_special = len(SPECIAL_TOKENS)
        self.vocab_size = V = tokenizer.get_vocab_size()
        D = cfg.dim
        self.tok_embed = nn.Embedding(V, D)
        self.pos_embed = nn.Embedding(cfg.max_len, D)     # learned positions, as BERT
        self.seg_embed = nn.Embedding(2, D)               # sentence A / sentence B
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D)
        # MLM head: a transform, then scores against the (tied) token embeddings plus a bias.
        self.mlm_transform = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.LayerNorm(D))
        self.mlm_bias = nn.Parameter(torch.zeros(V))
        self.nsp_head = nn.Linear(D, 2)
        self.apply(_init_weights)
        # Everything needed to rebuild the model travels in the state dict as tensors.
        self.register_buffer("tokenizer_json", tokenizer_to_tensor(tokenizer))
        self.register_buffer("token_counts", torch.zeros(V, dtype=torch.int64))

    # -- rebuilding from tensors ---------------------------------------------------------------
    @classmethod
    def from_state(cls, cfg: MLMConfig, state: dict[str, torch.Tensor]) -> "MaskedLanguageModel":
        """The model whose ``state_dict()`` was ``state`` (tokenizer included)."""
        if "tokenizer_json" not in state:
            raise ValueError("this state has no tokenizer (key 'tokenizer_json'): not an MLM checkpoint")
        model = cls(cfg, tokenizer_from_tensor(state["tokenizer_json"]))
        # Keep the stored bytes as they are (a re-serialised JSON could differ in length).
        model.tokenizer_json = state["tokenizer_json"].detach().clone().cpu()
        model.load_state_dict(state)
        return model

    @property
    def device(self) -> torch.device:
        return self.tok_embed.weight.device

    # -- the encoder -----------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, segments: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) → final token states (B, L, dim)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok_embed(ids) + self.pos_embed(pos)[None] + self.seg_embed(segments)
        x = self.embed_drop(x)
        for blk in self.blocks:
            x = blk(x, keep)
        return self.norm(x)

    def mlm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """(..., dim) → (..., vocab): scores against the tied token embeddings."""
        return F.linear(self.mlm_transform(states), self.tok_embed.weight, self.mlm_bias)

    # -- batches ---------------------------------------------------------------------------------
    def _ids(self, sentences: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(sentences), add_special_tokens=False)]

    def _pack(self, pairs: list[tuple[list[int], list[int] | None]]) -> dict[str, torch.Tensor]:
        """[CLS] A [SEP] (B [SEP]) per pair, cut to max_len and right-padded."""
        L = self.cfg.max_len
        rows, segs = [], []
        for a, b in pairs:
            if b is None:
                a = a[:L - 2]
                row, seg = [self.cls_id, *a, self.sep_id], [0] * (len(a) + 2)
            else:
                la, lb = truncate_pair(len(a), len(b), L - 3)
                a, b = a[:la], b[:lb]
                row = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
                seg = [0] * (la + 2) + [1] * (lb + 1)
            rows.append(row)
            segs.append(seg)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        segments = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, s) in enumerate(zip(rows, segs)):
            ids[i, :len(r)] = torch.tensor(r)
            segments[i, :len(s)] = torch.tensor(s)
        dev = self.device
        return {"ids": ids.to(dev), "segments": segments.to(dev), "keep": (ids != self.pad_id).to(dev)}

    def make_batch(self, sentences: Sequence[str], batch_size: int, generator: torch.Generator,
                   indices: Sequence[int] | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Sentence pairs for one step, from a list of sentences in document order.

        Sentence A is ``sentences[i]`` for each i in ``indices`` (the loop's epoch
        order), or ``batch_size`` indices drawn with ``generator`` when None.
        Sentence B is ``sentences[i + 1]`` with probability 1/2 (is_next = 1) and
        otherwise a random sentence other than i + 1 (is_next = 0); the last
        sentence has no successor and always gets a random one.
        Returns ids, segments, keep (False at padding), is_next, n_tokens, and the
        sentence indices a_index / b_index.
        """
        n = len(sentences)
        if n < 2:
            raise ValueError(f"next-sentence pairs need at least 2 sentences, got {n}")
        cpu = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator,
                                                              device=generator.device).item()))
        if indices is None:
            a_idx = torch.randint(0, n, (batch_size,), generator=cpu)
        else:
            a_idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        coin = torch.rand(len(a_idx), generator=cpu) < 0.5
        is_next = coin & (a_idx + 1 < n)
        # A random partner from the n - 1 sentences other than i + 1 (draw from n - 1, skip over i + 1).
        other = torch.randint(0, n - 1, (len(a_idx),), generator=cpu)
        other = other + (other >= a_idx + 1).long()
        b_idx = torch.where(is_next, a_idx + 1, other)
        a_ids = self._ids([sentences[i] for i in a_idx.tolist()])
        b_ids = self._ids([sentences[i] for i in b_idx.tolist()])
        batch = self._pack(list(zip(a_ids, b_ids)))
        batch["is_next"] = is_next.long().to(self.device)
        batch["n_tokens"] = batch["keep"].sum()
        batch["a_index"], batch["b_index"] = a_idx, b_idx     # which sentences (CPU), for viewers and tests
        return batch

    def special_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """True at [PAD] [UNK] [CLS] [SEP] [MASK]: positions never chosen for prediction."""
        return ids < self.n_special

    # -- training --------------------------------------------------------------------------------
    def training_step(self, batch: SentenceBatch, seed: int) -> tuple[torch.Tensor, dict, int]:
        """Pair each sentence A with its B and mask the pairs (one generator seeded with
        ``seed`` draws both), then MLM + NSP losses: (loss, logs, tokens)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        pairs = self.make_batch(batch.sentences, len(batch.indices), generator, indices=batch.indices)
        loss, logs = self._losses(pairs, generator)
        return loss, logs, int(pairs["n_tokens"])

    def forward(self, batch: SentenceBatch, seed: int):
        # The task calls the module, as any nn.Module's hooks expect.
        return self.training_step(batch, seed)

    def _losses(self, batch, generator, *, sums: bool = False):
        cfg = self.cfg
        inputs, labels = mask_tokens(batch["ids"], self.special_mask(batch["ids"]), generator,
                                     vocab_size=self.vocab_size, mask_id=self.mask_id,
                                     n_special=self.n_special, mask_prob=cfg.mask_prob,
                                     mask_frac=cfg.mask_token_frac, random_frac=cfg.random_token_frac)
        states = self.encode(inputs, batch["segments"], batch["keep"])
        chosen = labels != IGNORE
        targets = labels[chosen]
        logits = self.mlm_logits(states[chosen])             # only the chosen positions: (M, V)
        nsp_logits = self.nsp_head(states[:, 0])              # the [CLS] state
        if targets.numel():
            mlm_ce = F.cross_entropy(logits, targets, reduction="sum")
            mlm_hits = (logits.argmax(-1) == targets).sum()
        else:                                                 # a batch of very short sentences
            mlm_ce = logits.sum() * 0.0
            mlm_hits = torch.zeros((), device=logits.device)
        nsp_ce = F.cross_entropy(nsp_logits, batch["is_next"], reduction="sum")
        nsp_hits = (nsp_logits.argmax(-1) == batch["is_next"]).sum()
        m, b = max(targets.numel(), 1), len(batch["is_next"])
        mlm_loss, nsp_loss = mlm_ce / m, nsp_ce / b
        loss = mlm_loss + cfg.nsp_weight * nsp_loss
        logs = {"mlm_loss": float(mlm_loss.detach()), "nsp_loss": float(nsp_loss.detach()),
                "mlm_accuracy": float(mlm_hits) / m, "nsp_accuracy": float(nsp_hits) / b}
        if sums:   # for evaluate: exact totals over many batches
            logs.update(_targets=targets, _mlm_ce=float(mlm_ce), _mlm_hits=float(mlm_hits),
                        _nsp_hits=float(nsp_hits), _m=targets.numel(), _b=b)
        return loss, logs

    # -- unigram baseline ------------------------------------------------------------------------
    @torch.no_grad()
    def count_tokens(self, train_sentences: Sequence[str]) -> None:
        """Store training-set token frequencies (the unigram baseline of :meth:`evaluate`)."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for start in range(0, len(train_sentences), 4096):
            for ids in self._ids(train_sentences[start:start + 4096]):
                counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=self.vocab_size)
        counts[:self.n_special] = 0       # never targets
        self.token_counts.copy_(torch.from_numpy(counts))

    def unigram_log_probs(self) -> torch.Tensor:
        """log p(token) from the training counts, add-one smoothed over non-special tokens."""
        c = self.token_counts.double() + 1.0
        c[:self.n_special] = 0.0
        return (c / c.sum()).log().float()

    # -- evaluation and queries ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, held_out_sentences: Sequence[str], generator: torch.Generator,
                 batch_size: int = 128) -> dict[str, float]:
        """Masked-token accuracy and perplexity, NSP accuracy, and the unigram baseline
        (always predict the most frequent training token; perplexity of the training
        token frequencies) on the same masked positions. Each held-out sentence is
        sentence A once, with pairs and masks drawn from ``generator``."""
        if self.token_counts.sum() == 0:
            raise ValueError("no training token counts: call count_tokens(train_sentences) first")
        was_training = self.training
        self.eval()
        uni_lp = self.unigram_log_probs()
        uni_best = int(uni_lp.argmax())
        ce = hits = nsp_hits = uni_ce = uni_hits = 0.0
        m = b = 0
        order = torch.arange(len(held_out_sentences))
        for start in range(0, len(order), batch_size):
            batch = self.make_batch(held_out_sentences, 0, generator, indices=order[start:start + batch_size])
            _, logs = self._losses(batch, generator, sums=True)
            t = logs["_targets"]
            ce += logs["_mlm_ce"]
            hits += logs["_mlm_hits"]
            nsp_hits += logs["_nsp_hits"]
            uni_ce -= float(uni_lp[t].sum())
            uni_hits += float((t == uni_best).sum())
            m += logs["_m"]
            b += logs["_b"]
        self.train(was_training)
        m = max(m, 1)
        return {"masked_accuracy": hits / m, "perplexity": math.exp(ce / m),
                "nsp_accuracy": nsp_hits / max(b, 1),
                "unigram_accuracy": uni_hits / m, "unigram_perplexity": math.exp(uni_ce / m),
                "masked_tokens": float(m), "sentences": float(b)}

    @torch.no_grad()
    def fill_mask(self, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
        """For each [MASK] in ``text``, the ``k`` likeliest tokens and their probabilities."""
        ids = self._ids([text])[0]
        if self.mask_id not in ids:
            raise ValueError(f"the text has no {MASK} to fill: {text!r}")
        was_training = self.training
        self.eval()
        batch = self._pack([(ids[:self.cfg.max_len - 2], None)])
        states = self.encode(batch["ids"], batch["segments"], batch["keep"])[0]
        where = (batch["ids"][0] == self.mask_id).nonzero().flatten()
        logits = self.mlm_logits(states[where])
        logits[:, :self.n_special] = float("-inf")     # never propose [PAD], [MASK], ...
        probs = logits.softmax(-1)
        top = probs.topk(min(k, self.vocab_size - self.n_special), dim=-1)
        self.train(was_training)
        return [[(self.tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(ps, ix)]
                for ps, ix in zip(top.values, top.indices)]

    @torch.no_grad()
    def embed_sentences(self, sentences: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """(N, dim) float32: the last layer's states of [CLS] s [SEP], averaged over
        the real tokens (padding excluded)."""
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(sentences), batch_size):
            ids = self._ids(sentences[start:start + batch_size])
            batch = self._pack([(a, None) for a in ids])
            states = self.encode(batch["ids"], batch["segments"], batch["keep"])
            w = batch["keep"].unsqueeze(-1).float()
            out.append(((states * w).sum(1) / w.sum(1)).float().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self.cfg.dim), dtype=np.float32)


def _init_weights(m: nn.Module) -> None:
    """Xavier-uniform linears with zero biases, LayerNorm at identity, embeddings N(0, 1/dim).

    Not BERT's N(0, 0.02) everywhere: at that scale a small model sits for
    hundreds of steps predicting unigram frequencies before its attention starts
    to use the context (planted corpus: the colour→animal rule learned after
    ~400 steps with BERT's init, ~120 with this one). Embeddings of unit-order
    norm also give the tied output layer logits of order 1 from the start.
    """
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=m.embedding_dim ** -0.5)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------------
# Building a model and seeding its steps (engine/tasks/mlm.py trains it in the shared loop)

def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of a run seeded ``seed``: batches and masks of step s
    are the same whether or not the run was interrupted before it."""
    return (seed * 1_000_003 + step * 9_973) % (2**63 - 1)


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with :func:`step_seed`."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step))


def build(cfg: MLMConfig, train_sentences: Sequence[str], seed: int = 0) -> MaskedLanguageModel:
    """Train the tokenizer on ``train_sentences``, build the model, count its tokens."""
    tok = train_tokenizer(train_sentences, cfg.vocab_size, cfg.tokenizer, cfg.lowercase)
    torch.manual_seed(seed)
    model = MaskedLanguageModel(cfg, tok)
    model.count_tokens(train_sentences)
    return model
