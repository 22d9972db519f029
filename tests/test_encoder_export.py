"""`export --format encoder`: a trained run's encoder alone, loadable in plain torchvision
(ResNets) or rebuilt from its JSON (small CNN, ViT), giving the app's embeddings."""
import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from engine import workbench
from engine.augment import normalize
from engine.cli import main
from engine.train import images_tensor

# One step on 16 images: an export only needs a checkpoint, not a good network.
TINY = {"epochs": "1", "batch_size": "16", "max_train_items": "16", "eval_every": "0", "timeline_items": "0",
        "checkpoint_every": "1000"}


def train_run(project, method, size, n=64, **settings):
    """A finished run of ``method`` on ``n`` shapes of ``size`` px; its id."""
    name = f"shapes{size}"
    workbench.import_dataset(project, "shapes", name, n=n, size=size, seed=0)
    run = workbench.create_run(project, name, method, {**TINY, **settings})
    events = list(workbench.run_training(project, run))
    assert type(events[-1]).__name__ == "Finished", events[-1]
    return run


def export(project, run, out, capsys):
    code = main(["export", "--project", str(project.path), "--run", str(run), "--format", "encoder",
                 "--out", str(out)])
    out_text, err = capsys.readouterr()
    assert code == 0, err
    return [line.removeprefix("wrote ") for line in out_text.splitlines()]


def app_embeddings(project, run):
    """The run's stored final embeddings, in dataset order, and the images they came from."""
    ids, vectors = project.load_embeddings(workbench.final_embeddings(project, run).id)
    data = workbench.load_dataset(project, project.run(run).dataset_id)
    return images_tensor(data)[torch.from_numpy(ids)], vectors


# The features reach ~50 after one epoch, where float32 steps are ~4e-6: the user's model runs
# contiguous, in other batch sizes, than the app's channels_last one, so agreement is asked to
# 1e-5 relative (and 1e-5 absolute near 0). A wrong stem or key gives differences of order 1.


def user_resnet18(path, meta):
    """What a user writes, with torchvision alone (the README's snippet)."""
    m = torchvision.models.resnet18()
    m.fc = nn.Identity()
    if meta["stem"] == "cifar":
        m.conv1 = nn.Conv2d(meta["in_channels"], 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    m.load_state_dict(load_file(path), strict=True)
    return m.eval()


def user_inputs(images, meta):
    """uint8 images normalised as the JSON says (not with engine.augment)."""
    norm = meta["normalization"]
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std


@pytest.mark.parametrize("size,backbone,stem", [(32, "resnet18-auto", "cifar"), (64, "resnet18-auto", "imagenet"),
                                                (32, "resnet18-cifar", "cifar")])
def test_resnet_encoder_loads_strictly_in_torchvision_and_gives_the_app_embeddings(
        project, tmp_path, capsys, size, backbone, stem):
    run = train_run(project, "simclr", size, backbone=backbone)
    written = export(project, run, tmp_path, capsys)
    path = tmp_path / f"run{run}-encoder.safetensors"
    assert written == [str(path), str(path.with_suffix(".json"))]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert (meta["architecture"], meta["stem"], meta["in_channels"], meta["image_size"]) == \
        ("resnet18", stem, 3, [size, size])
    assert meta["normalization"]["mean"] == [0.5] * 3 and meta["normalization"]["std"] == [0.25] * 3
    assert meta["embedding_is_encoder_output"] is True and meta["feature_dim"] == 512
    with safe_open(str(path), "pt") as f:                 # the metadata carries the same description
        assert json.loads(f.metadata()["pretext"]) == meta and f.metadata()["stem"] == stem

    m = user_resnet18(path, meta)
    # The stem really is the one named: 7×7 stride 2 with a max-pool, or 3×3 stride 1 without.
    assert m.conv1.weight.shape[-1] == (7 if stem == "imagenet" else 3)
    images, vectors = app_embeddings(project, run)
    with torch.no_grad():
        ours = m(user_inputs(images, meta)).numpy()
    assert vectors.shape == (64, 512)
    np.testing.assert_allclose(ours, vectors, atol=1e-5, rtol=1e-5)
    # Also equal to the method's own embed on engine.augment.normalize (the app's input path).
    method, _ = workbench.load_trained_method(project, run, device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(m(normalize(images[:8])).numpy(), method.embed(normalize(images[:8])).numpy(),
                                   atol=1e-5, rtol=1e-5)


def test_resnet50_export_loads_in_torchvision_resnet50(project, tmp_path, capsys):
    run = train_run(project, "simclr", 16, n=24, backbone="resnet50", batch_size="8", max_train_items="8")
    path = tmp_path / "r50.safetensors"
    export(project, run, path, capsys)
    meta = json.loads((tmp_path / "r50.json").read_text())
    assert (meta["architecture"], meta["stem"], meta["feature_dim"]) == ("resnet50", "cifar", 2048)
    m = torchvision.models.resnet50()
    m.fc = nn.Identity()
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.load_state_dict(load_file(path), strict=True)
    images, vectors = app_embeddings(project, run)
    with torch.no_grad():
        np.testing.assert_allclose(m.eval()(user_inputs(images[:8], meta)).numpy(), vectors[:8], atol=1e-5, rtol=1e-5)


def test_small_cnn_autoencoder_export_rebuilds_from_json_with_its_code_head(project, tmp_path, capsys):
    from engine import nets
    run = train_run(project, "autoencoder", 16, width="4", bottleneck="8")
    written = export(project, run, tmp_path / "ae", capsys)          # no suffix: .safetensors is added
    assert written == [str(tmp_path / "ae.safetensors"), str(tmp_path / "ae.json"),
                       str(tmp_path / "ae.head.safetensors")]
    meta = json.loads((tmp_path / "ae.json").read_text())
    assert meta["architecture"] == "small-cnn" and meta["build"]["class"] == "engine.nets.SmallCNN"
    assert meta["embedding_is_encoder_output"] is False and "to_code" in meta["embedding"]
    net = getattr(nets, meta["build"]["class"].rsplit(".", 1)[1])(**meta["build"]["kwargs"])
    net.load_state_dict(load_file(tmp_path / "ae.safetensors"), strict=True)
    head = load_file(tmp_path / "ae.head.safetensors")
    assert set(head) == {"to_code.weight", "to_code.bias"}
    images, vectors = app_embeddings(project, run)
    with torch.no_grad():
        code = nn.functional.linear(net.eval()(user_inputs(images, meta)), head["to_code.weight"],
                                    head["to_code.bias"])
    np.testing.assert_allclose(code.numpy(), vectors, atol=1e-5, rtol=1e-5)


def test_mae_vit_export_rebuilds_from_json(project, tmp_path, capsys):
    from engine.nets import ViT
    run = train_run(project, "mae", 32)
    export(project, run, tmp_path / "vit.safetensors", capsys)
    meta = json.loads((tmp_path / "vit.json").read_text())
    assert meta["architecture"] == "vit" and meta["patch"] == 4 and meta["embedding_is_encoder_output"] is True
    vit = ViT(**meta["build"]["kwargs"])
    vit.load_state_dict(load_file(tmp_path / "vit.safetensors"), strict=True)
    images, vectors = app_embeddings(project, run)
    with torch.no_grad():
        np.testing.assert_allclose(vit.eval()(user_inputs(images[:8], meta)).numpy(), vectors[:8], atol=1e-5, rtol=1e-5)


def test_pca_has_no_encoder_to_export(project, tmp_path, capsys):
    run = train_run(project, "pca", 16, dim="4")
    code = main(["export", "--project", str(project.path), "--run", str(run), "--format", "encoder",
                 "--out", str(tmp_path / "x.safetensors")])
    assert code != 0 and "no encoder network" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
