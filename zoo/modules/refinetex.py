"""RefineTex's texture network as one module (Altindis et al., Fig. 2): image + parts -> UV texture.

    from zoo.modules.refinetex import RefineTexNet
    net = RefineTexNet.from_pretrained("path/to/saved")          # no Lightning needed
    texture = net(image, parts).texture                          # (B, 3, Huv, Wuv) in [-1, 1]

Backbone (Texformer) -> optional refiner (deformable, or the "Conv Refine" ablation) -> mask
fusion. Saved with `save_pretrained` as one folder: the sub-modules are nested `class_path` /
`init_args` entries of its config, their weights one state dict (the backbone's UV query code
included). The training-only uncertainty head and the losses live with the system.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from zoo.modules.fusion import MaskFusion
from zoo.modules.refiners import ConvRefiner, DeformableRefiner
from zoo.modules.texformer import TexformerBackbone
from zoo.modules.uncertainty import UncertaintyHead
from zoo.pretrained import PretrainedMixin
from zoo.pretrained.config import class_path_of, to_plain


@dataclass
class RefineTexOutput:
    """texture: the network's output (B, 3, Huv, Wuv) in [-1, 1]; backbone_texture: the backbone's
    own fused texture (the same tensor without a refiner), target of deep supervision."""

    texture: torch.Tensor
    backbone_texture: torch.Tensor


class RefineTexNet(PretrainedMixin, nn.Module):
    """Backbone -> refiner -> fusion: one image and its part labels to a UV texture.

    Args:
        backbone: the Texformer "deep network" (its uv_size is the predicted texture size).
        refiner: DeformableRefiner (RefineTex), ConvRefiner ("Conv Refine" ablation) or None (the
            baseline BL: the backbone's fused texture is the output). It reads the backbone's
            4-channel key image (RGB + part channel), so its in_channels must be 4.
        fusion: MaskFusion of flow-sampled and predicted colours (None: MaskFusion() defaults).

    forward(image (B, 3, H, W) in [-1, 1], parts (B, H, W) integer labels) -> RefineTexOutput.
    """

    def __init__(self, backbone: TexformerBackbone, refiner: DeformableRefiner | ConvRefiner | None = None,
                 fusion: MaskFusion | None = None) -> None:
        super().__init__()
        if not isinstance(backbone, TexformerBackbone):
            raise TypeError(f"backbone must be a TexformerBackbone, got {type(backbone).__name__}")
        if refiner is not None and (not isinstance(refiner, (DeformableRefiner, ConvRefiner)) or refiner.in_channels != 4):
            raise ValueError(f"refiner must be a DeformableRefiner / ConvRefiner reading the 4-channel key image, "
                             f"got {refiner!r}")
        if fusion is not None and not isinstance(fusion, MaskFusion):
            raise TypeError(f"fusion must be a MaskFusion or None, got {type(fusion).__name__}")
        self.backbone, self.refiner = backbone, refiner
        self.fusion = fusion if fusion is not None else MaskFusion()

    @property
    def uv_size(self) -> tuple[int, int]:
        return self.backbone.uv_size

    def forward(self, image: torch.Tensor, parts: torch.Tensor) -> RefineTexOutput:
        first = self.backbone(image, parts)
        backbone_texture = self.fusion(image, first.flow, first.rgb, first.mask).texture
        if self.refiner is None:
            return RefineTexOutput(texture=backbone_texture, backbone_texture=backbone_texture)
        refined = self.refiner(self.backbone.key_input(image, parts), first)
        texture = self.fusion(image, refined.flow, refined.rgb, refined.mask).texture
        return RefineTexOutput(texture=texture, backbone_texture=backbone_texture)


def _defaults(cls: type) -> dict:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: to_plain(p.default, f"{cls.__name__}.{p.name}") for p in params
            if p.default is not inspect.Parameter.empty}


def refinetex_paper_config() -> dict:
    """The RefineTex modules as `class_path`/`init_args` entries with the paper's settings.

    Every module's defaults are the paper / implementation-notes settings, so this is a map of
    those defaults; image 128x64 (H x W) -> UV 128x128. Keys: backbone, refiner, fusion,
    uncertainty (plus image_size and uv_size, for data and render configs) and network (the
    RefineTexNet composed of the first three).
    """
    backbone = _defaults(TexformerBackbone)
    modules = {
        "backbone": {"class_path": class_path_of(TexformerBackbone), "init_args": backbone},
        "refiner": {"class_path": class_path_of(DeformableRefiner), "init_args": _defaults(DeformableRefiner)},
        "fusion": {"class_path": class_path_of(MaskFusion), "init_args": _defaults(MaskFusion)},
    }
    return {
        "image_size": [128, 64],
        "uv_size": list(backbone["uv_size"]),
        **modules,
        "uncertainty": {"class_path": class_path_of(UncertaintyHead), "init_args": _defaults(UncertaintyHead)},
        "network": {"class_path": class_path_of(RefineTexNet), "init_args": modules},
    }
