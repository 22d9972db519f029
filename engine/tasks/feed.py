"""Batches of uint8 images ``(B, C, H, W)`` for training and evaluation, at any collection size.

Two ways, chosen by size (issue 13):

* **In memory.** A decoded array (built-in data, CIFAR-size collections) is one
  uint8 tensor, on the GPU when training there: a batch is an index into it.
* **Streamed.** Encoded images (:class:`~engine.data.encoded.EncodedImages`)
  are decoded in DataLoader worker processes, a batch at a time and a few
  batches ahead. When the decoded set fits the cache budget (``cache_mb``),
  the batches fill a decoded cache as they pass, so the first epoch streams
  (the first step comes at once) and later ones read memory, as fast as the
  in-memory way; on CUDA the full cache then moves to the GPU if it fits.
  Memory is O(batch × prefetch + cache budget) at any collection size.

Views are made from these uint8 batches on the device (engine/augment.py), as before.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

__all__ = ["ImageFeed", "EpochBatches"]

PREFETCH = 4          # batches each worker decodes ahead


class _DecodeBatches(torch.utils.data.Dataset):
    """Item ``b`` is batch ``b`` decoded: a worker process reads and decodes it whole."""

    def __init__(self, images, batches: Sequence[np.ndarray]):
        self.images = images
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> torch.Tensor:
        x = np.asarray(self.images[self.batches[b]])              # (B, H, W, C)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


class ImageFeed:
    """The images of a dataset as uint8 ``(B, C, H, W)`` batches (see the module docstring)."""

    def __init__(self, images, device: torch.device, cache_mb: int = 2048, workers: int = 2):
        self.device = device
        self.workers = int(workers)
        self.n = len(images)
        n, h, w, c = images.shape
        self.shape = (n, c, h, w)
        if isinstance(images, np.ndarray):
            self.images = None
            self.cache = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
            self.cached = np.ones(n, dtype=bool)
            self.streamed = False
        else:
            # One decode thread per worker process: the processes use the cores. (at_size(h)
            # is a new view of the same items, so the caller's threads setting stays as it was.)
            self.images = images.at_size(h) if hasattr(images, "at_size") else images
            if hasattr(self.images, "threads"):
                self.images.threads = 1
            fits = n * c * h * w <= cache_mb * 2**20
            # torch.empty only reserves: pages are committed as the cache fills.
            self.cache = torch.empty(self.shape, dtype=torch.uint8) if fits else None
            self.cached = np.zeros(n, dtype=bool)
            self.streamed = True
        self._complete = bool(self.cached.all())
        self._maybe_to_device()

    @property
    def complete(self) -> bool:
        """Every item is decoded in memory (no more streaming)."""
        return self._complete

    def _maybe_to_device(self) -> None:
        """The whole decoded set on the GPU when it fits in a third of its free memory."""
        if self.cache is None or not self._complete or self.device.type != "cuda" or \
                self.cache.device.type == "cuda":
            return
        free, _ = torch.cuda.mem_get_info(self.device)
        if self.cache.numel() < free // 3:
            self.cache = self.cache.to(self.device)

    def _remember(self, index: np.ndarray, x: torch.Tensor) -> None:
        if self.cache is None:
            return
        self.cache[torch.from_numpy(index)] = x.to(self.cache.device)
        self.cached[index] = True
        if not self._complete and self.cached.all():
            self._complete = True
            self._maybe_to_device()

    def take(self, index) -> torch.Tensor:
        """The items at ``index`` (dataset positions), decoded here if need be."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if self.cached[index].all():
            return self.cache[torch.from_numpy(index).to(self.cache.device)]
        x = torch.from_numpy(np.asarray(self.images[index])).permute(0, 3, 1, 2).contiguous()
        self._remember(index, x)
        return x

    def stream(self, batches: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """The batches (dataset positions), in order: from the cache when every item
        is there, else decoded by ``workers`` processes a few batches ahead."""
        if self._complete or all(self.cached[b].all() for b in batches):
            for b in batches:
                yield self.take(b)
            return
        if self.workers <= 0:
            for b in batches:
                yield self.take(b)
            return
        loader = torch.utils.data.DataLoader(
            _DecodeBatches(self.images, list(batches)), batch_size=None, shuffle=False,
            num_workers=min(self.workers, len(batches)), prefetch_factor=PREFETCH,
            persistent_workers=False, pin_memory=self.device.type == "cuda")
        for b, x in zip(batches, loader):
            self._remember(np.asarray(b, dtype=np.int64), x)
            yield x

    def chunks(self, batch: int = 512) -> Iterator[torch.Tensor]:
        """Every item in order, ``batch`` at a time (embedding the whole set)."""
        yield from self.stream([np.arange(s, min(self.n, s + batch)) for s in range(0, self.n, batch)])


class EpochBatches(Sequence):
    """An epoch's batches as the loop takes them: ``batches[b]`` is ``(positions, x)``.

    ``positions`` index the training items, ``x`` is the uint8 batch on the feed's side.
    The loop asks for b = first, first + 1, … in order (a resumed run starts in
    the middle); one stream over the remaining batches serves them, decoding
    ahead. Asking out of order restarts the stream there.
    """

    def __init__(self, feed: ImageFeed, positions: list[torch.Tensor], train_index: torch.Tensor):
        self.feed = feed
        self.positions = positions
        self.train_index = train_index
        self._next = None
        self._stream = None

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return f"EpochBatches({self.positions!r})"

    def __getitem__(self, b: int):
        if self._stream is None or b != self._next:
            rest = [self.train_index[p].numpy() for p in self.positions[b:]]
            self._stream = self.feed.stream(rest)
        x = next(self._stream)
        self._next = b + 1
        return self.positions[b], x
