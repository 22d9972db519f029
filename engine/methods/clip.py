"""CLIP: pull an image and its caption together in one space, apart from the
other pairs of the batch (Radford et al. 2021).

An image tower f (a backbone from ``engine.nets``) and a text tower g (a bag of
words — the mean of the caption's word vectors, CBOW-style — or a small
Transformer) feed linear projections W_i and W_t into a joint space; both sides
are l2-normalised and every image is scored against every caption of the batch
with logits I_e·T_eᵀ·exp(t), t a learned temperature (log 1/0.07 at the start,
exp(t) clamped at 100). The loss is the symmetric cross-entropy over both axes
(:func:`engine.losses.clip_loss`), the seed's pseudocode line for line.

The words: ``prepare(data)`` builds the vocabulary from the training captions
(most frequent first) and tokenises every caption once. The vocabulary is a
uint8 buffer of UTF-8 text in the state dict, so a checkpoint (safetensors,
never a pickle) is enough to encode new queries later; the caption tokens are
plain tensors rebuilt by ``prepare`` (they would only bloat checkpoints, and
DDP would broadcast buffers at every step). An item may hold several captions,
one per line; each step draws one of them per image.

Compositional hold-out (``held_out="red circle,blue square"`` on shapes): the
images of those (colour, shape) combinations, and so their captions, never
enter training; evaluation reports zero-shot accuracy on exactly them beside
the seen combinations.

Under torchrun every rank gathers the others' embeddings with gradient, so the
negatives are the global batch and the gradients equal one process's on the
whole batch (tests/test_clip.py checks it with two CPU processes).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from ..collective import gather_with_grad
from ..losses import clip_loss
from ..nets import BACKBONES, build_backbone
from ..retrieval import clip_metrics, item_captions
from .base import DataInfo, ImageMethod, MethodCard

PAD, UNK = 0, 1                       # token ids; words start at 2
INIT_LOG_SCALE = math.log(1 / 0.07)   # the paper's initial temperature
MAX_SCALE = 100.0
_WORD = re.compile(r"[^\W_]+")        # runs of letters and digits, any script


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def parse_held_out(text: str) -> list[tuple[str, str]]:
    """``"red circle, blue square"`` → [("red", "circle"), ("blue", "square")]."""
    pairs = []
    for part in text.split(","):
        w = part.split()
        if not w:
            continue
        if len(w) < 2:
            raise ValueError(f"held_out: {part.strip()!r} is not a 'colour shape' pair (e.g. 'red circle')")
        pairs.append((" ".join(w[:-1]).lower(), w[-1].lower()))
    return pairs


@dataclass
class CLIPConfig:
    backbone: str = param("small-cnn", "Image encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    text_encoder: str = param("bow", "Text encoder: bow averages the word vectors (CBOW, order-free); "
                                     "transformer reads the words in order", choices=("bow", "transformer"))
    word_dim: int = param(128, "Size of the word vectors (and the text Transformer's width)", min=8, max=1024)
    text_layers: int = param(2, "Layers of the text Transformer", min=1, max=12, advanced=True)
    embed_dim: int = param(64, "Size of the joint image–text space W_i and W_t project into",
                           min=2, max=2048)
    vocab_size: int = param(2000, "Most frequent training-caption words kept (others are unknown)",
                            min=10, max=500_000, advanced=True)
    max_tokens: int = param(32, "Words read per caption", min=2, max=512, advanced=True)
    learn_temperature: bool = param(True, "Learn t (logit scale exp(t), from 1/0.07, clamped at 100); "
                                          "off keeps 1/0.07")
    held_out: str = param("", "(colour, shape) combinations kept out of training, e.g. 'red circle,blue "
                              "square' (shapes); their zero-shot accuracy is reported apart")
    templates: str = param("a {}|a picture of a {}|there is a {}",
                           "Zero-shot prompts, separated by |; {} takes the class name; "
                           "the prompts' text embeddings are averaged")


class BagOfWords(nn.Module):
    """The mean of the caption's word vectors (unknown words and padding left out)."""

    def __init__(self, n_tokens: int, dim: int, max_tokens: int):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, dim, padding_idx=PAD)
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = (tokens > UNK).unsqueeze(-1).to(self.embed.weight.dtype)
        return (self.embed(tokens) * keep).sum(1) / keep.sum(1).clamp(min=1)


class TextTransformer(nn.Module):
    """A small pre-norm Transformer over the words, mean-pooled over the real tokens."""

    def __init__(self, n_tokens: int, dim: int, max_tokens: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads if dim % heads == 0 else 1, 2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD                       # every row has a token first (UNK at worst)
        h = self.blocks(self.embed(tokens) + self.pos[:tokens.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return (self.norm(h) * keep).sum(1) / keep.sum(1).clamp(min=1)


class CLIP(ImageMethod):
    name = "clip"
    Config = CLIPConfig
    uses_views = False          # flips and colour jitter would contradict "on the left", "red"
    needs_captions = True
    encodes_text = True
    # Batch 128 and weight decay 0.1: on shapes, at equal images seen, both learn the slow
    # attribute (shape) faster than 256 and 1e-4, and a 128 step costs under half a 256
    # one on the CPU (bench/clip_shapes.py's docstring has the measurements).
    train_defaults = {"batch_size": 128, "epochs": 30, "lr": 2e-3, "weight_decay": 0.1, "eval_every": 5}
    gpu_defaults = {"batch_size": 1024, "epochs": 100}
    card = MethodCard(
        title="CLIP", family="multimodal",
        learns="A joint space for images and their captions: an image lands next to text that "
               "describes it, so a class can be recognised from its name alone (zero-shot) and "
               "images found by a sentence.",
        loss="logits = I_e·T_eᵀ·exp(t),  L = ½ [CE(logits, arange(n), axis=0) + "
             "CE(logits, arange(n), axis=1)],  I_e = ‖I_f·W_i‖, T_e = ‖T_f·W_t‖",
        paper="Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger & "
              "Sutskever, Learning transferable visual models from natural language supervision, ICML 2021",
        url="https://arxiv.org/abs/2103.00020")

    def __init__(self, cfg: CLIPConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        tower = TextTransformer if cfg.text_encoder == "transformer" else BagOfWords
        extra = {"layers": cfg.text_layers} if cfg.text_encoder == "transformer" else {}
        self.text = tower(cfg.vocab_size + 2, cfg.word_dim, cfg.max_tokens, **extra)
        self.W_i = nn.Linear(self.backbone.dim, cfg.embed_dim, bias=False)
        self.W_t = nn.Linear(cfg.word_dim, cfg.embed_dim, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(INIT_LOG_SCALE), requires_grad=cfg.learn_temperature)
        # The vocabulary, one word per line as UTF-8 bytes: in the state dict, so a
        # checkpoint alone can encode new text. Its length varies (see _load_from_state_dict).
        self.register_buffer("vocab_bytes", torch.zeros(0, dtype=torch.uint8))
        self._vocab: dict[str, int] | None = None
        # Filled by prepare(): tokens of every caption, where each item's captions
        # start and how many it has, and which items may be trained on.
        self._tokens = torch.zeros(0, cfg.max_tokens, dtype=torch.int64)
        self._start = self._count = torch.zeros(0, dtype=torch.int64)
        self._trainable = torch.zeros(0, dtype=torch.bool)
        self.held_out = parse_held_out(cfg.held_out)

    # --- words -------------------------------------------------------------------------
    @property
    def vocab(self) -> dict[str, int]:
        if self._vocab is None:
            text = bytes(self.vocab_bytes.cpu().numpy()).decode("utf-8")
            self._vocab = {w: i + 2 for i, w in enumerate(text.split("\n") if text else [])}
        return self._vocab

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored vocabulary may be longer or shorter than this instance's: take its size.
        key = prefix + "vocab_bytes"
        if key in state_dict:
            self.vocab_bytes = torch.empty_like(state_dict[key], device=self.vocab_bytes.device)
            self._vocab = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), max_tokens) int64: word ids, UNK for unknown words, PAD after the end."""
        vocab, L = self.vocab, self.cfg.max_tokens
        out = torch.full((len(texts), L), PAD, dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = [vocab.get(w, UNK) for w in words(text)[:L]] or [UNK]
            out[row, :len(ids)] = torch.tensor(ids)
        return out

    def prepare(self, data) -> None:
        caps = item_captions(data)
        if not any(caps):
            raise ValueError(f"CLIP learns from image–caption pairs, and dataset {data.name!r} has no "
                             "captions: use the built-in shapes, or an image folder imported with "
                             "captions=captions.csv (or .jsonl, or COCO-style .json)")
        has_caption = np.array([len(c) > 0 for c in caps])
        trainable = (np.asarray(data.split) == 0) & has_caption & ~self.held_out_mask(data)
        if trainable.sum() < 2:
            raise ValueError(f"dataset {data.name!r} has {int(trainable.sum())} captioned training images "
                             "outside the held-out combinations; CLIP needs at least 2")
        counts = Counter(w for i in np.flatnonzero(trainable) for c in caps[i] for w in words(c))
        kept = sorted(counts, key=lambda w: (-counts[w], w))[:self.cfg.vocab_size]
        self.vocab_bytes = torch.tensor(list("\n".join(kept).encode("utf-8")), dtype=torch.uint8,
                                        device=self.vocab_bytes.device)
        self._vocab = None
        flat = [c for item in caps for c in item]
        self._tokens = self.tokenize(flat)
        self._count = torch.tensor([len(c) for c in caps], dtype=torch.int64)
        self._start = torch.cumsum(self._count, 0) - self._count
        self._trainable = torch.from_numpy(trainable)

    def held_out_mask(self, data) -> np.ndarray:
        """True for the items whose (colour, shape) is held out of training."""
        mask = np.zeros(data.n, dtype=bool)
        if not self.held_out:
            return mask
        if "colour" not in data.attributes or "shape" not in data.attributes:
            raise ValueError(f"held_out needs colour and shape attributes (the built-in shapes); "
                             f"dataset {data.name!r} has {', '.join(data.attributes) or 'none'}")
        (c_ids, c_names), (s_ids, s_names) = data.attributes["colour"], data.attributes["shape"]
        for colour, shape in self.held_out:
            if colour not in c_names or shape not in s_names:
                raise ValueError(f"held_out: {colour} {shape} is not a combination of this dataset "
                                 f"(colours: {', '.join(c_names)}; shapes: {', '.join(s_names)})")
            mask |= (c_ids == c_names.index(colour)) & (s_ids == s_names.index(shape))
        return mask

    # --- the two towers ----------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """I_e: the l2-normalised image embedding in the joint space."""
        return F.normalize(self.W_i(self.backbone(x)).float(), dim=1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """T_e: the l2-normalised text embedding in the joint space."""
        return F.normalize(self.W_t(self.text(tokens)).float(), dim=1)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch: int = 2048) -> np.ndarray:
        """T_e of free text, (len(texts), embed_dim) float32 numpy, in eval mode."""
        was_training = self.training
        self.eval()
        device = self.W_t.weight.device
        out = [self.embed_tokens(self.tokenize(texts[i:i + batch]).to(device)).cpu()
               for i in range(0, len(texts), batch)]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.embed_dim), np.float32)

    @property
    def templates(self) -> list[str]:
        return [t.strip() for t in self.cfg.templates.split("|") if t.strip()] or ["{}"]

    # --- training -----------------------------------------------------------------------
    def training_step(self, x, views, generator, index=None):
        if index is None:
            raise ValueError("CLIP needs the dataset index of each batch item to find its captions "
                             "(training_step(..., index=...)) and prepare(data) first")
        if len(self._trainable) == 0:
            raise ValueError("CLIP: call prepare(data) before training (it tokenises the captions)")
        device = x.device
        if self._tokens.device != device:
            self._tokens, self._start, self._count, self._trainable = (
                t.to(device) for t in (self._tokens, self._start, self._count, self._trainable))
        keep = self._trainable[index]          # held-out combinations and uncaptioned items drop out
        x, index = x[keep], index[keep]
        # One of each item's captions, drawn from the step's generator.
        u = torch.rand(len(index), generator=generator, device=generator.device).to(device)
        count = self._count[index]
        pick = self._start[index] + (u * count).long().clamp(max=count - 1)
        i_e = self.embed(self.normalized(x))
        t_e = self.embed_tokens(self._tokens[pick])
        loss = clip_loss(gather_with_grad(i_e), gather_with_grad(t_e), self.log_scale, MAX_SCALE)
        scale = float(self.log_scale.detach().exp().clamp(max=MAX_SCALE))
        return loss, {"logit_scale": scale, "z": i_e.detach()}

    def after_step(self, step: int, total_steps: int) -> None:
        # As open_clip does: keep t itself within [0, log 100], so it can come back
        # down after the scale hit the clamp (where the gradient through exp(t) is zero).
        with torch.no_grad():
            self.log_scale.clamp_(0, math.log(MAX_SCALE))

    # --- evaluation ---------------------------------------------------------------------
    def evaluate_extra(self, data, feats: np.ndarray, final: bool = False) -> dict[str, float]:
        return clip_metrics(self, data, feats)

    def extra_embeddings(self, data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        caps = item_captions(data)
        owner = np.array([i for i, item in enumerate(caps) for _ in item], dtype=np.int64)
        if len(owner) == 0:
            return {}
        return {"text": (owner, self.encode_text([c for item in caps for c in item]))}
