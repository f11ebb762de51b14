"""Person re-identification (ReID) networks behind one feature interface.

Texformer / RefineTex use a ReID network as a frozen perceptual feature extractor: the ReID and
part-style losses and the CosSim metric read the feature maps of its four residual stages. Every
network here exposes

    features(image) -> [layer1, layer2, layer3, layer4]      image: (B, 3, H, W) in [-1, 1]

and does its own preprocessing (documented per class), so callers always pass zoo images.

- `PCBReID`: PCB ResNet-50 (6 stripes, last stage stride 1), the network of the papers. Weights
  come from the public Market-1501 checkpoint through `zoo.pretrained.convert` (`pcb`).
- `TorchreidResNet50`: torchreid's plain ResNet-50 at 256x128, the second network of the papers'
  tables (CosSim-R); weights from a torchreid Market-1501 checkpoint through `zoo.pretrained.convert`
  (`resnet50`).
- `SmallReID`: a small CNN the zoo trains itself on synthetic identities (`zoo.systems.reid`), so
  the losses and metrics work without any third-party weights.

Frozen use (losses, metrics): call `zoo.utils.frozen.freeze(network)`; `check_frozen` is what
they enforce.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.pretrained import PretrainedMixin
from zoo.utils.frozen import check_frozen, check_image, freeze  # noqa: F401 (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_size(value: Sequence[int], name: str, length: int) -> list[int]:
    values = list(value)
    if len(values) != length or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f"{name} must be {length} positive ints, got {value!r}")
    return values



def _resnet_stages(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of layers 1-4 of a torchvision-style ResNet (`net` has conv1, bn1, relu, maxpool, layer1-4)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        out.append(x)
    return out


@dataclass

class ReIDOutput:
    """What a ReID network's forward returns.

    features: the four stage outputs [layer1, ..., layer4], each (B, C_i, H_i, W_i).
    embedding: (B, D) identity descriptor used for retrieval / triplet losses.
    logits: identity logits, (B, num_classes) or (B, stripes, num_classes) for PCB.
    """

    features: list[torch.Tensor]
    embedding: torch.Tensor
    logits: torch.Tensor


class ReIDNetwork(PretrainedMixin, nn.Module, abc.ABC):
    """Shared preprocessing and the `features` interface; not used on its own.

    Args:
        input_size: (H, W) the network sees; images are resized to it (bilinear, no antialias,
            align_corners=False, as `F.interpolate` in the reference code).
        imagenet_normalize: subtract the ImageNet mean and divide by its std after mapping to [0, 1].
    """

    def __init__(self, input_size: Sequence[int], imagenet_normalize: bool):
        super().__init__()
        self.input_size = tuple(_check_size(input_size, "input_size", 2))
        self.imagenet_normalize = bool(imagenet_normalize)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[-1, 1] zoo image -> the network's input: [0, 1], resized, optionally ImageNet-normalised."""
        check_image(image)
        x = (image + 1.0) / 2.0
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        if self.imagenet_normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x

    @abc.abstractmethod
    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs (layers 1-4) of a preprocessed batch."""

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The four stage feature maps [layer1, ..., layer4] of a [-1, 1] image batch."""
        return self.stages(self.preprocess(image))


# ----------------------------------------------------------------------------------------------
# SmallReID


class _Stage(nn.Sequential):
    """Two 3x3 conv-BN-ReLU, the first with stride 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SmallReID(ReIDNetwork):
    """Small CNN ReID network trained by the zoo on synthetic identities.

    Preprocessing: [-1, 1] -> [0, 1], bilinear resize to `input_size`; no ImageNet normalisation
    (it is trained from scratch on [0, 1] inputs). Four stride-2 stages give the four feature
    maps; the last one is average-pooled, projected and batch-normalised into the embedding, which
    a linear identity classifier reads.

    Args:
        num_classes: number of training identities (the synthetic datamodule's `num_identities`).
        widths: channels of the four stages (our choice: small enough to train on a CPU).
        embedding_dim: size of the pooled identity embedding.
        input_size: (H, W) the images are resized to; 128x64 is the Market-1501 / Texformer crop.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128, 256),
                 embedding_dim: int = 128, input_size: Sequence[int] = (128, 64)):
        super().__init__(input_size=input_size, imagenet_normalize=False)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        widths = _check_size(widths, "widths", 4)
        self.num_classes = num_classes
        self.layers = nn.ModuleList(_Stage(cin, cout) for cin, cout in zip([3] + widths[:-1], widths))
        self.projection = nn.Linear(widths[-1], embedding_dim, bias=False)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, image: torch.Tensor) -> ReIDOutput:
        feats = self.features(image)
        embedding = self.embedding_norm(self.projection(feats[-1].mean(dim=(2, 3))))
        return ReIDOutput(features=feats, embedding=embedding, logits=self.classifier(embedding))


# ----------------------------------------------------------------------------------------------
# PCB ResNet-50


class _PCBHead(nn.Module):
    """One stripe's head: Linear -> BatchNorm1d -> Dropout bottleneck, then a linear classifier."""

    def __init__(self, in_dim: int, bottleneck_dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.bottleneck = nn.Sequential(nn.Linear(in_dim, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim),
                                        nn.Dropout(dropout))
        self.classifier = nn.Linear(bottleneck_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bottleneck(x))


class PCBReID(ReIDNetwork):
    """PCB (Part-based Convolutional Baseline) ResNet-50, the ReID network of Texformer / RefineTex.

    Preprocessing (as Texformer's ReID loss): [-1, 1] -> [0, 1], bilinear resize to 384x128,
    ImageNet mean/std normalisation. Backbone: torchvision's ResNet-50 architecture built with
    `weights=None` (nothing is downloaded), the first block of layer4 with stride 1, so layer4 is
    1/16 of the input (24x8 at 384x128). Head: layer4 average-pooled into `stripes` horizontal
    stripes, each with its own bottleneck (Linear 2048->256, BatchNorm1d, Dropout) and classifier.

    Args:
        num_classes: identities of the classifier heads; 751 = Market-1501 training identities.
        stripes: number of horizontal parts (6 in PCB).
        bottleneck_dim: width of each stripe's bottleneck (256 in the original checkpoint).
        dropout: dropout before and inside the stripe heads (0.5 in the original training).
        input_size: (H, W) the images are resized to (384x128 in Texformer and PCB).
    """

    def __init__(self, num_classes: int = 751, stripes: int = 6, bottleneck_dim: int = 256,
                 dropout: float = 0.5, input_size: Sequence[int] = (384, 128)):
        super().__init__(input_size=input_size, imagenet_normalize=True)
        for name, value in (("num_classes", num_classes), ("stripes", stripes), ("bottleneck_dim", bottleneck_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        # Imported here so that SmallReID (and every loss using it) works where torchvision does not.
        from torchvision.models import resnet50

        backbone = resnet50(weights=None)
        backbone.layer4[0].conv2.stride = (1, 1)
        backbone.layer4[0].downsample[0].stride = (1, 1)
        backbone.avgpool = nn.Identity()
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.num_classes = num_classes
        self.stripes = stripes
        self.pool = nn.AdaptiveAvgPool2d((stripes, 1))
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(_PCBHead(2048, bottleneck_dim, num_classes, dropout) for _ in range(stripes))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _resnet_stages(self.backbone, x)

    def forward(self, image: torch.Tensor) -> ReIDOutput:
        feats = self.features(image)
        parts = self.pool(feats[-1]).flatten(2)  # (B, 2048, stripes)
        dropped = self.dropout(parts)
        logits = torch.stack([head(dropped[:, :, i]) for i, head in enumerate(self.heads)], dim=1)
        return ReIDOutput(features=feats, embedding=parts.flatten(1), logits=logits)


# ----------------------------------------------------------------------------------------------
# torchreid ResNet-50 (CosSim-R)


class TorchreidResNet50(ReIDNetwork):
    """torchreid's `resnet50` person ReID network: the feature extractor of Texformer's CosSim-R.

    Preprocessing (Texformer's `ReIDModel`): [-1, 1] -> [0, 1], bilinear resize to 256x128, ImageNet
    mean/std. Backbone: torchvision's ResNet-50 layout (built with `weights=None`, nothing is
    downloaded), last stage stride 2 (layer4 is 1/32 of the input, 8x4 at 256x128), global average
    pooling into the 2048-d embedding and a linear identity classifier (`classifier`). Module names
    are torchreid's, so its checkpoints load key for key (`python -m zoo.pretrained.convert resnet50`).

    Args:
        num_classes: identities of the classifier; 751 = Market-1501 training identities.
        input_size: (H, W) the images are resized to (256x128 in torchreid and Texformer).
    """

    def __init__(self, num_classes: int = 751, input_size: Sequence[int] = (256, 128)):
        super().__init__(input_size=input_size, imagenet_normalize=True)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.num_classes = num_classes
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.classifier = nn.Linear(2048, num_classes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _resnet_stages(self, x)

    def forward(self, image: torch.Tensor) -> ReIDOutput:
        feats = self.features(image)
        embedding = feats[-1].mean(dim=(2, 3))
        return ReIDOutput(features=feats, embedding=embedding, logits=self.classifier(embedding))
