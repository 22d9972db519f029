"""The backbones by name: which stem a ResNet gets at which size, that the names stored runs
use keep their meaning, and that a ViT's automatic patch tiles 32 to 224 px images."""
import pytest
import torch
import torchvision
from torch import nn

from engine.nets import BACKBONES, ViT, auto_patch_size, build_backbone, stem_for


@pytest.mark.parametrize("size,stem", [(8, "cifar"), (32, "cifar"), (63, "cifar"), (64, "imagenet"),
                                       (96, "imagenet"), (224, "imagenet")])
def test_stem_follows_the_image_size(size, stem):
    assert stem_for(size) == stem
    net = build_backbone("resnet18-auto", 3, size).net
    if stem == "cifar":
        assert (net.conv1.kernel_size, net.conv1.stride) == ((3, 3), (1, 1))
        assert isinstance(net.maxpool, nn.Identity)
    else:
        assert (net.conv1.kernel_size, net.conv1.stride) == ((7, 7), (2, 2))
        assert isinstance(net.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("name,size,last_grid", [("resnet18-auto", 32, 4), ("resnet18-auto", 64, 2),
                                                 ("resnet18-auto", 96, 3), ("resnet18-auto", 224, 7),
                                                 ("resnet50", 32, 4), ("resnet50", 128, 4)])
def test_resnets_keep_a_spatial_grid_at_the_last_block_and_give_their_width(name, size, last_grid):
    torch.manual_seed(0)
    net = build_backbone(name, 3, size).eval()
    seen = []
    net.net.layer4.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[-2:]))
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, net.dim) and net.dim == (2048 if name == "resnet50" else 512)
    assert tuple(seen[0]) == (last_grid, last_grid)
    assert torch.isfinite(out).all()


def test_stored_names_keep_their_fixed_stems():
    # "resnet18" was always the ImageNet stem and "resnet18-cifar" the CIFAR one, at every size:
    # a stored run's checkpoint holds those conv shapes.
    assert build_backbone("resnet18", 3, 32).net.conv1.weight.shape == (64, 3, 7, 7)
    assert isinstance(build_backbone("resnet18", 3, 32).net.maxpool, nn.MaxPool2d)
    assert build_backbone("resnet18-cifar", 3, 224).net.conv1.weight.shape == (64, 3, 3, 3)
    assert build_backbone("resnet18-cifar", 1, 224).net.conv1.weight.shape == (64, 1, 3, 3)
    assert build_backbone("resnet18", 2, 64).net.conv1.weight.shape == (64, 2, 7, 7)


@pytest.mark.parametrize("name,tv,size", [("resnet18", "resnet18", 224), ("resnet18-auto", "resnet18", 224),
                                          ("resnet50", "resnet50", 64)])
def test_imagenet_stem_state_is_torchvisions_layout(name, tv, size):
    ours = build_backbone(name, 3, size).net.state_dict()
    ref = getattr(torchvision.models, tv)()
    ref.fc = nn.Identity()
    ref.load_state_dict(ours, strict=True)             # same keys and shapes, nothing missing
    assert list(ours) == list(ref.state_dict())


def test_every_listed_name_builds_and_an_unknown_one_is_refused():
    for name in BACKBONES:
        assert build_backbone(name, 3, 32, width=4)(torch.randn(2, 3, 32, 32)).shape[0] == 2
    with pytest.raises(ValueError, match="resnet50"):   # the message lists the known names
        build_backbone("resnet34", 3, 32)


@pytest.mark.parametrize("h,w,patch", [(32, 32, 4), (64, 64, 8), (96, 96, 8), (128, 128, 8), (224, 224, 16),
                                       (28, 28, 4), (64, 96, 8), (160, 224, 16), (100, 100, 5)])
def test_auto_patch_size_tiles_the_image(h, w, patch):
    assert auto_patch_size(h, w) == patch
    assert h % patch == 0 and w % patch == 0


def test_vit_at_224_px_has_a_14_by_14_grid():
    vit = ViT(3, 224, 224)
    assert vit.patch == 16 and vit.grid == (14, 14)
    with torch.no_grad():
        assert vit(torch.randn(1, 3, 224, 224)).shape == (1, vit.dim)
