"""RefineTex's refinement modules: a deformable conv that samples the image onto the UV grid.

The paper (sec. 3.1) turns Texformer's flow into deformable-conv offsets so that a conv on the
128x128 UV grid reads the 128x64 image adaptively around where the flow points. torchvision's
deform_conv2d keeps the spatial size, so `DeformableSampleConv2d` resamples instead: one
`grid_sample` per tap at flow + tap offset + learned offset, then the tap weights as a matmul
(implementation notes, section 2). `ConvRefiner` is the paper's "Conv Refine" ablation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.fusion import PADDING_MODES
from zoo.modules.texformer import TexturePrediction, split_prediction
from zoo.modules.unet_blocks import check_image_tensor, check_positive_int, conv_stack
from zoo.pretrained import PretrainedMixin

OFFSET_SOURCES = ("flow", "prediction", "features")


class DeformableSampleConv2d(PretrainedMixin, nn.Module):
    """A KxK deformable conv whose output grid may differ in size from its input.

    For output location u and tap (i, j) it bilinearly samples the input at
    base_grid(u) + ((i - (K-1)/2) * dilation, (j - (K-1)/2) * dilation) + offset(u) (pixels),
    stacks the K*K samples of every channel to (B, C*K*K, Ho, Wo) and applies the tap weights
    as one matmul. With an identity base grid at pixel centres, equal sizes and zero padding it
    is exactly torchvision's deform_conv2d with padding = dilation * (K-1)/2, and it shares that
    op's weight (O, C, K, K) and offset ((dy, dx) per tap, taps row-major) layouts.

    Args:
        in_channels: channels C of the sampled input.
        out_channels: channels O of the output.
        kernel_size: K, odd so that the taps are centred on the base grid (3 in the paper).
        dilation: spacing of the taps in input pixels (1).
        bias: add a learned per-channel bias (False when a BatchNorm follows).
        align_corners: `grid_sample` convention of base_grid (False: -1 and 1 are the outer image
            edges, pixel i's centre is (2i + 1) / n - 1); pixel offsets are converted with it.
        padding_mode: what samples outside the input read: "zeros" (as deform_conv2d), "border"
            or "reflection".

    forward(input (B, C, Hi, Wi), base_grid (B, Ho, Wo, 2) normalised (x, y),
    offset (B, 2*K*K, Ho, Wo) in input pixels) -> (B, O, Ho, Wo).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = True, align_corners: bool = False, padding_mode: str = "zeros") -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("dilation", dilation)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (taps centred on the grid), got {kernel_size}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.align_corners, self.padding_mode = bool(align_corners), padding_mode
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        steps = (torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2) * dilation
        dy, dx = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer("taps", torch.stack([dy.flatten(), dx.flatten()], dim=-1), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * self.kernel_size ** 2)
            nn.init.uniform_(self.bias, -bound, bound)

    def sample(self, input: torch.Tensor, base_grid: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """The K*K bilinear samples per output location, (B, C, K*K, Ho, Wo)."""
        check_image_tensor("input", input, self.in_channels)
        b, c, hi, wi = input.shape
        if base_grid.dim() != 4 or base_grid.shape[0] != b or base_grid.shape[-1] != 2:
            raise ValueError(f"base_grid must be (B={b}, Ho, Wo, 2), got {tuple(base_grid.shape)}")
        ho, wo = base_grid.shape[1:3]
        kk = self.kernel_size ** 2
        if tuple(offset.shape) != (b, 2 * kk, ho, wo):
            raise ValueError(f"offset must be {(b, 2 * kk, ho, wo)} (B, 2*K*K, Ho, Wo), got {tuple(offset.shape)}")
        # pixels -> normalised units in the grid_sample convention
        sx = 2.0 / max(wi - 1, 1) if self.align_corners else 2.0 / wi
        sy = 2.0 / max(hi - 1, 1) if self.align_corners else 2.0 / hi
        shift = offset.view(b, kk, 2, ho, wo) + self.taps.to(offset.dtype).view(1, kk, 2, 1, 1)
        gx = base_grid[..., 0].unsqueeze(1) + shift[:, :, 1] * sx
        gy = base_grid[..., 1].unsqueeze(1) + shift[:, :, 0] * sy
        grid = torch.stack([gx, gy], dim=-1).view(b, kk * ho, wo, 2)
        cols = F.grid_sample(input, grid, mode="bilinear", padding_mode=self.padding_mode,
                             align_corners=self.align_corners)
        return cols.view(b, c, kk, ho, wo)

    def forward(self, input: torch.Tensor, base_grid: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        cols = self.sample(input, base_grid, offset)
        b, c, kk, ho, wo = cols.shape
        out = torch.matmul(self.weight.view(self.out_channels, c * kk), cols.view(b, c * kk, ho * wo))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1)
        return out.view(b, self.out_channels, ho, wo)


def _check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def _check_prediction(prediction: TexturePrediction, batch: int) -> tuple[int, int]:
    check_image_tensor("prediction.flow", prediction.flow, 2, batch=batch)
    size = tuple(prediction.flow.shape[-2:])
    for name, ch in (("rgb", 3), ("mask", 1)):
        t = getattr(prediction, name)
        if tuple(t.shape) != (batch, ch, *size):
            raise ValueError(f"prediction.{name} must be {(batch, ch, *size)}, got {tuple(t.shape)}")
    return size


def _init_head(head: nn.Conv2d, residual: bool) -> None:
    """A residual head starts at zero, so the refined prediction starts at the backbone's."""
    if residual:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def _head_prediction(head: nn.Conv2d, residual: bool, hidden: torch.Tensor, skip: torch.Tensor,
                     prediction: TexturePrediction, offsets: torch.Tensor | None = None) -> TexturePrediction:
    """The head over [hidden, skip = prediction.channels()] (skip-concat); with `residual` its output
    is a correction added to the backbone's pre-activation output before tanh / sigmoid."""
    out = head(torch.cat([hidden, skip], dim=1))
    if residual:
        want = (out.shape[0], 6, *out.shape[-2:])
        if prediction.raw is None or tuple(prediction.raw.shape) != want:
            got = None if prediction.raw is None else tuple(prediction.raw.shape)
            raise ValueError(f"residual_head=True needs prediction.raw {want} (the backbone's pre-activation "
                             f"output, set by split_prediction), got {got}")
        out = prediction.raw + out
    return split_prediction(out, features=hidden, offsets=offsets)


class DeformableRefiner(PretrainedMixin, nn.Module):
    """RefineTex's refinement module: a deformable conv guided by the backbone's flow.

    Layers (channels {in_channels, hidden, hidden, hidden, 6}, implementation notes section 2):
    DeformableSampleConv2d from the key image (RGB + part channel) onto the UV grid, with base
    grid = the backbone flow and offsets from a zero-initialised 3x3 conv (so training starts
    exactly at the backbone's flow); `num_hidden_layers` 3x3 convs; every one followed by BN +
    ReLU; then the backbone's 6 prediction channels are concatenated (skip) and a 3x3 conv gives
    flow (tanh), RGB (tanh) and mask (sigmoid). Defaults have 0.31 M parameters; the paper's
    8.2 M total against Texformer's 7.6 M suggests ~0.6 M, which its text does not explain.

    Args:
        in_channels: channels of the sampled image (4 = RGB + part channel, the backbone's key).
        hidden_channels: width of the refinement convs (128).
        num_hidden_layers: plain 3x3 conv-BN-ReLU layers after the deformable one (2).
        kernel_size: taps of the deformable conv (3, so 18 offset channels).
        offset_source: input of the offset conv: "flow" (2 ch, the paper: "we calculate the
            offsets from flow predictions"), "prediction" (flow, RGB, mask; 6 ch) or "features"
            (prediction + the backbone's decoder features). The conv outputs input pixels; the
            flow enters normalised, its pixel scale folded into the weights.
        feature_channels: channels of `prediction.features` (only read with "features").
        align_corners: grid_sample convention of the flow, as in MaskFusion.
        residual_head: False (the reference layout, implementation notes section 2): the head
            predicts flow / RGB / mask from scratch, so a freshly initialised refiner outputs noise
            in place of the backbone's prediction, and a short training run (the CPU ablations,
            100 steps) ends with speckled textures worse than the backbone alone. True (our
            departure, off by default): same layers and parameter count, but the head is
            zero-initialised and its output is added to the backbone's pre-activation output
            (`prediction.raw`) before tanh / sigmoid, so training starts exactly at the backbone's
            prediction and the refiner learns a correction of it.

    forward(key_image (B, in_channels, Hi, Wi), prediction: the backbone's TexturePrediction on
    the (Huv, Wuv) grid) -> TexturePrediction on the same grid, with `features` = the last
    hidden map and `offsets` = the learned offsets (B, 2*K*K, Huv, Wuv) in pixels (dy, dx).
    """

    def __init__(self, in_channels: int = 4, hidden_channels: int = 128, num_hidden_layers: int = 2,
                 kernel_size: int = 3, offset_source: str = "flow", feature_channels: int = 128,
                 align_corners: bool = False, residual_head: bool = False) -> None:
        super().__init__()
        check_positive_int("hidden_channels", hidden_channels)
        check_positive_int("feature_channels", feature_channels)
        _check_bool("residual_head", residual_head)
        if isinstance(num_hidden_layers, bool) or not isinstance(num_hidden_layers, int) or num_hidden_layers < 0:
            raise ValueError(f"num_hidden_layers must be an int >= 0, got {num_hidden_layers!r}")
        if offset_source not in OFFSET_SOURCES:
            raise ValueError(f"offset_source must be one of {OFFSET_SOURCES}, got {offset_source!r}")
        self.in_channels, self.offset_source, self.feature_channels = in_channels, offset_source, feature_channels
        offset_in = {"flow": 2, "prediction": 6, "features": 6 + feature_channels}[offset_source]
        self.offset_conv = nn.Conv2d(offset_in, 2 * kernel_size ** 2, 3, padding=1)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        self.deform = DeformableSampleConv2d(in_channels, hidden_channels, kernel_size, bias=False,
                                             align_corners=align_corners)
        self.deform_norm = nn.Sequential(nn.BatchNorm2d(hidden_channels), nn.ReLU(inplace=True))
        self.hidden = conv_stack(hidden_channels, hidden_channels, num_hidden_layers) \
            if num_hidden_layers else nn.Identity()
        self.head = nn.Conv2d(hidden_channels + 6, 6, 3, padding=1)
        self.residual_head = residual_head
        _init_head(self.head, residual_head)

    def forward(self, key_image: torch.Tensor, prediction: TexturePrediction) -> TexturePrediction:
        check_image_tensor("key_image", key_image, self.in_channels)
        _check_prediction(prediction, key_image.shape[0])
        skip = prediction.channels()
        if self.offset_source == "flow":
            offset_in = prediction.flow
        elif self.offset_source == "prediction":
            offset_in = skip
        else:
            want = (skip.shape[0], self.feature_channels, *skip.shape[-2:])
            if prediction.features is None or tuple(prediction.features.shape) != want:
                got = None if prediction.features is None else tuple(prediction.features.shape)
                raise ValueError(f"offset_source='features' needs prediction.features {want}, got {got}")
            offset_in = torch.cat([skip, prediction.features], dim=1)
        offsets = self.offset_conv(offset_in)
        x = self.deform_norm(self.deform(key_image, prediction.flow.permute(0, 2, 3, 1), offsets))
        x = self.hidden(x)
        return _head_prediction(self.head, self.residual_head, x, skip, prediction, offsets)


class ConvRefiner(PretrainedMixin, nn.Module):
    """The paper's "Conv Refine" ablation (Table 3): same inputs, outputs and depth as
    DeformableRefiner, but plain 3x3 convs on the UV grid over the backbone prediction and the
    key image sampled at the flow (no learned sampling). It controls for added capacity (the
    paper calls it a shallow U-Net; we keep the deformable refiner's layer count and width so
    the two differ only in how they read the image).

    Args:
        in_channels: channels of the key image (4 = RGB + part channel).
        hidden_channels: width of the convs (128).
        num_hidden_layers: conv-BN-ReLU layers after the first one (2).
        align_corners: grid_sample convention of the flow, as in MaskFusion.
        residual_head: as in DeformableRefiner: False = the reference's from-scratch head; True =
            zero-initialised head whose output corrects the backbone's pre-activation output, so
            training starts exactly at the backbone's prediction (our departure).

    forward(key_image (B, in_channels, Hi, Wi), prediction) -> TexturePrediction (offsets None).
    """

    def __init__(self, in_channels: int = 4, hidden_channels: int = 128, num_hidden_layers: int = 2,
                 align_corners: bool = False, residual_head: bool = False) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("hidden_channels", hidden_channels)
        _check_bool("residual_head", residual_head)
        if isinstance(num_hidden_layers, bool) or not isinstance(num_hidden_layers, int) or num_hidden_layers < 0:
            raise ValueError(f"num_hidden_layers must be an int >= 0, got {num_hidden_layers!r}")
        self.in_channels, self.align_corners = in_channels, bool(align_corners)
        self.body = conv_stack(in_channels + 6, hidden_channels, num_hidden_layers + 1)
        self.head = nn.Conv2d(hidden_channels + 6, 6, 3, padding=1)
        self.residual_head = residual_head
        _init_head(self.head, residual_head)

    def forward(self, key_image: torch.Tensor, prediction: TexturePrediction) -> TexturePrediction:
        check_image_tensor("key_image", key_image, self.in_channels)
        _check_prediction(prediction, key_image.shape[0])
        skip = prediction.channels()
        sampled = F.grid_sample(key_image, prediction.flow.permute(0, 2, 3, 1), mode="bilinear",
                                padding_mode="zeros", align_corners=self.align_corners)
        x = self.body(torch.cat([sampled, skip], dim=1))
        return _head_prediction(self.head, self.residual_head, x, skip, prediction)

