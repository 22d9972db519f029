"""Batched, on-device view generation and patch masking.

Views are made from a whole uint8 batch ``(B, C, H, W)`` (C = 1 or 3) where it
already lives (CPU or GPU); there is no Python loop over images. Every random
choice for the batch comes from ONE draw of a ``(B, 33)`` uniform block from the
caller's ``torch.Generator`` (plus one normal draw when pixel noise is on), so
the same seed gives bit-identical views on the CPU, and a config that switches
one operation off does not change the random parameters of the others.

The pipeline, in this fixed order (SimCLR's, Chen et al. 2020, appendix A):

1. random resized crop + horizontal flip: one sampling grid + one ``grid_sample``
   (bilinear, border padding) for the whole batch, the flip folded into the
   affine matrix as a negated x scale. The matrices are axis-aligned, so the
   grid is the identity grid of a single ``affine_grid`` call scaled and shifted
   per image (the same values as ``affine_grid`` on the batch, without its
   batched matmul, which on the CPU costs more than the sampling). Crop boxes
   follow torchvision's ``RandomResizedCrop`` sampling (area fraction in
   ``scale``, log-uniform aspect ratio, ten tries, then the central fallback),
   vectorised over the tries, but boxes are not rounded to whole pixels.
   Downscaling (a crop larger than the output) is not anti-aliased.
2. colour jitter with probability ``jitter_p`` per image: brightness, contrast,
   saturation, hue in this FIXED order (torchvision's ``ColorJitter`` permutes
   them per call; a fixed order keeps the step vectorised). Factors as in
   torchvision: uniform in ``[max(0, 1-s), 1+s]``, hue shift uniform in
   ``[-hue, hue]`` of a turn, applied in HSV exactly as torchvision's
   ``adjust_hue``. Saturation and hue are skipped for 1-channel images.
3. random grayscale (3 channels kept), 4. Gaussian blur (per-image sigma,
   separable, kernel ±3 sigma_max, reflect padding), 5. solarize, 6. additive
   Gaussian noise (clamped to [0, 1]),
7. normalisation ``(x - MEAN) / STD`` with fixed ``MEAN = 0.5, STD = 0.25``,
   the same for every data set, so :func:`normalize` (evaluation, no
   augmentation) gives exactly what training sees for an un-augmented image.

The per-operation functions (:func:`adjust_brightness`, ...) take float
images in ``[0, 1]`` and one factor per image; they match
``torchvision.transforms.v2.functional`` on single images and are what the
pipeline uses.

Random parameters are drawn on the generator's device and moved to the data's
device when the two differ, so a CPU generator also works for CUDA data (a CUDA
generator avoids the copy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from .config import param

__all__ = [
    "ViewConfig", "NO_VIEWS", "identity", "default_views", "normalize", "denormalize",
    "make_views", "make_view_pair", "preview", "random_patch_mask", "mask_image_patches",
    "sample_crop_boxes", "resized_crop_flip", "adjust_brightness", "adjust_contrast",
    "adjust_saturation", "adjust_hue", "rgb_to_gray", "gaussian_blur", "solarize", "MEAN", "STD",
]

#: Normalisation shared by training views and evaluation inputs: x ∈ [0, 1] → (x - MEAN) / STD ∈ [-2, 2].
MEAN = 0.5
STD = 0.25

# Luma weights torchvision (and PIL) use for rgb_to_grayscale.
_GRAY = (0.2989, 0.587, 0.114)


@dataclass
class ViewConfig:
    """How one augmented view of an image is made (SimCLR-like defaults for 32×32 colour images)."""
    crop_scale_min: float = param(0.2, "Smallest crop, as a fraction of the image area (1 with max 1 = no crop)",
                                  min=0.01, max=1.0)
    crop_scale_max: float = param(1.0, "Largest crop, as a fraction of the image area", min=0.01, max=1.0)
    crop_ratio_min: float = param(3 / 4, "Smallest width/height ratio of a crop", min=0.1, max=10.0,
                                  advanced=True)
    crop_ratio_max: float = param(4 / 3, "Largest width/height ratio of a crop", min=0.1, max=10.0,
                                  advanced=True)
    flip_p: float = param(0.5, "Probability of a horizontal (mirror) flip", min=0.0, max=1.0)
    jitter_p: float = param(0.8, "Probability that an image gets colour jitter", min=0.0, max=1.0)
    brightness: float = param(0.4, "Brightness jitter: factor drawn from [1-b, 1+b]", min=0.0, max=2.0)
    contrast: float = param(0.4, "Contrast jitter: factor drawn from [1-c, 1+c]", min=0.0, max=2.0)
    saturation: float = param(0.4, "Saturation jitter: factor drawn from [1-s, 1+s] (colour images only)",
                              min=0.0, max=2.0)
    hue: float = param(0.1, "Hue jitter: shift drawn from [-h, h] of a full turn (colour images only)",
                       min=0.0, max=0.5)
    grayscale_p: float = param(0.2, "Probability of turning a colour image gray", min=0.0, max=1.0)
    blur_p: float = param(0.0, "Probability of a Gaussian blur", min=0.0, max=1.0)
    blur_sigma_min: float = param(0.1, "Smallest blur sigma, in output pixels", min=0.01, max=20.0,
                                  advanced=True)
    blur_sigma_max: float = param(2.0, "Largest blur sigma, in output pixels", min=0.01, max=20.0,
                                  advanced=True)
    solarize_p: float = param(0.0, "Probability of solarizing (inverting values above the threshold)",
                              min=0.0, max=1.0)
    solarize_threshold: float = param(0.5, "Solarize threshold, in [0, 1] intensity", min=0.0, max=1.0,
                                      advanced=True)
    noise_p: float = param(0.0, "Probability of adding Gaussian pixel noise", min=0.0, max=1.0)
    noise_std: float = param(0.05, "Std of the pixel noise, in [0, 1] intensity", min=0.0, max=1.0)
    out_size: int = param(0, "Side of the output views in pixels (0 = same size as the input)",
                          min=0, max=1024, advanced=True)


def identity() -> ViewConfig:
    """A config that changes nothing: make_views(x) == normalize(x) exactly."""
    return ViewConfig(crop_scale_min=1.0, crop_scale_max=1.0, crop_ratio_min=3 / 4, crop_ratio_max=4 / 3,
                      flip_p=0.0, jitter_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                      grayscale_p=0.0, blur_p=0.0, solarize_p=0.0, noise_p=0.0, out_size=0)


#: For methods that don't augment. Shared: treat as read-only, call :func:`identity` for a copy to edit.
NO_VIEWS = identity()


def default_views(dataset_name: str, height: int, channels: int) -> ViewConfig:
    """Views that suit a data set, picked by name, image size and channel count."""
    name = dataset_name.lower()
    colour = channels >= 3
    if "fashion" in name:
        # Clothes are (nearly) mirror-symmetric and a mirrored shoe is still a shoe.
        cfg = ViewConfig(crop_scale_min=0.3, flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                         saturation=0.0, hue=0.0, grayscale_p=0.0)
    elif any(k in name for k in ("mnist", "digit", "usps", "svhn")):
        # Digits: no flip (a mirrored 2 or 7 is not a digit), milder crops (a small crop of a
        # digit can look like another digit), brightness/contrast only; colour jitter only for
        # colour digits (SVHN: the colour of a house number says nothing about the number).
        cfg = ViewConfig(crop_scale_min=0.4, flip_p=0.0, jitter_p=0.5, brightness=0.3, contrast=0.3,
                         saturation=0.0, hue=0.0, grayscale_p=0.0)
        if colour:
            cfg.jitter_p, cfg.saturation, cfg.hue, cfg.grayscale_p = 0.8, 0.4, 0.1, 0.2
    elif "shape" in name:
        # The built-in shapes: one shape per image, with shape, colour, size and position as
        # attributes. Shape is the class and flips don't change it, so flips are on (at the price
        # of left/right position, which the views then teach the network to ignore). Crops stay
        # above half the image: a shape fills one cell of a 3×3 grid, and a smaller crop often
        # cuts it out altogether. Colour is a label-worthy attribute itself ("a red square" vs
        # "a blue square"): views must not teach invariance to it, or the representation throws
        # colour away. So hue moves only a little (±0.02 of a turn, ±7°, keeps red apart from
        # orange), saturation mildly, and never grayscale; brightness and contrast (lighting,
        # not colour identity) keep their usual strength.
        cfg = ViewConfig(crop_scale_min=0.5, flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                         saturation=0.2, hue=0.02, grayscale_p=0.0)
    else:
        # Natural images (CIFAR, STL, folders): SimCLR's recipe; scale (0.2, 1) as in the
        # CIFAR variants of SimCLR/MoCo/BYOL. Blur only from 64 px: at 32 px it destroys
        # too much (SimCLR drops it for CIFAR).
        cfg = ViewConfig()
        if height >= 64:
            cfg.blur_p = 0.5
    if not colour:
        cfg.saturation = 0.0
        cfg.hue = 0.0
        cfg.grayscale_p = 0.0
    if height < 16:
        # Tiny images (8×8 digits): a 40 % crop leaves a handful of pixels.
        cfg.crop_scale_min = max(cfg.crop_scale_min, 0.6)
    return cfg


# ---------------------------------------------------------------------------------------------
# Normalisation


def _check_uint8(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
        what = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"expected a uint8 (B, C, H, W) tensor, got a {what}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 → float32 in [0, 1]; 0 and 255 map to exactly 0 and 1."""
    return x.to(torch.float32).div_(255.0)


def _standardise_(x: torch.Tensor) -> torch.Tensor:
    """In place: [0, 1] → normalised."""
    return x.sub_(MEAN).div_(STD)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 normalised, exactly as training views are (without augmentation)."""
    _check_uint8(x)
    return _standardise_(_to_unit(x))


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Normalised float → float in [0, 1] (clamped), e.g. for drawing reconstructions."""
    return (x.float() * STD + MEAN).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Per-operation functions: float images in [0, 1], one parameter per image (a (B,) tensor or a
# scalar). The public ones return a new tensor; the ``_name_`` twins work in place on a tensor
# the pipeline owns. On the CPU every fresh full-size tensor costs page faults, which cost more
# than the arithmetic, so the pipeline allocates as little as it can. Per-image selections are
# applied with exact 0/1 arithmetic (y·1 + 0 = y, y·0 + z = z) rather than torch.where, which is
# several times slower on the CPU.


def _per_image(v, x: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) factor as a (B, 1, 1, 1) tensor on x's device."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.dim() == 0:
        v = v.expand(x.shape[0])
    return v.reshape(-1, 1, 1, 1)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 1, H, W) luma with torchvision's weights; 1 channel comes back as a copy."""
    if x.shape[1] == 1:
        return x.clone()
    r, g, b = x.unbind(1)
    return r.mul(_GRAY[0]).add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(1)


def _brightness_(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return y.mul_(f).clamp_(0.0, 1.0)


def _contrast_(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if y.shape[1] == 3:
        m = y.mean(dim=(2, 3))                                   # (B, 3) channel means
        mean = (m[:, 0] * _GRAY[0] + m[:, 1] * _GRAY[1] + m[:, 2] * _GRAY[2]).reshape(-1, 1, 1, 1)
    else:
        mean = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)
    return y.mul_(f).add_(mean * (1.0 - f)).clamp_(0.0, 1.0)


def _saturation_(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if y.shape[1] == 1:
        return y
    gray = rgb_to_gray(y).mul_(1.0 - f)
    return y.mul_(f).add_(gray).clamp_(0.0, 1.0)


def _hue_(y: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    if y.shape[1] == 1:
        return y
    r, g, b = y.unbind(1)
    # Six (B, H, W) buffers, reused: fresh memory is what costs on the CPU.
    c = torch.maximum(r, g)
    torch.maximum(c, b, out=c)                                 # max
    lo = torch.minimum(r, g)
    torch.minimum(lo, b, out=lo)                               # min
    # Which channel holds the max (R before G before B, as torchvision), as exact 0/1 floats.
    fr = torch.eq(c, r, out=torch.empty_like(lo))
    fg = torch.eq(c, g, out=torch.empty_like(lo))
    fg.addcmul_(fg, fr, value=-1.0)
    c.sub_(lo)                                                 # chroma
    # Hue sextant h ∈ [-1, 5): (g-b)/c if R is max, (b-r)/c + 2 if G, (r-g)/c + 4 if B,
    # written as hB + fr·(hR - hB) + fg·(hG - hB) on the numerators.
    h = torch.sub(r, g).add_(c, alpha=4.0)                     # numerator if B is max
    t = torch.sub(g, b).sub_(h).mul_(fr)
    h.add_(t)
    torch.sub(b, r, out=t).add_(c, alpha=2.0).sub_(torch.sub(r, g, out=fr).add_(c, alpha=4.0)).mul_(fg)
    h.add_(t).mul_(torch.clamp(c, min=1e-12, out=fr).reciprocal_())   # c = 0 ⇒ numerator 0 too
    h.add_(shift.reshape(-1, 1, 1) * 6.0)
    torch.mul(h, 1.0 / 6.0, out=t).floor_().mul_(6.0)
    h.sub_(t)                                                  # wrapped into [0, 6)
    # Back to RGB: channel = min + chroma · w(h), triangle waves
    # w_R = clamp(|h-3| - 1), w_G = clamp(2 - |h-2|), w_B = clamp(2 - |h-4|).
    torch.sub(h, 3.0, out=r).abs_().sub_(1.0)
    torch.sub(h, 2.0, out=g).abs_().neg_().add_(2.0)
    torch.sub(h, 4.0, out=b).abs_().neg_().add_(2.0)
    return y.clamp_(0.0, 1.0).mul_(c.unsqueeze(1)).add_(lo.unsqueeze(1))


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """x · f, clamped to [0, 1] (torchvision adjust_brightness)."""
    return _brightness_(x.clone(), _per_image(factor, x))


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the image's mean gray level: f·x + (1-f)·mean, clamped (torchvision adjust_contrast)."""
    return _contrast_(x.clone(), _per_image(factor, x))


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the per-pixel gray image: f·x + (1-f)·gray, clamped (torchvision adjust_saturation).
    1-channel images come back unchanged."""
    return _saturation_(x.clone(), _per_image(factor, x))


def adjust_hue(x: torch.Tensor, shift) -> torch.Tensor:
    """Rotate hue by ``shift`` (a fraction of a turn, in [-0.5, 0.5]) per image in HSV
    (torchvision adjust_hue). 1-channel images come back unchanged.

    A hue rotation keeps each pixel's max (V) and min (V·(1-S)) and only moves the
    pixel around the colour hexagon, so we compute the hue sextant h ∈ [0, 6),
    shift it, and rebuild RGB as min + chroma · w(h) with triangle waves — no
    gather and no branches, a handful of passes over the batch.
    """
    return _hue_(x.clone(), _per_image(shift, x))


def _gauss_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B,) sigmas → (B, 2r+1) normalised 1-D Gaussian kernels (torchvision's formula)."""
    d = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    return torch.softmax(-(d / sigma.reshape(-1, 1)).pow(2) * 0.5, dim=1)


def gaussian_blur(x: torch.Tensor, sigma, kernel_size: int, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma and reflect padding (torchvision gaussian_blur).

    ``apply`` (B,) bool: images where it is False come back unchanged (delta kernel).
    Each direction is a sum over the kernel taps of shifted slices weighted per
    image — vectorised over the batch, a loop only over the 2r+1 taps (on the CPU
    several times faster than a grouped convolution with groups = B·C).
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    B, C, H, W = x.shape
    radius = kernel_size // 2
    if radius == 0 or B == 0:
        return x.clone()
    if radius >= min(H, W):
        raise ValueError(f"kernel_size {kernel_size} too large for {H}×{W} images (reflect padding)")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(B)
    k = _gauss_kernels(sigma, radius)                                   # (B, K)
    if apply is not None:
        delta = torch.zeros_like(k)
        delta[:, radius] = 1.0
        k = torch.where(apply.reshape(-1, 1), k, delta)
    k = k.t().reshape(kernel_size, B, 1, 1, 1)                          # per tap: (B, 1, 1, 1)
    p = F.pad(x, (radius, radius, 0, 0), mode="reflect")                # along x
    h = F.pad(p[..., 0:W] * k[0], (0, 0, radius, radius))               # room for the y padding
    hv = h[:, :, radius:radius + H]
    for i in range(1, kernel_size):
        hv.addcmul_(p[..., i:i + W], k[i])
    # reflect padding along y, written into the rows left free
    h[:, :, :radius] = hv[:, :, 1:radius + 1].flip(2)
    h[:, :, radius + H:] = hv[:, :, H - radius - 1:H - 1].flip(2)
    out = h[:, :, 0:H] * k[0]
    for i in range(1, kernel_size):
        out.addcmul_(h[:, :, i:i + H], k[i])
    return out


def _solarize_(y: torch.Tensor, threshold: float, apply: torch.Tensor | None) -> torch.Tensor:
    hit = y >= threshold
    if apply is not None:
        hit &= apply.reshape(-1, 1, 1, 1)
    hit = hit.to(y.dtype)
    return y.mul_(1.0 - 2.0 * hit).add_(hit)                            # exact: y or 1 - y


def solarize(x: torch.Tensor, threshold: float, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Values ≥ threshold become 1 - value (torchvision solarize); only where ``apply`` (B,) is True."""
    return _solarize_(x.clone(), threshold, apply)


def _select_(y: torch.Tensor, other: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """In place y ← other where m (B,) is True, else y; exact, broadcasting ``other``
    (which is overwritten: pass a temporary)."""
    mf = m.to(y.dtype).reshape(-1, 1, 1, 1)
    return y.mul_(1.0 - mf).add_(other.mul_(mf))


def sample_crop_boxes(u_scale: torch.Tensor, u_ratio: torch.Tensor, u_pos: torch.Tensor, height: int,
                      width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> torch.Tensor:
    """RandomResizedCrop boxes from uniforms: (B, T) tries for scale and ratio, (B, 2) for the position.

    Returns (B, 4) float boxes (top, left, h, w) in pixels; the first try that fits
    is taken, else torchvision's central fallback. Boxes are not rounded.
    """
    area = float(height * width)
    s_lo, s_hi = sorted(scale)
    r_lo, r_hi = sorted(ratio)
    lr_lo, lr_hi = math.log(r_lo), math.log(r_hi)
    target = (s_lo + (s_hi - s_lo) * u_scale) * area
    aspect = torch.exp(lr_lo + (lr_hi - lr_lo) * u_ratio)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    ok = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)           # first fitting try (0 if none)
    any_ok = ok.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < r_lo:
        fw, fh = float(width), width / r_lo
    elif in_ratio > r_hi:
        fw, fh = height * r_hi, float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_ok, w, fw)
    h = torch.where(any_ok, h, fh)
    top = u_pos[:, 0] * (height - h)
    left = u_pos[:, 1] * (width - w)
    return torch.stack((top, left, h, w), dim=1)


def crop_theta(boxes: torch.Tensor, flip: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """(B, 4) boxes (top, left, h, w) in pixels → (B, 2, 3) affine matrices for ``affine_grid``
    (align_corners=False) that sample the box, mirrored where ``flip`` is True."""
    top, left, h, w = boxes.unbind(1)
    sx = w / width
    if flip is not None:
        sx = torch.where(flip.to(boxes.device), -sx, sx)
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=boxes.dtype, device=boxes.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    return theta


def axis_aligned_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.affine_grid(theta, (B, ·, *size), align_corners=False)`` for axis-aligned ``theta``
    (zero off-diagonal), as the identity grid of ONE affine_grid call scaled and shifted per image.
    Same values; avoids affine_grid's batched (H·W × 3) @ (3 × 2) matmul, which on the CPU costs
    more than grid_sample itself."""
    B = theta.shape[0]
    H, W = size
    eye = torch.eye(2, 3, dtype=theta.dtype, device=theta.device).unsqueeze(0)
    base = F.affine_grid(eye, [1, 1, H, W], align_corners=False).reshape(1, H, W * 2)
    # (x, y) pairs interleave in the last dim: broadcast over rows of 2W contiguous values
    scale = torch.stack((theta[:, 0, 0], theta[:, 1, 1]), dim=1).repeat(1, W).reshape(B, 1, W * 2)
    shift = torch.stack((theta[:, 0, 2], theta[:, 1, 2]), dim=1).repeat(1, W).reshape(B, 1, W * 2)
    return torch.addcmul(shift, base, scale).reshape(B, H, W, 2)


def resized_crop_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None,
                      size: tuple[int, int]) -> torch.Tensor:
    """Crop (B, 4) boxes (top, left, h, w in pixels) and resize to ``size`` with bilinear sampling,
    mirrored where ``flip`` (B,) is True: one grid + one grid_sample for the whole batch.

    ``x``: uint8 (then the result is in [0, 1]) or float. Matches crop-then-resize
    (torchvision resized_crop, bilinear) when upscaling, except in the outermost
    output pixels, which here may interpolate towards pixels just outside the box.
    """
    B, C, H, W = x.shape
    xf = x.to(torch.float32) if x.dtype == torch.uint8 else x
    theta = crop_theta(boxes.to(device=x.device, dtype=xf.dtype), flip, H, W)
    grid = axis_aligned_grid(theta, size)
    y = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if x.dtype == torch.uint8:
        y.div_(255.0)
    return y


# ---------------------------------------------------------------------------------------------
# The pipeline

_TRIES = 10
# Columns of the per-image uniform block.
_C_SCALE = slice(0, _TRIES)
_C_RATIO = slice(_TRIES, 2 * _TRIES)
_C_POS = slice(2 * _TRIES, 2 * _TRIES + 2)
(_C_FLIP, _C_JIT, _C_B, _C_C, _C_S, _C_H, _C_GRAY, _C_BLUR, _C_SIGMA, _C_SOL, _C_NOISE) = \
    range(2 * _TRIES + 2, 2 * _TRIES + 13)
_NCOLS = 2 * _TRIES + 13


def _rand(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=generator.device)
    return u if u.device == device else u.to(device)


def _randn(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    z = torch.randn(shape, generator=generator, device=generator.device)
    return z if z.device == device else z.to(device)


def _factor(u: torch.Tensor, strength: float, sel: torch.Tensor) -> torch.Tensor:
    """Per-image jitter factor in [max(0, 1-s), 1+s] where selected, exactly 1 elsewhere, as (B, 1, 1, 1)."""
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    return torch.where(sel, lo + (hi - lo) * u, 1.0).reshape(-1, 1, 1, 1)


def blur_kernel_size(cfg: ViewConfig, size: int) -> int:
    """Kernel side for the blur: ±3 sigma_max, limited by reflect padding to the image size."""
    radius = min(math.ceil(3.0 * max(cfg.blur_sigma_min, cfg.blur_sigma_max)), size - 1)
    return 2 * max(radius, 0) + 1


def make_views(x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) → one augmented, normalised float32 view per image (B, C, out, out)."""
    return _make_views(x, cfg, generator, {})


def _make_views(x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator,
                probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """:func:`make_views`, with ``probs`` giving some ``*_p`` fields one value per image
    ((B,) tensors on x's device) in place of the config's: how a pair whose second view
    differs (:func:`make_view_pair`) stays one batch."""
    _check_uint8(x)
    B, C, H, W = x.shape
    dev = x.device
    oh, ow = (cfg.out_size, cfg.out_size) if cfg.out_size > 0 else (H, W)
    if B == 0:
        return torch.empty(0, C, oh, ow, dtype=torch.float32, device=dev)
    u = _rand((B, _NCOLS), generator, dev)

    def p(name):            # the probability: the config's number, or per image
        return probs.get(name, getattr(cfg, name))

    def on(name):           # whether any image may get the operation
        v = probs.get(name)
        return getattr(cfg, name) > 0 if v is None else bool((v > 0).any())

    # 1. geometry: crop + flip
    flip = u[:, _C_FLIP] < p("flip_p")
    r_lo, r_hi = sorted((cfg.crop_ratio_min, cfg.crop_ratio_max))
    no_crop = (min(cfg.crop_scale_min, cfg.crop_scale_max) >= 1.0 and (oh, ow) == (H, W)
               and r_lo <= W / H <= r_hi)
    if no_crop:   # scale 1 ⇒ the whole image: no resampling, so the result is exact
        y = _to_unit(x)
        if on("flip_p"):
            y = _select_(y, y.flip(-1), flip)
    else:
        boxes = sample_crop_boxes(u[:, _C_SCALE], u[:, _C_RATIO], u[:, _C_POS], H, W,
                                  (cfg.crop_scale_min, cfg.crop_scale_max), (r_lo, r_hi))
        y = resized_crop_flip(x, boxes, flip if on("flip_p") else None, (oh, ow))
    # From here on y is a tensor of our own: every step works in place.

    # 2. colour jitter, fixed order
    colour = C == 3
    if on("jitter_p"):
        sel = u[:, _C_JIT] < p("jitter_p")
        if cfg.brightness > 0:
            _brightness_(y, _factor(u[:, _C_B], cfg.brightness, sel))
        if cfg.contrast > 0:
            _contrast_(y, _factor(u[:, _C_C], cfg.contrast, sel))
        if colour and cfg.saturation > 0:
            _saturation_(y, _factor(u[:, _C_S], cfg.saturation, sel))
        if colour and cfg.hue > 0:
            _hue_(y, torch.where(sel, (2.0 * u[:, _C_H] - 1.0) * cfg.hue, 0.0))

    # 3. grayscale (keeps 3 channels)
    if colour and on("grayscale_p"):
        _select_(y, rgb_to_gray(y), u[:, _C_GRAY] < p("grayscale_p"))

    # 4. blur
    if on("blur_p"):
        ks = blur_kernel_size(cfg, min(oh, ow))
        if ks > 1:
            s_lo, s_hi = sorted((cfg.blur_sigma_min, cfg.blur_sigma_max))
            sigma = s_lo + (s_hi - s_lo) * u[:, _C_SIGMA]
            y = gaussian_blur(y, sigma, ks, apply=u[:, _C_BLUR] < p("blur_p"))

    # 5. solarize
    if on("solarize_p"):
        _solarize_(y, cfg.solarize_threshold, u[:, _C_SOL] < p("solarize_p"))

    # 6. pixel noise
    if on("noise_p") and cfg.noise_std > 0:
        std = torch.where(u[:, _C_NOISE] < p("noise_p"), cfg.noise_std, 0.0).reshape(B, 1, 1, 1)
        y.add_(_randn(y.shape, generator, dev).mul_(std)).clamp_(0.0, 1.0)

    # 7. normalise
    return _standardise_(y)


def make_view_pair(x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator,
                   second: ViewConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent views of every image (made as one batch of 2B).

    ``second``: the second view's settings where they differ from ``cfg`` (BYOL's
    asymmetric blur and solarize; a method's :meth:`~engine.methods.base.ImageMethod.views_for`).
    Only the probabilities (the ``*_p`` fields) may differ: they become per-image
    thresholds, so the pair is still one batch with one random draw, and the first view is
    exactly what it would be with ``second`` left out."""
    _check_uint8(x)
    B = x.shape[0]
    probs = {}
    if second is not None and second != cfg:
        differ = [f.name for f in fields(ViewConfig) if getattr(cfg, f.name) != getattr(second, f.name)]
        other = [name for name in differ if not name.endswith("_p")]
        if other:
            raise ValueError(f"the two views of a pair may differ only in probabilities; "
                             f"they differ in {', '.join(other)}")
        for name in differ:
            probs[name] = torch.tensor([getattr(cfg, name), getattr(second, name)], dtype=torch.float32,
                                       device=x.device).repeat_interleave(B)
    v = _make_views(torch.cat((x, x), dim=0), cfg, generator, probs)
    return v[:B], v[B:]


def preview(images: np.ndarray, cfg: ViewConfig, n: int = 8, seed: int = 0, second: ViewConfig | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views to draw: ``images`` (N, H, W, C) or (N, H, W) uint8 → (originals, view1, view2),
    each (n, H', W', C) uint8. The n images are a seeded random sample (in data order).
    ``second``: the second view's settings when a method's differ (:func:`make_view_pair`)."""
    total = len(images)
    n = min(n, total)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=n, replace=False)) if n < total else np.arange(n)
    # Index first: stored images (engine.data.encoded) decode only the n shown.
    arr = np.asarray(images[idx])
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 images of shape (N, H, W, C), got {arr.dtype} {arr.shape}")
    originals = np.ascontiguousarray(arr)
    x = torch.from_numpy(originals).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(int(seed))
    v1, v2 = make_view_pair(x, cfg, g, second=second)

    def to_img(v):
        return denormalize(v).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return originals, to_img(v1), to_img(v2)


# ---------------------------------------------------------------------------------------------
# Masking


def random_patch_mask(batch: int, n_patches: int, ratio: float, generator: torch.Generator,
                      device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's random masking (He et al. 2022): shuffle patches by argsort of uniform noise.

    Keeps exactly ``round(n_patches * (1 - ratio))`` patches per image (Python
    ``round``). Returns ``ids_keep`` (B, n_keep) long — the kept patch indices,
    in shuffled order; ``mask`` (B, L) float, 1 = removed, 0 = kept, in the
    original patch order; ``ids_restore`` (B, L) long, the inverse permutation:
    ``torch.gather(shuffled, 1, ids_restore)`` puts shuffled tokens back in place.
    """
    device = torch.device(device) if device is not None else generator.device
    n_keep = int(round(n_patches * (1.0 - ratio)))
    n_keep = max(0, min(n_patches, n_keep))
    noise = _rand((batch, n_patches), generator, device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = torch.ones(batch, n_patches, device=device)
    mask[:, :n_keep] = 0.0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


def mask_image_patches(x: torch.Tensor, patch: int, ratio: float, generator: torch.Generator,
                       fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masking noise: set a random ``ratio`` of the ``patch``×``patch`` squares of each image to ``fill``.

    ``x``: float (B, C, H, W) (for normalised images 0 is the mean gray). Edge
    patches are partial when H or W is not a multiple of ``patch``. Returns
    ``(masked, mask)`` with ``mask`` (B, 1, H, W) float, 1 where a pixel was masked.
    """
    B, C, H, W = x.shape
    gh, gw = -(-H // patch), -(-W // patch)
    _, m, _ = random_patch_mask(B, gh * gw, ratio, generator, x.device)
    m = m.to(x.dtype).view(B, 1, gh, 1, gw, 1).expand(B, 1, gh, patch, gw, patch)
    m = m.reshape(B, 1, gh * patch, gw * patch)[:, :, :H, :W]
    m = m.contiguous()
    masked = x * (1.0 - m)                       # exact: x·1 or 0 (cheaper than torch.where on the CPU)
    if fill != 0:
        masked.add_(m, alpha=fill)
    return masked, m
