"""Texformer: the attention backbone that RefineTex uses as its deep offset network.

Query = a constant colour code of UV space, key = image + part labels, value = image + pixel
coordinates; cross-attention at three scales maps image evidence onto the UV grid, and a U-Net
decodes the three attention outputs into texture flow, RGB and a fusion mask (implementation
notes, section 1; RefineTex paper, section 3.1 and Fig. 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.unet_blocks import ThreeScaleUNet, check_image_tensor, check_positive_int
from zoo.pretrained import PretrainedMixin

ATTENTIONS = ("softmax", "linear")
SOFTMAX_SCALES = ("num_keys", "head_dim")
COORD_ORDERS = ("yx", "xy")
QUERY_CODE_INITS = ("uv",)


@dataclass
class TexturePrediction:
    """What a texture network predicts on the UV grid.

    flow: (B, 2, Huv, Wuv), tanh; for each texel, where to sample the image, as (x, y) grid
        coordinates in [-1, 1], i.e. already in `F.grid_sample`'s order (after a permute).
    rgb: (B, 3, Huv, Wuv), tanh; colours predicted directly, used where the texel is unseen.
    mask: (B, 1, Huv, Wuv), sigmoid; fusion weight of the sampled colours (paper eq. 1).
    features: (B, C, Huv, Wuv), the last hidden features before the output conv.
    offsets: (B, 2*K*K, Huv, Wuv), deformable offsets in input pixels, (dy, dx) per tap
        (DeformableRefiner only; None elsewhere).
    raw: (B, 6, Huv, Wuv), the pre-activation output [flow 2, rgb 3, mask 1] that flow, rgb and
        mask were activated from (set by `split_prediction`; a residual refiner head adds to it).
    """

    flow: torch.Tensor
    rgb: torch.Tensor
    mask: torch.Tensor
    features: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    raw: torch.Tensor | None = None

    def channels(self) -> torch.Tensor:
        """flow, rgb and mask as one (B, 6, Huv, Wuv) map, in that order."""
        return torch.cat([self.flow, self.rgb, self.mask], dim=1)


def split_prediction(raw: torch.Tensor, features: torch.Tensor | None = None,
                     offsets: torch.Tensor | None = None) -> TexturePrediction:
    """Activate a raw (B, 6, H, W) output laid out [flow 2, rgb 3, mask 1]."""
    if raw.dim() != 4 or raw.shape[1] != 6:
        raise ValueError(f"raw prediction must be (B, 6, H, W), got {tuple(raw.shape)}")
    return TexturePrediction(flow=torch.tanh(raw[:, 0:2]), rgb=torch.tanh(raw[:, 2:5]),
                             mask=torch.sigmoid(raw[:, 5:6]), features=features, offsets=offsets, raw=raw)


def sine_position_encoding(height: int, width: int, channels: int, temperature: float = 10000.0,
                           device: torch.device | None = None,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DETR's normalised sine encoding as a (1, channels, H, W) map.

    The first half of the channels encodes the row, the second the column. Positions 1..n are
    divided by n and scaled by 2*pi (so every resolution spans the same phase range), and each
    half holds (sin, cos) pairs at frequencies temperature ** (-2k / (channels / 2)).
    """
    if channels % 4:
        raise ValueError(f"positional encoding needs channels divisible by 4, got {channels}")
    half = channels // 2
    freqs = temperature ** (torch.arange(0, half, 2, device=device, dtype=torch.float64) / half)

    def encode(n: int) -> torch.Tensor:
        pos = torch.arange(1, n + 1, device=device, dtype=torch.float64) / (n + 1e-6) * (2 * math.pi)
        arg = pos[:, None] / freqs[None, :]
        return torch.stack([arg.sin(), arg.cos()], dim=-1).flatten(1)  # (n, half)

    rows = encode(height)[:, None, :].expand(height, width, half)
    cols = encode(width)[None, :, :].expand(height, width, half)
    return torch.cat([rows, cols], dim=-1).permute(2, 0, 1).unsqueeze(0).to(dtype)


def coordinate_map(batch: int, height: int, width: int, order: str = "yx",
                   like: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, 2, H, W) pixel coordinates, each linspace(-1, 1), stacked in `order`."""
    if order not in COORD_ORDERS:
        raise ValueError(f"coordinate order must be one of {COORD_ORDERS}, got {order!r}")
    kw = {} if like is None else {"device": like.device, "dtype": like.dtype}
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, **kw), torch.linspace(-1, 1, width, **kw),
                            indexing="ij")
    grid = torch.stack([ys, xs] if order == "yx" else [xs, ys])
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


def analytic_query_code(height: int, width: int) -> torch.Tensor:
    """(3, H, W) placeholder UV code (u, v, u*v) with u, v = linspace(-1, 1): distinct at every
    texel and smooth, until the body model's rest-pose positions replace it."""
    v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([u, v, u * v])


class CrossAttentionUnit(PretrainedMixin, nn.Module):
    """Multi-head cross-attention from UV queries to image keys/values, then FFN and BatchNorm.

    Texformer's unit (implementation notes, section 1): sine positions are added to query and key
    (never value), bias-free 1x1 projections, attention, a 1x1 output projection, then
    `x + FFN(x)` (1x1 conv, ReLU, 1x1 conv) and BatchNorm. There is no residual around the
    attention itself: the UV query carries no image content to keep.

    Args:
        feat_dim: channels of query, key and value features (128 in the paper).
        num_heads: attention heads (8 in the paper, so heads of width 16).
        attention: "softmax" (Texformer's 1/4 scale) or "linear", i.e. Q (K^T V) / N_keys with
            no softmax (Texformer's 1/2 and full scales, where N_keys is too large for softmax).
        softmax_scale: logits divided by sqrt(N_keys) ("num_keys", the reference code's choice
            and the default) or by sqrt(head width) ("head_dim", the usual transformer scale).
        pos_temperature: temperature of the sine positional encoding (DETR's 10000).
    """

    def __init__(self, feat_dim: int = 128, num_heads: int = 8, attention: str = "softmax",
                 softmax_scale: str = "num_keys", pos_temperature: float = 10000.0) -> None:
        super().__init__()
        check_positive_int("feat_dim", feat_dim)
        check_positive_int("num_heads", num_heads)
        if feat_dim % num_heads or feat_dim % 4:
            raise ValueError(f"feat_dim {feat_dim} must be divisible by 4 and by num_heads {num_heads}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if softmax_scale not in SOFTMAX_SCALES:
            raise ValueError(f"softmax_scale must be one of {SOFTMAX_SCALES}, got {softmax_scale!r}")
        if not pos_temperature > 0:
            raise ValueError(f"pos_temperature must be > 0, got {pos_temperature!r}")
        self.feat_dim, self.num_heads = feat_dim, num_heads
        self.head_dim = feat_dim // num_heads
        self.attention, self.softmax_scale, self.pos_temperature = attention, softmax_scale, pos_temperature
        self.to_q = nn.Conv2d(feat_dim, feat_dim, 1, bias=False)
        self.to_k = nn.Conv2d(feat_dim, feat_dim, 1, bias=False)
        self.to_v = nn.Conv2d(feat_dim, feat_dim, 1, bias=False)
        self.proj = nn.Conv2d(feat_dim, feat_dim, 1, bias=False)
        self.ffn = nn.Sequential(nn.Conv2d(feat_dim, feat_dim, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(feat_dim, feat_dim, 1))
        self.norm = nn.BatchNorm2d(feat_dim)

    def _position(self, x: torch.Tensor) -> torch.Tensor:
        return sine_position_encoding(x.shape[-2], x.shape[-1], self.feat_dim, self.pos_temperature,
                                      x.device, x.dtype)

    def project_query(self, query_feat: torch.Tensor) -> torch.Tensor:
        """(Bq, C, H, W) query features -> (Bq, heads, H*W, head_dim) projected queries.

        Depends on nothing but the query features, so the backbone computes it once for its
        constant UV code (see TexformerBackbone)."""
        b, _, h, w = query_feat.shape
        q = self.to_q(query_feat + self._position(query_feat))
        return q.view(b, self.num_heads, self.head_dim, h * w).transpose(-1, -2)

    def attend(self, query: torch.Tensor, query_hw: Sequence[int], key_feat: torch.Tensor,
               value_feat: torch.Tensor) -> torch.Tensor:
        """Projected queries (1 or B, heads, Nq, head_dim) -> (B, C, H, W) attended features."""
        b, c, hk, wk = key_feat.shape
        n_keys = hk * wk
        k = self.to_k(key_feat + self._position(key_feat)).view(b, self.num_heads, self.head_dim, n_keys)
        v = self.to_v(value_feat).view(b, self.num_heads, self.head_dim, n_keys)
        if self.attention == "softmax":
            scale = (n_keys if self.softmax_scale == "num_keys" else self.head_dim) ** -0.5
            out = F.scaled_dot_product_attention(query.expand(b, -1, -1, -1), k.transpose(-1, -2),
                                                 v.transpose(-1, -2), scale=scale)
        else:
            kv = torch.matmul(k, v.transpose(-1, -2)) / n_keys  # (B, heads, d, d): K^T V / N
            out = torch.matmul(query, kv)  # a batch-1 query broadcasts over the batch
        out = self.proj(out.transpose(-1, -2).reshape(b, c, int(query_hw[0]), int(query_hw[1])))
        return self.norm(out + self.ffn(out))

    def forward(self, query_feat: torch.Tensor, key_feat: torch.Tensor,
                value_feat: torch.Tensor) -> torch.Tensor:
        """query (1 or B, C, Hq, Wq), key and value (B, C, Hk, Wk) -> (B, C, Hq, Wq)."""
        check_image_tensor("query_feat", query_feat, self.feat_dim)
        check_image_tensor("key_feat", key_feat, self.feat_dim)
        check_image_tensor("value_feat", value_feat, self.feat_dim)
        if value_feat.shape != key_feat.shape:
            raise ValueError(f"value_feat {tuple(value_feat.shape)} must match key_feat {tuple(key_feat.shape)}")
        if query_feat.shape[0] not in (1, key_feat.shape[0]):
            raise ValueError(f"query_feat batch must be 1 or {key_feat.shape[0]}, got {tuple(query_feat.shape)}")
        return self.attend(self.project_query(query_feat), query_feat.shape[-2:], key_feat, value_feat)


class TexformerBackbone(PretrainedMixin, nn.Module):
    """Texformer (Xu & Loy 2021), the "deep network" that predicts RefineTex's offsets.

    Three ThreeScaleUNet encoders (query 3 ch, key 4 ch, value 5 ch, all `feat_dim` wide, outputs
    at full, 1/2 and 1/4 size); one CrossAttentionUnit per scale (softmax at 1/4, linear at 1/2
    and full); a ThreeScaleUNet decoder over the three attention outputs; a 3x3 conv to 6
    channels split into flow (tanh), RGB (tanh) and fusion mask (sigmoid). The paper
    configuration (all defaults) has 7.56 M parameters and 85 GFLOP per sample (RefineTex
    Table 2: 7.6 M; the reference code also keeps biases on the convs that BatchNorm follows,
    which we drop as dead parameters).

    Query branch. The query is the same colour code for every sample, so its encoder and the
    query projections run ONCE per forward on a batch of one and broadcast over the batch
    (26 of the 85 GFLOP of a full-size one-sample forward). In eval mode this is exact. In
    training mode the forward and the gradients are also those of running the branch on B
    identical copies (BatchNorm's batch mean and biased variance of B copies equal those of one
    copy; the backward of a broadcast sums the per-sample gradients); the only difference is
    BatchNorm's running-variance update, whose unbiased correction uses n = H*W instead of
    B*H*W (a relative difference below 1/(H*W), 1e-3 at the coarsest 32x32 map). Nothing is
    kept across calls: a cache would have to notice every in-place change of the weights (an
    optimiser step, an EMA swap), so the branch is recomputed on each forward (on a batch of one).

    Args:
        feat_dim: feature width at every scale (128, implementation notes section 1).
        num_heads: attention heads per unit (8, so 16 channels per head).
        uv_size: (Huv, Wuv) of the UV grid and of `query_code`, divisible by 4 ((128, 128)).
        part_label_max: largest part label; the key's part channel is
            label / part_label_max * 2 - 1, so labels 0..7 of the EANet parser (default 7) span
            [-1, 1].
        coord_order: channel order of the value's pixel-coordinate map: "yx" (the reference
            code, default) or "xy" (the order of the flow output).
        softmax_scale: scale of the 1/4-scale softmax logits, "num_keys" (1/sqrt(N_keys), the
            reference, default) or "head_dim" (1/sqrt(16)).
        query_code_init: initial `query_code` buffer: "uv" = (u, v, u*v) with u, v =
            linspace(-1, 1) across the atlas. The original code is the body's rest-pose surface
            positions written into the UV atlas: install it with `set_query_code`; the buffer is
            persistent, so it is saved and loaded with the weights.
        pos_temperature: temperature of the sine positional encoding (DETR's 10000).

    forward(image (B, 3, Hi, Wi) in [-1, 1], parts (B, Hi, Wi) integer labels) with Hi, Wi
    divisible by 4 (128x64 in the paper) returns a TexturePrediction on the (Huv, Wuv) grid with
    `features` = the decoder's last (B, feat_dim, Huv, Wuv) features. The value coordinate map
    is linspace(-1, 1) (pixel centres at -1 and 1) as in the reference, while the flow is read
    by `grid_sample` in the fusion and refiners' `align_corners` convention; the network
    absorbs the half-pixel difference.
    """

    def __init__(self, feat_dim: int = 128, num_heads: int = 8, uv_size: Sequence[int] = (128, 128),
                 part_label_max: int = 7, coord_order: str = "yx", softmax_scale: str = "num_keys",
                 query_code_init: str = "uv", pos_temperature: float = 10000.0) -> None:
        super().__init__()
        if (not isinstance(uv_size, Sequence) or len(uv_size) != 2
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 4 or s % 4 for s in uv_size)):
            raise ValueError(f"uv_size must be two ints >= 4 divisible by 4, got {uv_size!r}")
        check_positive_int("part_label_max", part_label_max)
        if coord_order not in COORD_ORDERS:
            raise ValueError(f"coord_order must be one of {COORD_ORDERS}, got {coord_order!r}")
        if query_code_init not in QUERY_CODE_INITS:
            raise ValueError(f"query_code_init must be one of {QUERY_CODE_INITS}, got {query_code_init!r}")
        self.feat_dim, self.uv_size = feat_dim, (int(uv_size[0]), int(uv_size[1]))
        self.part_label_max, self.coord_order = part_label_max, coord_order
        self.query_encoder = ThreeScaleUNet(3, feat_dim, in_convs=1, out_convs=2)
        self.key_encoder = ThreeScaleUNet(4, feat_dim, in_convs=1, out_convs=2)
        self.value_encoder = ThreeScaleUNet(5, feat_dim, in_convs=1, out_convs=2)
        self.attention = nn.ModuleList([  # full, 1/2, 1/4 (the order of ThreeScaleUNet outputs)
            CrossAttentionUnit(feat_dim, num_heads, "linear", softmax_scale, pos_temperature),
            CrossAttentionUnit(feat_dim, num_heads, "linear", softmax_scale, pos_temperature),
            CrossAttentionUnit(feat_dim, num_heads, "softmax", softmax_scale, pos_temperature),
        ])
        self.decoder = ThreeScaleUNet(feat_dim, feat_dim, in_convs=2, out_convs=1)
        self.head = nn.Conv2d(feat_dim, 6, 3, padding=1)
        self.register_buffer("query_code", analytic_query_code(*self.uv_size), persistent=True)

    # ----------------------------------------------------------------- inputs
    @staticmethod
    def make_key_input(image: torch.Tensor, parts: torch.Tensor, part_label_max: int = 7) -> torch.Tensor:
        """RGB image (B, 3, H, W) + integer part map (B, H, W) -> (B, 4, H, W) key input, the
        labels as one channel label / part_label_max * 2 - 1 (0..part_label_max -> [-1, 1])."""
        check_image_tensor("image", image, 3)
        b, _, h, w = image.shape
        if parts.shape != (b, h, w):
            raise ValueError(f"parts must be (B, H, W) = {(b, h, w)} to match image, got {tuple(parts.shape)}")
        if parts.is_floating_point() or parts.is_complex() or parts.dtype == torch.bool:
            raise ValueError(f"parts must hold integer labels, got dtype {parts.dtype}")
        if parts.numel() and (int(parts.min()) < 0 or int(parts.max()) > part_label_max):
            raise ValueError(f"part labels must lie in [0, {part_label_max}], got "
                             f"[{int(parts.min())}, {int(parts.max())}]")
        part_channel = parts.to(image.dtype).unsqueeze(1) / part_label_max * 2 - 1
        return torch.cat([image, part_channel], dim=1)

    def key_input(self, image: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """`make_key_input` with this backbone's `part_label_max` (the refiners read it too)."""
        return self.make_key_input(image, parts, self.part_label_max)

    def set_query_code(self, code: torch.Tensor) -> None:
        """Install the UV colour code, (3, Huv, Wuv) in [-1, 1] (e.g. rest-pose positions
        rasterised into the atlas)."""
        want = (3, *self.uv_size)
        if not isinstance(code, torch.Tensor) or tuple(code.shape) != want:
            got = tuple(code.shape) if isinstance(code, torch.Tensor) else type(code).__name__
            raise ValueError(f"query code must be {want}, got {got}")
        if not code.is_floating_point() or not torch.isfinite(code).all() or code.abs().max() > 1 + 1e-6:
            raise ValueError("query code must be finite floats in [-1, 1]")
        with torch.no_grad():
            self.query_code.copy_(code.to(self.query_code))

    # ------------------------------------------------------------ query branch
    def _compute_query_tokens(self, batch: int = 1) -> list[torch.Tensor]:
        """Projected queries per scale (full, 1/2, 1/4), each (batch, heads, N, head_dim)."""
        code = self.query_code.unsqueeze(0).expand(batch, -1, -1, -1)
        feats = self.query_encoder(code)
        return [unit.project_query(f) for unit, f in zip(self.attention, feats)]

    def _query_tokens(self, batch: int) -> list[torch.Tensor]:
        """Query tokens for a batch of `batch`: computed on a batch of one (broadcast in attention)."""
        return self._compute_query_tokens()

    # ----------------------------------------------------------------- forward
    def forward(self, image: torch.Tensor, parts: torch.Tensor) -> TexturePrediction:
        check_image_tensor("image", image, 3, multiple_of=4)
        key_in = self.key_input(image, parts)
        b, _, h, w = image.shape
        value_in = torch.cat([coordinate_map(b, h, w, self.coord_order, image), image], dim=1)
        queries = self._query_tokens(b)
        keys = self.key_encoder(key_in)
        values = self.value_encoder(value_in)
        hu, wu = self.uv_size
        sizes = [(hu, wu), (hu // 2, wu // 2), (hu // 4, wu // 4)]
        attended = [unit.attend(q, s, k, v) for unit, q, s, k, v
                    in zip(self.attention, queries, sizes, keys, values)]
        features, _, _ = self.decoder(attended[0], inject=attended)
        return split_prediction(self.head(features), features=features)
