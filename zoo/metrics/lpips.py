"""LPIPS (AlexNet, or VGG for DINAR's loss) from the `lpips` package, built only from weights already on disk.

LPIPS is defined by two sets of weights: the AlexNet backbone (torchvision's ImageNet weights) and
the linear heads (shipped inside the `lpips` package). Nothing is ever downloaded: the backbone is
read from the torch hub cache (`<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`, where
torchvision itself would store it). When that file is missing, LPIPS is *unavailable*: callers get
a status string, never a value computed with random weights.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from zoo.utils.frozen import freeze

# File name of torchvision's AlexNet_Weights.IMAGENET1K_V1 (the backbone LPIPS v0.1 was trained on).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
# `load_lpips_weights` name of "LPIPS from the torch hub cache" (a config value, e.g. VQGANSystem.perceptual_weights).
HUB_CACHE = "hub-cache"
# torchvision's VGG16_Weights.IMAGENET1K_V1, the backbone of LPIPS(vgg) (DINAR's perceptual loss).
VGG16_FILE = "vgg16-397923af.pth"
BACKBONE_FILES = {"alex": ALEXNET_FILE, "vgg": VGG16_FILE}
BACKBONE_NAMES = {"alex": "AlexNet", "vgg": "VGG16"}


class MetricUnavailable(RuntimeError):
    """A metric's defining weights are not on disk (and will not be downloaded)."""


def alexnet_weights_path(hub_dir: str | os.PathLike | None = None) -> Path:
    """Where the AlexNet backbone weights must be: `<hub_dir or torch.hub.get_dir()>/checkpoints/`."""
    return _backbone_path("alex", hub_dir)


def _backbone_path(net: str, hub_dir: str | os.PathLike | None) -> Path:
    return Path(hub_dir if hub_dir is not None else torch.hub.get_dir()).expanduser() / "checkpoints" / BACKBONE_FILES[net]


def _linear_weights_path(net: str = "alex") -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def lpips_status(hub_dir: str | os.PathLike | None = None, net: str = "alex") -> str:
    """"ok", or "unavailable: <why and what file to put where>" for LPIPS(`net`), net "alex" or "vgg"."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    backbone = _backbone_path(net, hub_dir)
    if not backbone.is_file():
        return (f"unavailable: LPIPS({net}) needs torchvision's {BACKBONE_NAMES[net]} ImageNet weights at {backbone} "
                f"(file {BACKBONE_FILES[net]}; the zoo never downloads: copy it there or set TORCH_HOME)")
    try:
        linear = _linear_weights_path(net)
    except ImportError as err:
        return f"unavailable: the lpips package cannot be imported ({err})"
    if not linear.is_file():
        return f"unavailable: the lpips package has no linear-head weights at {linear}"
    return "ok"


def load_lpips_alex(hub_dir: str | os.PathLike | None = None) -> nn.Module:
    """Frozen `lpips.LPIPS(net="alex")` with the backbone loaded strictly from the hub cache file.

    Raises MetricUnavailable (with `lpips_status`'s message) when a weight file is missing.
    The returned module takes two (B, 3, H, W) images in [-1, 1] and returns (B, 1, 1, 1).
    """
    return load_lpips("alex", hub_dir)


def load_lpips_vgg(hub_dir: str | os.PathLike | None = None) -> nn.Module:
    """Frozen `lpips.LPIPS(net="vgg")` (DINAR's perceptual loss), backbone from the hub cache file
    `vgg16-397923af.pth`; raises MetricUnavailable when a weight file is missing."""
    return load_lpips("vgg", hub_dir)


def load_lpips(net: str, hub_dir: str | os.PathLike | None = None) -> nn.Module:
    """Frozen `lpips.LPIPS(net=net)` ("alex" or "vgg") with the torchvision backbone loaded strictly."""
    status = lpips_status(hub_dir, net)
    if status != "ok":
        raise MetricUnavailable(status)
    import lpips

    path = _backbone_path(net, hub_dir)
    with warnings.catch_warnings():  # lpips builds the backbone with torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    mapped = {}
    for key in model.net.state_dict():  # "slice<k>.<index in <backbone>.features>.<param>"
        _, index, param = key.split(".")
        source = f"{index}.{param}"
        if source not in features:
            raise KeyError(f"{path} has no features.{source}: not torchvision {BACKBONE_NAMES[net]} weights")
        mapped[key] = features.pop(source)
    if features:
        raise KeyError(f"{path} has unexpected {BACKBONE_NAMES[net]} feature tensors: {sorted(features)}")
    model.net.load_state_dict(mapped, strict=True)
    return freeze(model)


def lpips_weights_help(net: str = "vgg") -> str:
    """How to give LPIPS(`net`) its weights (for errors of configs that ask for a perceptual loss)."""
    where = (f"'{HUB_CACHE}' with torchvision's {BACKBONE_NAMES[net]} ImageNet weights at {_backbone_path(net, None)}"
             if net in BACKBONE_FILES else f"('{HUB_CACHE}' serves only {sorted(BACKBONE_FILES)})")
    return (f"set perceptual_weights to a local file with a full LPIPS({net}) state dict (backbone and linear "
            f"layers), or to {where} (the zoo never downloads: copy the file there or set TORCH_HOME)")


def load_lpips_weights(weights_path: str, net: str = "vgg") -> nn.Module:
    """LPIPS with every weight from local files (the VQGAN system's `perceptual_weights`): nothing is downloaded.

    `weights_path` is a file holding a full LPIPS state dict (backbone and linear layers) of
    backbone `net`, or HUB_CACHE ("hub-cache") for LPIPS(`net`, "alex" or "vgg") from torchvision's
    backbone file in the torch hub cache plus the lpips package's linear heads (`load_lpips`); a
    missing file raises MetricUnavailable naming it."""
    if weights_path == HUB_CACHE:
        return load_lpips(net)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"perceptual_weights {weights_path!r} does not exist; it must hold a full LPIPS "
                                "state dict (backbone and linear layers), saved with torch.save or safetensors")
    import lpips  # imported here: it pulls in torchvision, unused unless perceptual loss is on

    model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    if weights_path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(weights_path)
    else:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model
