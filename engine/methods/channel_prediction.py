"""Channel prediction: hide one colour channel and predict it from the other two.

The split-brain / colorization idea (Zhang, Isola & Efros 2016, 2017): a
network that must guess the red channel of a picture from its green and blue
channels has to recognise what it is looking at (sky, skin, grass…). Per image
one channel is held out — a fixed one ("r", "g", "b") or one drawn at random —
and replaced by zeros (the mean grey in normalised units). The encoder (any
backbone of ``engine.nets``) sees the image with the channel removed plus a
0/1 mask plane per channel that says what was removed (2C input channels, so
``in_channels`` stays fixed whichever channel is missing); a small decoder
(the autoencoder's) redraws the missing values from the encoder's features.

Loss: cross-entropy over ``bins`` quantised intensities by default (16 levels,
as Zhang et al. classify colours): a channel is often ambiguous given the other
two (a grey-green pixel may be yellow or cyan), and MSE then learns the
washed-out average, while the classifier keeps every mode and learns better
features (split-brain autoencoders, Table 2: classification beats regression).
``loss="mse"`` regresses the values instead. Pictures use the expected value
of the predicted distribution.

Grayscale images have no colour to predict. Rather than refuse the built-in
8×8 digits (what a user tries first), the method then does the closest thing:
it hides a random half of the image (top, bottom, left or right, per image)
and predicts it from the other half — a context-encoder-style completion
(Pathak et al. 2016) with the same networks, loss and pictures.

The representation (``embed``) is the encoder's feature of what it was trained
on: for colour, the mean over the held-out channels (each removed in turn);
for grayscale, the complete image (see :meth:`ChannelPrediction.embed`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import MEAN, STD
from ..config import param
from ..nets import BACKBONES, build_backbone
from .autoencoder import Decoder
from .base import DataInfo, ImageMethod, MethodCard, Reconstruction

CHANNELS = "rgb"


@dataclass
class ChannelPredictionConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    target: str = param("random", "Colour channel held out and predicted: a fixed one, or one drawn "
                                  "per image (grayscale images: a random half of the image instead)",
                        choices=("random", "r", "g", "b"))
    loss: str = param("cross-entropy", "Classify quantised values (keeps ambiguous colours sharp) or "
                                       "regress them (MSE)", choices=("cross-entropy", "mse"))
    bins: int = param(16, "Intensity levels the cross-entropy loss classifies into", min=2, max=256,
                      advanced=True)


class ChannelPrediction(ImageMethod):
    name = "channel-prediction"
    Config = ChannelPredictionConfig
    uses_views = False
    reconstructs = Reconstruction(input_title="channel removed", redraws="masks")
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 50}
    card = MethodCard(
        title="Channel prediction", family="masking",
        learns="What objects and materials look like: predicting a missing colour channel from "
               "the others needs to know what is where (grayscale images: a missing half).",
        loss="L = Σ_pixels CE(q(x_c), g(f(x_{¬c}))) over the held-out channel c, "
             "q = quantised intensity (or ||x_c − g(f(x_{¬c}))||²)",
        paper="Zhang, Isola & Efros, Split-brain autoencoders: unsupervised learning by "
              "cross-channel prediction, CVPR 2017 (colorization: ECCV 2016)",
        url="https://arxiv.org/abs/1611.09842",
        needs="Judge it by the linear probe or fine-tuning, not by kNN: its features describe "
              "colour and texture layer by layer, spread over many dimensions, so raw cosine "
              "neighbours mix classes that a linear read-out separates (the paper measures it "
              "with linear classifiers on each layer).")

    def __init__(self, cfg: ChannelPredictionConfig, info: DataInfo):
        super().__init__(cfg, info)
        C = info.channels
        self.colour = C == 3
        self.out_per_channel = cfg.bins if cfg.loss == "cross-entropy" else 1
        # Input: the image with the held-out values zeroed, and one 0/1 "removed" plane per channel.
        self.backbone = build_backbone(cfg.backbone, 2 * C, info.height, cfg.width)
        self.decoder = Decoder(self.backbone.dim, C * self.out_per_channel, info.height, info.width)
        centres = (torch.arange(cfg.bins, dtype=torch.float32) + 0.5) / cfg.bins
        self.register_buffer("bin_values", (centres - MEAN) / STD, persistent=False)

    # --- what is held out -----------------------------------------------------------------------
    def holdout_mask(self, batch: int, device, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) float, 1 where a value is held out: one whole colour channel per image,
        or for grayscale images one half (top, bottom, left, right) drawn per image."""
        C, H, W = self.info.channels, self.info.height, self.info.width
        u = torch.rand(batch, generator=generator, device=generator.device).to(device)
        if self.colour:
            if self.cfg.target == "random":
                which = (u * 3).long().clamp_(max=2)
            else:
                which = torch.full((batch,), CHANNELS.index(self.cfg.target), device=device)
            return F.one_hot(which, 3).float().reshape(batch, 3, 1, 1).expand(batch, 3, H, W).contiguous()
        rows = torch.arange(H, device=device).reshape(H, 1).expand(H, W)
        cols = torch.arange(W, device=device).reshape(1, W).expand(H, W)
        halves = torch.stack([rows < H // 2, rows >= H - H // 2, cols < W // 2, cols >= W - W // 2])
        side = (u * 4).long().clamp_(max=3)
        return halves[side].unsqueeze(1).expand(batch, C, H, W).float()

    @staticmethod
    def encoder_input(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Normalised image with the held-out values zeroed, and the mask planes: (B, 2C, H, W)."""
        return torch.cat([x * (1.0 - m), m], dim=1)

    # --- prediction and loss ---------------------------------------------------------------------
    def predict(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Decoder output: (B, C, H, W) values for MSE, (B, bins, C, H, W) logits for cross-entropy."""
        out = self.decoder(self.backbone(self.encoder_input(x, m)))
        if self.out_per_channel == 1:
            return out
        B, _, H, W = out.shape
        return out.reshape(B, self.info.channels, self.out_per_channel, H, W).transpose(1, 2)

    def predicted_values(self, out: torch.Tensor) -> torch.Tensor:
        """Normalised values to draw: the regression itself, or the expected bin value."""
        if self.out_per_channel == 1:
            return out
        p = out.float().softmax(dim=1)
        return torch.einsum("bkchw,k->bchw", p, self.bin_values)

    def target_bins(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """The class of every value: ``bins`` equal intervals of 0..255."""
        return (x_uint8.long() * self.cfg.bins) // 256

    def loss_of(self, out: torch.Tensor, x_uint8: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The loss over the held-out values only."""
        if self.out_per_channel == 1:
            per = (out.float() - x).pow(2)
        else:
            per = F.cross_entropy(out.float(), self.target_bins(x_uint8), reduction="none")
        return (per * m).sum() / m.sum()

    # --- the Method interface --------------------------------------------------------------------
    def training_step(self, x, views, generator, index=None):
        clean = self.normalized(x)
        m = self.holdout_mask(x.shape[0], x.device, generator)
        code = self.backbone(self.encoder_input(clean, m))
        out = self.decoder(code)
        if self.out_per_channel > 1:
            B, _, H, W = out.shape
            out = out.reshape(B, self.info.channels, self.out_per_channel, H, W).transpose(1, 2)
        return self.loss_of(out, x, clean, m), {"z": code.detach()}

    def embed(self, x):
        """Features of the inputs the encoder was trained on. Colour: the mean of its features
        with each channel that training holds out removed in turn (one pass for a fixed target,
        three for "random"); a complete colour image is never seen in training and gave worse
        neighbours (CIFAR-10, 5 epochs: kNN 0.28 complete vs 0.34 mean of the three). Grayscale:
        the complete image (digits: kNN 0.905 complete vs 0.889 mean of the four halves)."""
        if not self.colour:
            return self.backbone(self.encoder_input(x, torch.zeros_like(x)))
        which = range(3) if self.cfg.target == "random" else (CHANNELS.index(self.cfg.target),)
        feats = 0
        for c in which:
            m = torch.zeros_like(x)
            m[:, c] = 1.0
            feats = feats + self.backbone(self.encoder_input(x, m))
        return feats / len(which)

    def reconstruct(self, x, generator):
        clean = self.normalized(x)
        m = self.holdout_mask(x.shape[0], x.device, generator)
        seen = clean * (1.0 - m)                                            # removed = mid grey
        filled = seen + self.predicted_values(self.predict(clean, m)) * m
        return {"original": self.to_uint8_images(clean), "input": self.to_uint8_images(seen),
                "reconstruction": self.to_uint8_images(filled)}
