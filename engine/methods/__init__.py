"""The method registry: every trainable method, by name.

Tests are parametrised over ``METHODS``, so a method added here is tested
automatically.
"""
from __future__ import annotations

from .autoencoder import Autoencoder
from .base import DataInfo, ImageMethod, Method, MethodCard, Reconstruction, Slider, TextMethod
from .byol import BYOL
from .channel_prediction import ChannelPrediction
from .clip import CLIP
from .denoising_autoencoder import DenoisingAutoencoder
from .mae import MaskedAutoencoder
from .mlm import MaskedLanguageModel
from .moco import MoCo
from .pca import PCA
from .simclr import SimCLR
from .simsiam import SimSiam
from .swav import SwAV
from .word2vec import Word2Vec

METHODS: dict[str, type[Method]] = {m.name: m for m in (PCA, Autoencoder, DenoisingAutoencoder, SimCLR,
                                                      MoCo, BYOL, SimSiam, SwAV,
                                                      MaskedAutoencoder, ChannelPrediction, CLIP, Word2Vec,
                                                      MaskedLanguageModel)}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)})") from None


__all__ = ["METHODS", "get_method", "Method", "ImageMethod", "TextMethod", "MethodCard", "DataInfo",
           "Reconstruction", "Slider"]
