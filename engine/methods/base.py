"""What every method shares: its card, its data description and its interface.

A method is an ``nn.Module`` holding everything it trains (backbone, heads,
decoders). The training loop asks it for one thing per step::

    loss, logs = method.training_step(x_uint8, views, generator)

``x_uint8`` is a (B, C, H, W) uint8 batch already on the device; ``views`` is
the run's :class:`~engine.augment.ViewConfig`; every random choice the method
makes comes from ``generator`` (seeded from the run seed and the step), which
is what makes a resumed run reach the same weights as an uninterrupted one.
``logs`` holds floats for the curves; it may also hold a detached tensor under
``"z"`` (the projections of one view) from which the loop computes the
collapse metrics.

``index`` (optional) holds the dataset indices of the batch's items, for
methods that need more than pixels (CLIP looks up each item's captions, which
its ``prepare`` tokenised once before training).

``embed`` gives the representation that evaluation, maps and exports use.
"""
from __future__ import annotations

from dataclasses import dataclass
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
    """What a method needs to know about its data to build its modules."""
    name: str
    channels: int
    height: int
    width: int
    n_train: int


class Method(nn.Module):
    name: ClassVar[str]
    Config: ClassVar[type]
    card: ClassVar[MethodCard]
    #: False for closed-form methods (PCA): the loop calls ``fit`` once instead of steps.
    iterative: ClassVar[bool] = True
    #: What the method trains on: "images" (engine.train) or "text" (engine.train_text).
    modality: ClassVar[str] = "images"
    #: Whether the run's view config is used (shown in the form and preview).
    uses_views: ClassVar[bool] = True
    #: Whether the method learns from captions (CLIP): it needs a captioned dataset.
    needs_captions: ClassVar[bool] = False
    #: Settings (of the loop, the method or "views.*") that suit this method on
    #: small data on the CPU better than the loop's defaults.
    train_defaults: ClassVar[dict] = {}
    #: Applied on top when training on a CUDA GPU: CIFAR-size recipes.
    gpu_defaults: ClassVar[dict] = {}

    def __init__(self, cfg, info: DataInfo):
        super().__init__()
        self.cfg = cfg
        self.info = info

    @classmethod
    def data_warning(cls, height: int, width: int) -> str | None:
        """A sentence for the user when this method is unlikely to learn much from
        images of this size (shown before a run starts, never an error)."""
        return None

    def training_step(self, x: torch.Tensor, views: ViewConfig, generator: torch.Generator,
                      index: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

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

    def reconstruct(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray] | None:
        """For methods that reconstruct: {"original", "input", "reconstruction", ...},
        every value a uint8 (B, H, W, C) image batch (each key becomes one row of the
        stored picture), or None for methods that don't."""
        return None

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
