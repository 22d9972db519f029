"""Nested training state <-> safetensors bytes, without pickle.

A checkpoint is a nested structure such as
``{"model": model.state_dict(), "optim": opt.state_dict(), "rng": ..., "step": 5}``.
``torch.save`` would pickle it, and unpickling a file from a stranger can run
code, so instead:

* every tensor and numpy array goes into one safetensors file under a
  generated key ("t0", "t1", ...), and
* the skeleton (dicts, lists, tuples, scalars, None, and a placeholder naming
  each tensor's key) goes into the safetensors ``__metadata__`` as JSON.

JSON alone would lose what optimizers rely on (integer dict keys, tuples vs
lists, NaN), so every container or special value is a one-key object with a
``$`` tag, and plain JSON objects never appear untagged::

    {"$dict": [[0, {...}], ["lr", 0.001]]}   dict; keys keep their int/str type
    {"$tuple": [...]}                        tuple (a JSON list is a list)
    {"$tensor": "t3"}                        torch tensor, restored on the CPU
    {"$ndarray": "t4"}                       numpy array
    {"$npscalar": "t5"}                      numpy scalar (np.float32(1.5))
    {"$float": "nan"}                        non-finite float

Unpacking reads JSON and raw tensor bytes only; nothing in the file can name
a Python object to construct.
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch (and safetensors.torch, which imports it) load inside the two functions:
# the store is imported by commands that never touch a checkpoint (listing
# runs), and importing torch takes seconds. safetensors parses a header and
# raw bytes: no code can run, unlike a pickle.

# The skeleton's key in the safetensors metadata, and a version for the format
# of the skeleton itself, so a later Pretext can read older checkpoints.
_SKELETON_KEY = "pretext.skeleton"
_FORMAT_KEY = "pretext.format"
_FORMAT = "1"

# numpy dtypes with a torch twin, so the array can ride in the same file.
_NUMPY_KINDS = "biufc"


def pack_state(state: Any) -> bytes:
    """Serialise a nested dict/list/tuple of tensors, arrays and scalars."""
    import torch
    from safetensors.torch import save as safetensors_save
    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()

    def add_tensor(t: torch.Tensor) -> str:
        t = t.detach().to("cpu")
        if t.is_sparse or t.layout != torch.strided:
            raise TypeError(f"cannot store a {t.layout} tensor; convert it to dense first")
        # safetensors stores each tensor's own bytes: copy views, non-contiguous
        # tensors and tensors sharing storage (tied weights) into fresh memory.
        ptr = t.untyped_storage().data_ptr()
        owns_storage = (t.is_contiguous() and t.storage_offset() == 0
                        and t.untyped_storage().nbytes() == t.numel() * t.element_size())
        if not owns_storage or (ptr != 0 and ptr in seen_storage):
            t = t.clone(memory_format=torch.contiguous_format)
            ptr = t.untyped_storage().data_ptr()
        if ptr != 0:
            seen_storage.add(ptr)
        key = f"t{len(tensors)}"
        tensors[key] = t
        return key

    def add_array(a: np.ndarray) -> str:
        if a.dtype.kind not in _NUMPY_KINDS:
            raise TypeError(f"cannot store a numpy array of dtype {a.dtype} (numbers and booleans only)")
        # torch wants native byte order, C order and writable memory;
        # astype keeps 0-dim arrays 0-dim (np.ascontiguousarray would not).
        a = a.astype(a.dtype.newbyteorder("="), order="C", copy=not a.flags.writeable)
        return add_tensor(torch.from_numpy(a))

    def encode(x: Any, where: str) -> Any:
        # bool before int: bool is a subclass of int.
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {"$float": repr(float(x))}
        if isinstance(x, torch.Tensor):
            return {"$tensor": add_tensor(x)}
        if isinstance(x, np.ndarray):
            return {"$ndarray": add_array(x)}
        if isinstance(x, np.generic):
            return {"$npscalar": add_array(np.asarray(x))}
        if isinstance(x, dict):
            items = []
            for k, v in x.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"{where}: dict keys must be str or int, not {type(k).__name__}")
                items.append([int(k) if isinstance(k, int) else k, encode(v, f"{where}[{k!r}]")])
            return {"$dict": items}
        if isinstance(x, list):
            return [encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, tuple):
            return {"$tuple": [encode(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        raise TypeError(f"{where}: cannot store a value of type {type(x).__name__}")

    skeleton = encode(state, "state")
    metadata = {_FORMAT_KEY: _FORMAT,
                _SKELETON_KEY: json.dumps(skeleton, separators=(",", ":"), allow_nan=False)}
    return safetensors_save(tensors, metadata=metadata)


def unpack_state(data: bytes) -> Any:
    """Rebuild the structure given to :func:`pack_state`.

    Tensors come back as CPU torch tensors, numpy arrays as numpy arrays.
    Raises ``ValueError`` when the bytes are not a state packed by Pretext.
    """
    from safetensors.torch import load as safetensors_load
    metadata = _read_metadata(data)
    if metadata.get(_FORMAT_KEY) != _FORMAT or _SKELETON_KEY not in metadata:
        raise ValueError("not a Pretext state (no skeleton in the safetensors metadata)")
    try:
        skeleton = json.loads(metadata[_SKELETON_KEY])
        tensors = safetensors_load(bytes(data))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"damaged state: {e}") from e

    def tensor(key: Any) -> "torch.Tensor":
        if not isinstance(key, str) or key not in tensors:
            raise ValueError(f"damaged state: no tensor {key!r}")
        # clone: the loaded tensor views a read-only buffer; callers may write
        return tensors[key].clone()

    def decode(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict) and len(x) == 1:
            (tag, value), = x.items()
            if tag == "$dict":
                return {k: decode(v) for k, v in value}
            if tag == "$tuple":
                return tuple(decode(v) for v in value)
            if tag == "$tensor":
                return tensor(value)
            if tag == "$ndarray":
                return tensor(value).numpy()
            if tag == "$npscalar":
                return tensor(value).numpy()[()]
            if tag == "$float":
                return float(value)
        raise ValueError(f"damaged state: unexpected skeleton node {str(x)[:80]}")

    try:
        return decode(skeleton)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e) if str(e).startswith("damaged") else f"damaged state: {e}") from e


def _read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob: an 8-byte little-endian
    header length, then that many bytes of JSON."""
    if len(data) < 8:
        raise ValueError("not a safetensors blob (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("not a safetensors blob (header runs past the end)")
    try:
        header = json.loads(bytes(data[8:8 + n]))
    except ValueError as e:
        raise ValueError(f"not a safetensors blob ({e})") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}
