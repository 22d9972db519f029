"""What every method shares: its card, its data description, its declared kind and
capabilities, and the interface of each kind.

A method is an ``nn.Module`` holding everything it trains. There are two kinds, each
with its own base class and its own training task (:mod:`engine.tasks`):

* :class:`ImageMethod` (``modality = "images"``, trained by the images task). The loop
  asks it for one thing per step::

      loss, logs = method.training_step(x_uint8, views, generator)

  ``x_uint8`` is a (B, C, H, W) uint8 batch already on the device; ``views`` is
  the run's :class:`~engine.augment.ViewConfig`; every random choice the method
  makes comes from ``generator`` (seeded from the run seed and the step), which
  is what makes a resumed run reach the same weights as an uninterrupted one.
  ``logs`` holds floats for the curves; it may also hold a detached tensor under
  ``"z"`` (the projections of one view) from which the loop computes the
  collapse metrics. ``index`` (optional) holds the dataset indices of the batch's
  items, for methods that need more than pixels (CLIP looks up each item's
  captions, which its ``prepare`` tokenised once before training).
  ``embed`` gives the representation that evaluation, maps and exports use.

* :class:`TextMethod` (``modality = "text"``): built from its config and what it
  learned from the corpus (word2vec: its vocabulary; the masked language model: its
  tokenizer), never from an image shape; rebuilt from a checkpoint by
  :meth:`TextMethod.from_state` alone, since the state carries that vocabulary. One
  step is ``loss, logs, items = method.training_step(batch, seed)``.

What a method can do beyond training is declared on its class, never guessed from
its name or probed with ``hasattr``: :attr:`Method.reconstructs` (with the slider it
takes), :attr:`Method.has_word_vectors`, :attr:`Method.fills_masks`,
:attr:`Method.encodes_text`, :attr:`Method.needs_captions`. ``tests/test_methods.py``
checks every registered method does what it declares.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..augment import ViewConfig, normalize


@dataclass(frozen=True)
class MethodCard:
    """The short text the GUI shows next to the method picker."""
    title: str
    family: str          # "bottleneck", "siamese", "masking", "text", "multimodal"
    learns: str          # what the representation learns, in one or two sentences
    loss: str            # the objective in the course notation
    paper: str           # citation
    url: str = ""
    needs: str = ""      # what it takes to work well (image size, epochs, how to judge it)


@dataclass(frozen=True)
class DataInfo:
    """What an image method needs to know about its data to build its modules."""
    name: str
    channels: int
    height: int
    width: int
    n_train: int


@dataclass(frozen=True)
class Slider:
    """The one setting a trained method can reconstruct at other than as trained: a
    field of its Config (MAE's mask ratio, a denoising autoencoder's noise level)."""
    field: str           #: the Config field it sets
    label: str           #: what the GUI calls it: "Mask ratio"
    low: float           #: its range, both ends included
    high: float
    default: float       #: the Config's default


@dataclass(frozen=True)
class Reconstruction:
    """What a method that reconstructs draws with :meth:`ImageMethod.reconstruct`."""
    input_title: str              #: the title of its "input" row: "masked input"
    redraws: str                  #: what a new seed draws anew: "masks" or "noise"
    slider: Slider | None = None  #: None: the corruption has no live setting


#: Parameter names (any part of the dotted name) that are never weight-decayed whatever their shape:
#: learned position embeddings, cls and mask tokens, learned temperatures / logit scales. A
#: text encoder's learned position table named plain ``pos`` counts too (CLIP's).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "log_scale", "logit_scale", "temperature")


def no_weight_decay(name: str, p: torch.Tensor) -> bool:
    """The one rule for which parameters take no weight decay (as SimCLR, BYOL, MAE and CLIP
    train): every parameter with at most one dimension (biases, BatchNorm and LayerNorm gains
    and shifts, scalar temperatures), and the names in :data:`NO_DECAY_NAMES`. Decay pulls
    weights towards zero, which suits the matrices of convolutions and linear layers but only
    distorts a norm's scale, a shift, or an embedding of position."""
    parts = name.split(".")
    return p.ndim <= 1 or parts[-1] == "pos" or any(k in part for part in parts for k in NO_DECAY_NAMES)


def decay_groups(named_params, weight_decay: float, **settings) -> list[dict]:
    """Parameters split by :func:`no_weight_decay` into at most two optimiser groups,
    ``{"name": "decay", "weight_decay": weight_decay}`` and ``{"name": "no_decay",
    "weight_decay": 0.0, "no_decay": True}`` (LARS does not adapt the latter either), each
    with ``settings`` added; an empty group is left out."""
    decay, keep = [], []
    for name, p in named_params:
        (keep if no_weight_decay(name, p) else decay).append(p)
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay, **settings},
              {"name": "no_decay", "params": keep, "weight_decay": 0.0, "no_decay": True, **settings}]
    return [g for g in groups if g["params"]]


class Method(nn.Module):
    """What both kinds share: the registry's name, the config, the card, the defaults
    and the declared capabilities. Subclass :class:`ImageMethod` or :class:`TextMethod`."""
    name: ClassVar[str]
    Config: ClassVar[type]
    card: ClassVar[MethodCard]
    #: What the method trains on, "images" or "text" (set by :class:`ImageMethod` and
    #: :class:`TextMethod`); a data set holds one or the other.
    modality: ClassVar[str]
    #: The task of :mod:`engine.tasks` that trains it: "images", "word2vec" or "mlm".
    trained_by: ClassVar[str]
    #: False for closed-form methods (PCA): the loop calls ``fit`` once instead of steps.
    iterative: ClassVar[bool] = True
    #: Whether the run's view config is used (shown in the form and preview).
    uses_views: ClassVar[bool] = True
    #: Training settings the method does not read (hidden from its form).
    ignores_settings: ClassVar[tuple[str, ...]] = ()
    #: Settings (of the loop, the method or "views.*") that suit this method on
    #: small data on the CPU better than the loop's defaults.
    train_defaults: ClassVar[dict] = {}
    #: Applied on top when training on a CUDA GPU: CIFAR-size recipes.
    gpu_defaults: ClassVar[dict] = {}
    #: Whether it trains on the CPU only (word2vec's kernel): a GPU device is refused.
    cpu_only: ClassVar[bool] = False

    # Capabilities ------------------------------------------------------------------------
    #: It draws reconstructions (:meth:`ImageMethod.reconstruct`), and how; None: it does not.
    reconstructs: ClassVar[Reconstruction | None] = None
    #: Its checkpoint holds a vector per word (``syn0``, ``vocab_ids``, ``counts``):
    #: neighbours, analogies, the word map and the word2vec export.
    has_word_vectors: ClassVar[bool] = False
    #: It fills in ``[MASK]`` (:meth:`fill_mask`).
    fills_masks: ClassVar[bool] = False
    #: It embeds text in its image space (:meth:`encode_text`): search and zero-shot.
    encodes_text: ClassVar[bool] = False
    #: It learns from captions (CLIP): it needs a captioned dataset.
    needs_captions: ClassVar[bool] = False

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    # Optimisation --------------------------------------------------------------------------
    def param_groups(self, train_config) -> list[dict]:
        """The optimiser's parameter groups (``torch.optim`` dicts) for a run with
        ``train_config``: by default the run's weight decay on weights, none where
        :func:`no_weight_decay` says (norms, biases, position embeddings, tokens, temperatures).
        Every parameter is in exactly one group. A method whose paper treats some part
        differently overrides this; a group marked ``"fixed_lr": True`` keeps the learning
        rate it is built with (the run's peak lr, unless it sets ``"lr"``) instead of
        following the schedule."""
        return decay_groups(self.named_parameters(), train_config.weight_decay)

    def optimizer_options(self, train_config) -> dict:
        """Keyword arguments for the run's optimiser beyond lr and weight decay (MAE: AdamW's betas)."""
        return {}

    @classmethod
    def default_views(cls, views: ViewConfig) -> ViewConfig:
        """A new run's views, given those that suit its data set
        (:func:`engine.augment.default_views`); the user's settings come after. The data
        set's by default; a method whose paper sets a view differently (BYOL's blur) says so here."""
        return views

    @classmethod
    def capabilities(cls) -> list[str]:
        """What it can do beyond training, in words (the CLI's ``methods -v``)."""
        out = []
        if cls.reconstructs is not None:
            slider = cls.reconstructs.slider
            out.append("reconstructs" + (f" (live {slider.label.lower()} {slider.low:g}–{slider.high:g}, "
                                         f"default {slider.default:g})" if slider is not None else ""))
        out += [words for has, words in ((cls.has_word_vectors, "word vectors"), (cls.fills_masks, "fills [MASK]"),
                                         (cls.encodes_text, "encodes text"), (cls.needs_captions, "needs captions"))
                if has]
        return out

    @classmethod
    def data_warning(cls, height: int, width: int) -> str | None:
        """A sentence for the user when this method is unlikely to learn much from
        images of this size (shown before a run starts, never an error)."""
        return None

    @classmethod
    def reconstruction_slider(cls, method_config: dict) -> Slider | None:
        """The slider of a run trained with ``method_config`` (its stored dict): the
        declared one, which a method may relabel by its config."""
        return cls.reconstructs.slider if cls.reconstructs is not None else None

    # The capabilities' operations; only a method that declares one implements it.
    def reconstruct(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """(``reconstructs``) {"original", "input", "reconstruction", ...}, every value a
        uint8 (B, H, W, C) image batch (each key becomes one row of the stored picture),
        at the Config's slider setting."""
        raise NotImplementedError(f"{self.name} does not reconstruct")

    def fill_mask(self, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
        """(``fills_masks``) For each [MASK] in ``text``, the ``k`` likeliest tokens and their probabilities."""
        raise NotImplementedError(f"{self.name} does not fill masks")

    def encode_text(self, texts) -> np.ndarray:
        """(``encodes_text``) Embeddings of ``texts`` in the space of :meth:`embed`'s image features."""
        raise NotImplementedError(f"{self.name} does not encode text")


class ImageMethod(Method):
    """A method that learns from images (the images task of :mod:`engine.tasks` trains it)."""
    modality = "images"
    trained_by = "images"

    def __init__(self, cfg, info: DataInfo):
        super().__init__(cfg)
        self.info = info

    def training_step(self, x: torch.Tensor, views: ViewConfig, generator: torch.Generator,
                      index: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    @classmethod
    def views_for(cls, views: ViewConfig) -> tuple[ViewConfig, ViewConfig]:
        """The settings of a pair's first and second view, given the run's ``views``: the
        same for both by default. A method whose paper makes the views differ (BYOL) says
        how here; only probabilities (the ``*_p`` fields) may differ, so
        :func:`~engine.augment.make_view_pair` still makes the pair as one batch."""
        return views, views

    def forward(self, x: torch.Tensor, views: ViewConfig, generator: torch.Generator,
                index: torch.Tensor | None = None):
        # The loop calls the module (not training_step) so DistributedDataParallel,
        # which hooks forward(), synchronises gradients across processes.
        return self.training_step(x, views, generator, index=index)

    def prepare(self, data) -> None:
        """Called once by the loop after building the method, before any step or
        checkpoint restore, with the whole :class:`~engine.data.ImageData`
        (CLIP builds its vocabulary and tokenises the captions here)."""

    def evaluate_extra(self, data, feats: np.ndarray, final: bool = False) -> dict[str, float]:
        """Method-specific metrics at each evaluation, beside kNN and the probe
        (CLIP: zero-shot accuracy and retrieval recall); ``feats`` are the
        :meth:`embed` features of every item of ``data``."""
        return {}

    def extra_embeddings(self, data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Embedding sets stored beside the images' at the end: {split: (item ids, vectors)}
        (CLIP: its caption embeddings as split "text", in the images' space)."""
        return {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a normalised float batch (B, C, H, W) → (B, D)."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum encoders update here)."""

    def fit(self, x: torch.Tensor) -> dict:
        """Closed-form training on all normalised train images (non-iterative methods)."""
        raise NotImplementedError

    def with_setting(self, value: float | None):
        """The method configured to reconstruct at slider ``value`` (None: as trained), as a
        context: ``with method.with_setting(0.5): method.reconstruct(x, g)``."""
        return _Setting(self, value)

    # Helpers shared by the image methods -------------------------------------------------
    @staticmethod
    def to_uint8_images(x: torch.Tensor) -> np.ndarray:
        """Normalised float (B, C, H, W) → uint8 (B, H, W, C) for drawing."""
        from ..augment import denormalize
        img = denormalize(x.detach().float()).clamp(0, 1).mul(255).round().byte()
        return img.permute(0, 2, 3, 1).cpu().numpy()

    @staticmethod
    def normalized(x: torch.Tensor) -> torch.Tensor:
        return normalize(x)


class _Setting:
    """Sets the slider's Config field for the duration of a ``with`` block, clipped to its range."""

    def __init__(self, method: ImageMethod, value: float | None):
        self.method, self.value, self.saved = method, value, method.cfg

    def __enter__(self):
        slider = self.method.reconstruction_slider({})
        if self.value is not None and slider is not None:
            value = min(max(float(self.value), slider.low), slider.high)
            self.method.cfg = replace(self.saved, **{slider.field: value})
        return self.method

    def __exit__(self, *exc):
        self.method.cfg = self.saved
        return False


class TextMethod(Method):
    """A method that learns from a text corpus (the word2vec or mlm task trains it).

    Its constructor takes its config and what it learned from the corpus before the
    first step (subclasses name it: a vocabulary, a tokenizer), never an image shape;
    :meth:`from_state` rebuilds a trained one from a checkpoint's state dict alone."""
    modality = "text"
    uses_views = False
    #: The image evaluations a text run never makes.
    ignores_settings = ("linear_probe_every_eval", "knn_k", "timeline_items")

    @classmethod
    def from_state(cls, cfg, state: dict[str, torch.Tensor]) -> "TextMethod":
        """The model whose ``state_dict()`` was ``state`` (its vocabulary included)."""
        raise NotImplementedError

    def training_step(self, batch, seed: int) -> tuple[torch.Tensor | float, dict[str, float], int]:
        """One step on the task's ``batch``, every random draw from ``seed`` (a function of the
        run seed and the step): (loss, logs, items trained on). The loss is a tensor for the
        task's optimiser, or a float when the method updated its weights itself (word2vec)."""
        raise NotImplementedError
