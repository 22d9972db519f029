"""The Reconstructions view's work (Qt-free): which methods draw reconstructions and with
which live setting, the pictures of one checkpoint at any setting, and the rows of a
picture grid the training loop stored.

The pictures come from the method's own ``reconstruct``, at any setting of the slider its
class declares (``Method.reconstructs``), on a method rebuilt by
:func:`engine.workbench.load_trained_method`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..workbench import load_dataset, load_trained_method

N_IMAGES = 16


def reconstruction_of(method_name: str):
    """What a method declares it draws (a :class:`~engine.methods.Reconstruction`), or None
    for a method that does not reconstruct or is unknown."""
    from ..methods import METHODS
    cls = METHODS.get(method_name)
    return cls.reconstructs if cls is not None else None


def reconstructs(method_name: str) -> bool:
    """Whether a method draws reconstructions."""
    return reconstruction_of(method_name) is not None


def setting_of(method_name: str, config: dict) -> tuple[str, float] | None:
    """The live slider of a method and its trained value: ("Mask ratio", 0.75), ("Noise level", 0.5);
    None for a method without one."""
    from ..methods import METHODS
    cls = METHODS.get(method_name)
    mc = config.get("method_config") or {}
    slider = cls.reconstruction_slider(mc) if cls is not None else None
    if slider is None:
        return None
    return slider.label, float(mc.get(slider.field, slider.default))


def slider_of(method_name: str):
    """The :class:`~engine.methods.Slider` a method declares (its range and default), or None."""
    rec = reconstruction_of(method_name)
    return rec.slider if rec is not None else None


def input_title(method_name: str) -> str:
    """What the method's "input" row shows: "masked input", "corrupted input", "input"."""
    rec = reconstruction_of(method_name)
    return rec.input_title if rec is not None else "input"


def redraws(method_name: str) -> str:
    """What a new seed draws anew in its pictures: "masks" or "noise"."""
    rec = reconstruction_of(method_name)
    return rec.redraws if rec is not None else "noise"


@dataclass(frozen=True)
class Reconstructions:
    """The pictures of one request."""
    key: tuple                         #: (run id, checkpoint id, setting or None, seed)
    rows: list[tuple[str, np.ndarray]]  #: (row key: "original", "input", ..., uint8 (n, H, W, C))
    items: np.ndarray                  #: the item index of each column in the data set


class ModelCache:
    """The method rebuilt from one checkpoint, reused while that checkpoint is shown.

    Only ever touched by one worker at a time."""

    def __init__(self):
        self.key = None            # (run id, checkpoint id)
        self.method = None
        self.device = None
        self.data = None


def compute_reconstructions(project, cache: ModelCache, run_id: int, checkpoint_id: int,
                            setting: float | None, seed: int, n: int = N_IMAGES) -> Reconstructions:
    """Reconstruct ``n`` test images with run ``run_id`` at ``checkpoint_id`` (on a worker thread).

    ``setting`` is the value of the method's slider, MAE's mask ratio or the denoising
    autoencoder's noise level (None: as trained), clipped to the slider's range."""
    import torch
    run = project.run(run_id)
    if cache.key != (run_id, checkpoint_id):
        method, device = load_trained_method(project, run_id, checkpoint_id=checkpoint_id)
        cache.key, cache.method, cache.device = (run_id, checkpoint_id), method, device
        cache.data = load_dataset(project, run.dataset_id)
    method, data, device = cache.method, cache.data, cache.device
    # The same test images for every setting and seed, so a slider move changes only the corruption.
    pool = np.flatnonzero(data.split == 1)
    if len(pool) < n:
        pool = np.arange(data.n)
    pick = np.sort(np.random.default_rng(0).choice(pool, size=min(n, len(pool)), replace=False))
    images = np.ascontiguousarray(data.images[pick])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad(), method.with_setting(setting):
        out = method.reconstruct(x, g)
    return Reconstructions(key=(run_id, checkpoint_id, setting, seed),
                           rows=[(k, np.asarray(v)) for k, v in out.items()], items=pick)


def split_grid(picture: np.ndarray, n_rows: int, n_items: int) -> list[np.ndarray] | None:
    """The rows of images in a picture made by ``engine.images.grid_png`` (``n_rows`` rows of
    ``n_items`` images, 1-pixel gaps, enlarged by a whole factor): uint8 (n_items, h, w, 3)
    per row, or None when the picture is not such a grid."""
    H, W = picture.shape[:2]
    if n_rows < 1 or n_items < 1:
        return None
    for scale in range(1, 65):
        if H % scale or W % scale:
            continue
        rows_px, cols_px = H // scale - 1, W // scale - 1
        if rows_px % n_rows or cols_px % n_items:
            continue
        h, w = rows_px // n_rows - 1, cols_px // n_items - 1
        if h < 1 or w < 1 or scale != max(1, 64 // h):      # grid_png's enlargement for that size
            continue
        small = picture[::scale, ::scale]
        return [np.stack([small[1 + i * (h + 1):1 + i * (h + 1) + h, 1 + j * (w + 1):1 + j * (w + 1) + w]
                          for j in range(n_items)]) for i in range(n_rows)]
    return None


@dataclass(frozen=True)
class SavedPictures:
    """One picture grid the training loop stored with a checkpoint."""
    step: int
    keys: list[str]                    #: the row keys ("original", "input", ...), top to bottom
    picture: np.ndarray                #: the whole picture, uint8 (H, W, 3)
    rows: list[np.ndarray] | None      #: its rows of images (:func:`split_grid`), None when not such a grid


def load_saved_pictures(project, artifact) -> SavedPictures:
    """Decode a stored "reconstructions" artifact and split it into its rows."""
    from PIL import Image
    meta = artifact.meta if isinstance(artifact.meta, dict) else {}
    keys = list(meta.get("rows", []))
    with Image.open(io.BytesIO(project.load_artifact(artifact.id))) as im:
        picture = np.asarray(im.convert("RGB"))
    return SavedPictures(step=artifact.step, keys=keys, picture=picture,
                         rows=split_grid(picture, len(keys), int(meta.get("n", 0))))
