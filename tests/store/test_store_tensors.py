"""pack_state / unpack_state: nested training state through safetensors."""
import json
import struct

import numpy as np
import pytest
import torch

from engine.store.tensors import pack_state, unpack_state


def _adam_after_steps(seed: int = 0, steps: int = 2):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    x = torch.randn(8, 5)
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    return model, opt, x


def test_adam_state_round_trips_with_int_keys_and_tuples():
    _, opt, _ = _adam_after_steps()
    sd = opt.state_dict()
    back = unpack_state(pack_state(sd))
    assert sorted(back["state"]) == [0, 1, 2, 3]  # int keys, not "0"
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)  # tuple, not list
    assert back["param_groups"][0]["params"] == [0, 1, 2, 3]
    for i, state in sd["state"].items():
        for key, value in state.items():
            assert torch.equal(back["state"][i][key], value)
            assert back["state"][i][key].dtype == value.dtype


def test_adam_resume_gives_identical_next_step():
    model, opt, x = _adam_after_steps()
    saved = unpack_state(pack_state({"model": model.state_dict(), "optim": opt.state_dict()}))

    def step(m, o):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
        return [p.detach().clone() for p in m.parameters()]

    expected = step(model, opt)
    model2, _, _ = _adam_after_steps(seed=1, steps=0)  # different weights until loaded
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optim"])
    got = step(model2, opt2)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_rng_state_round_trips_exactly():
    torch.manual_seed(123)
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "generator": np.random.default_rng(5).bit_generator.state}
    back = unpack_state(pack_state(state))
    assert back["torch"].dtype == torch.uint8 and torch.equal(back["torch"], state["torch"])
    torch.set_rng_state(back["torch"])
    a = torch.rand(3)
    torch.set_rng_state(state["torch"])
    assert torch.equal(a, torch.rand(3))
    assert back["numpy"][0] == "MT19937" and np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["numpy"][1].dtype == np.uint32 and back["numpy"][2:] == state["numpy"][2:]
    assert back["generator"] == state["generator"]  # 128-bit Python ints survive JSON


def test_tensor_shapes_views_and_dtypes():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tied = torch.randn(3, 3)
    state = {
        "transposed": base.t(),  # non-contiguous
        "slice": base[1:3, ::2],  # offset view
        "scalar": torch.tensor(2.5),  # 0-dim
        "empty": torch.empty(0, 7),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "bool": torch.tensor([True, False]),
        "int64": torch.tensor([2**40]),
        "tied_a": tied, "tied_b": tied,  # same storage twice
    }
    back = unpack_state(pack_state(state))
    for key, value in state.items():
        assert back[key].dtype == value.dtype, key
        assert back[key].shape == value.shape, key
        assert torch.equal(back[key], value), key
    assert back["scalar"].dim() == 0
    back["tied_a"] += 1  # restored tensors are writable and independent
    assert not torch.equal(back["tied_a"], back["tied_b"])


def test_numpy_values_and_python_scalars():
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    state = {
        "image": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
        "reversed": np.arange(5.0)[::-1],
        "big_endian": big_endian,
        "zero_dim": np.array(7, dtype=np.int16),
        "np_scalar": np.float32(0.25),
        "floats": [1.0, float("nan"), float("inf"), -float("inf")],
        "nested": {"none": None, "flag": True, "text": "héllo", 3: (1, [2, 3])},
        "huge": 2**100,
    }
    back = unpack_state(pack_state(state))
    assert back["image"].dtype == np.uint8 and np.array_equal(back["image"], state["image"])
    assert np.array_equal(back["reversed"], [4.0, 3.0, 2.0, 1.0, 0.0])
    assert back["big_endian"].dtype == np.int32 and np.array_equal(back["big_endian"], big_endian)
    assert back["zero_dim"].shape == () and back["zero_dim"].dtype == np.int16 and back["zero_dim"] == 7
    assert isinstance(back["np_scalar"], np.float32) and back["np_scalar"] == 0.25
    assert back["floats"][0] == 1.0 and np.isnan(back["floats"][1])
    assert back["floats"][2:] == [float("inf"), -float("inf")]
    assert back["nested"] == {"none": None, "flag": True, "text": "héllo", 3: (1, [2, 3])}
    assert back["nested"]["flag"] is True
    assert back["huge"] == 2**100


def test_the_blob_is_plain_safetensors_with_a_json_skeleton():
    data = pack_state({"w": torch.ones(2), 0: "x"})
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert header["t0"]["dtype"] == "F32" and header["t0"]["shape"] == [2]
    skeleton = json.loads(header["__metadata__"]["pretext.skeleton"])
    assert skeleton == {"$dict": [["w", {"$tensor": "t0"}], [0, "x"]]}


@pytest.mark.parametrize("bad", [object(), {(1, 2): 3}, np.array(["a"], dtype=object), b"bytes",
                                 {1.5: "float key"}])
def test_unsupported_values_are_refused(bad):
    with pytest.raises(TypeError):
        pack_state({"x": bad})


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"garbage!" * 4,
                                  struct.pack("<Q", 2) + b"{}",  # safetensors, but not ours
                                  struct.pack("<Q", 10**9) + b"{}"])
def test_foreign_or_damaged_bytes_raise_value_error(data):
    with pytest.raises(ValueError):
        unpack_state(data)


def test_pickle_is_never_involved(monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "dumps", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)
    _, opt, _ = _adam_after_steps(steps=1)
    assert sorted(unpack_state(pack_state(opt.state_dict()))["state"]) == [0, 1, 2, 3]
