"""The tiny configuration of every public module class of `zoo.modules`, for the shared checks in
`tests/modules/test_all_modules.py`. A new public module class must get an entry here (the tester
fails for a class without one), so no module skips the checks.

An entry: `build()` returns a tiny instance (seeded by the tester), `inputs(batch)` the positional
arguments of one forward for a batch of that size, optional `prepare(module)` (e.g. give
zero-initialised output layers small values so the gradient check sees the whole network) and
`allow_zero`: parameter names whose gradient may be all zero for these inputs (say why)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.discriminator import PatchDiscriminator
from zoo.modules.fusion import MaskFusion
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.quantize import VectorQuantizer
from zoo.modules.refiners import ConvRefiner, DeformableRefiner, DeformableSampleConv2d
from zoo.modules.refinetex import RefineTexNet
from zoo.modules.reid import PCBReID, SmallReID, TorchreidResNet50
from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator
from zoo.modules.texformer import CrossAttentionUnit, TexformerBackbone, TexturePrediction
from zoo.modules.texture_unet import TextureUNet
from zoo.modules.uncertainty import UncertaintyHead
from zoo.modules.unet_blocks import ConvBNReLU, ThreeScaleUNet
from zoo.modules.vqgan import VQGAN, Decoder, Encoder


@dataclass
class Spec:
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int], tuple]
    prepare: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m
    allow_zero: tuple[str, ...] = field(default_factory=tuple)


def _g(batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(100 + batch)


def _image(batch: int, channels: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.rand(batch, channels, h, w, generator=_g(batch)) * 2 - 1


def _parts(batch: int, h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 8, (batch, h, w), generator=_g(batch))


def _prediction(batch: int, uv: int = 16, features: int = 8) -> TexturePrediction:
    raw = torch.randn(batch, 6, uv, uv, generator=_g(batch))
    return TexturePrediction(flow=raw[:, :2].tanh(), rgb=raw[:, 2:5].tanh(), mask=raw[:, 5:].sigmoid(),
                             features=torch.randn(batch, features, uv, uv, generator=_g(batch)))


def _scene(batch: int, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    uv = torch.rand(batch, side, side, 2, generator=_g(batch)) * 2 - 1
    uv_mask = torch.zeros(batch, 1, side, side)
    uv_mask[:, :, 3:13, 5:11] = 1.0
    return torch.where(uv_mask.permute(0, 2, 3, 1) > 0, uv, torch.full_like(uv, -2.0)), uv_mask


def _unperturb_zero_init(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised output layers (ADM / LDM) block every gradient before them at step 0."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
    return model


SG2 = dict(base_channels=4, channel_multiplier=1, max_channels=8)
RENDERER = dict(uv_features=2, mask_features=2, base_channels=4, n_downsampling=2, n_blocks=1, features=4)
VQ = dict(base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, norm_groups=4, resolution=16, latent_channels=3)


def _dinar() -> DinarAvatarNet:
    return DinarAvatarNet(renderer=NeuralRenderer(texture_channels=9, **RENDERER),
                          encoder=StyleEncoder(image_size=16, style_dim=8, **SG2),
                          generator=TextureGenerator(texture_size=8, out_channels=4, style_dim=8, **SG2))


SPECS: dict[type, Spec] = {
    DiffusionUNet: Spec(
        lambda: DiffusionUNet(in_channels=5, out_channels=2, base_channels=8, channel_multipliers=(1, 2),
                              num_res_blocks=1, attention_resolutions=(4,), resolution=8, num_heads=2, dropout=0.0,
                              norm_groups=4),
        lambda b: (torch.randn(b, 5, 8, 8, generator=_g(b)), torch.randint(0, 1000, (b,), generator=_g(b))),
        prepare=_unperturb_zero_init),
    DinarAvatarNet: Spec(
        _dinar,
        # image, person mask, RGB channels, uv, uv mask, background, encoder noise (fixed: eval is deterministic)
        lambda b: (_image(b), torch.rand(b, 1, 16, 16, generator=_g(b)), torch.randn(b, 5, 8, 8, generator=_g(b)),
                   *_scene(b), 1.0, torch.randn(b, 1, 16, 16, generator=_g(b)))),
    PatchDiscriminator: Spec(lambda: PatchDiscriminator(in_channels=5, base_channels=8, n_layers=2, norm_groups=4),
                             lambda b: (torch.randn(b, 5, 16, 16, generator=_g(b)),)),
    MaskFusion: Spec(MaskFusion, lambda b: (_image(b, 3, 8, 4), _prediction(b, 6).flow, _prediction(b, 6).rgb,
                                            _prediction(b, 6).mask)),
    NeuralRenderer: Spec(lambda: NeuralRenderer(texture_channels=6, **RENDERER),
                         lambda b: (torch.randn(b, 6, 8, 8, generator=_g(b)), *_scene(b))),
    DeformableSampleConv2d: Spec(lambda: DeformableSampleConv2d(3, 4),
                                 lambda b: (_image(b, 3, 8, 6), _prediction(b, 5).flow.permute(0, 2, 3, 1),
                                            torch.randn(b, 18, 5, 5, generator=_g(b)))),
    DeformableRefiner: Spec(lambda: DeformableRefiner(hidden_channels=8, offset_source="features", feature_channels=8),
                            lambda b: (_image(b, 4, 16, 8), _prediction(b))),
    ConvRefiner: Spec(lambda: ConvRefiner(hidden_channels=8), lambda b: (_image(b, 4, 16, 8), _prediction(b))),
    RefineTexNet: Spec(lambda: RefineTexNet(TexformerBackbone(feat_dim=8, num_heads=2, uv_size=(16, 16)),
                                            DeformableRefiner(hidden_channels=8, feature_channels=8)),
                       lambda b: (_image(b, 3, 32, 16), _parts(b, 32, 16))),
    SmallReID: Spec(lambda: SmallReID(num_classes=6, widths=(4, 4, 8, 8), embedding_dim=8, input_size=(32, 16)),
                    lambda b: (_image(b, 3, 32, 16),)),
    PCBReID: Spec(lambda: PCBReID(num_classes=3, input_size=(96, 32)), lambda b: (_image(b, 3, 96, 32),)),
    TorchreidResNet50: Spec(lambda: TorchreidResNet50(num_classes=3, input_size=(64, 32)), lambda b: (_image(b, 3, 64, 32),)),
    StyleEncoder: Spec(lambda: StyleEncoder(image_size=16, style_dim=8, **SG2),
                       lambda b: (_image(b), torch.rand(b, 1, 16, 16, generator=_g(b)),
                                  torch.randn(b, 1, 16, 16, generator=_g(b)))),
    StyleGAN2Discriminator: Spec(lambda: StyleGAN2Discriminator(image_size=16, **SG2), lambda b: (_image(b),)),
    TextureGenerator: Spec(lambda: TextureGenerator(texture_size=16, out_channels=5, style_dim=8, **SG2),
                           lambda b: (torch.randn(b, 8, generator=_g(b)),)),
    CrossAttentionUnit: Spec(lambda: CrossAttentionUnit(feat_dim=8, num_heads=2),
                             lambda b: (torch.randn(1, 8, 4, 4, generator=_g(b)), torch.randn(b, 8, 4, 2, generator=_g(b)),
                                        torch.randn(b, 8, 4, 2, generator=_g(b)))),
    TexformerBackbone: Spec(lambda: TexformerBackbone(feat_dim=8, num_heads=2, uv_size=(16, 16)),
                            lambda b: (_image(b, 3, 16, 8), _parts(b, 16, 8))),
    TextureUNet: Spec(lambda: TextureUNet(base_channels=8, depth=2, paste_known=False),
                      lambda b: (_image(b), (torch.rand(b, 1, 16, 16, generator=_g(b)) > 0.5).float())),
    UncertaintyHead: Spec(lambda: UncertaintyHead(width=8), lambda b: (_image(b, 3),)),
    ConvBNReLU: Spec(lambda: ConvBNReLU(3, 4), lambda b: (_image(b, 3, 8, 8),)),
    ThreeScaleUNet: Spec(lambda: ThreeScaleUNet(3, width=8), lambda b: (_image(b, 3, 16, 16),)),
    Encoder: Spec(lambda: Encoder(in_channels=2, **VQ), lambda b: (torch.randn(b, 2, 8, 8, generator=_g(b)),)),
    Decoder: Spec(lambda: Decoder(out_channels=5, **VQ), lambda b: (torch.randn(b, 3, 8, 8, generator=_g(b)),)),
    VectorQuantizer: Spec(lambda: VectorQuantizer(num_codes=8, code_dim=3),
                          lambda b: (torch.randn(b, 3, 4, 4, generator=_g(b)),),
                          # a code no latent is nearest to gets no gradient (its row of the table)
                          allow_zero=("embedding.weight",)),
    VQGAN: Spec(lambda: VQGAN(in_channels=5, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1,
                              attention_resolutions=(8,), mid_attention=True, resolution=16, latent_channels=4,
                              num_codes=32, code_dim=3, norm_groups=4),
                lambda b: (torch.randn(b, 5, 16, 16, generator=_g(b)),)),
}
