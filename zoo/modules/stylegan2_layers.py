"""StyleGAN2 building blocks in plain PyTorch (Karras et al. 2020), as DINAR's networks use them.

No compiled or JIT-built ops: `upfirdn2d` (upsample, FIR filter, downsample) is written with
`F.pad`, a depthwise `F.conv2d` and strided slicing, and the fused bias + leaky ReLU is two tensor
ops. Parameter layouts follow rosinality's StyleGAN2 port, which DINAR builds on (equalised
learning rate: weights are stored N(0, 1) / lr_mul and scaled at run time), so that DINAR's
released weights map onto these blocks one tensor to one tensor.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)  # keeps the activation variance of a leaky ReLU(0.2) layer near 1


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR `kernel`, keep every `down`-th sample.

    x (B, C, H, W); kernel (kh, kw); pad (before, after), the same on both axes (negative values
    crop). Output side: (H * up + pad0 + pad1 - kh) // down + 1. The kernel is applied as a true
    convolution (flipped), matching the CUDA op of the StyleGAN2 code.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D (kh, kw), got {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up={up} and down={down} must be >= 1")
    p0, p1 = int(pad[0]), int(pad[1])
    b, c, h, w = x.shape
    if up > 1:
        grown = x.new_zeros(b, c, h * up, w * up)
        grown[:, :, ::up, ::up] = x
        x = grown
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(c, 1, -1, -1)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Normalised 2-D FIR kernel: the outer product of 1-D `taps` (or the 2-D taps), summing to 1."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class Blur(nn.Module):
    """FIR low-pass filter with explicit padding; `gain` compensates zero insertion (factor ** 2)."""

    def __init__(self, taps: Sequence[float], pad: Sequence[int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * gain, persistent=False)
        self.pad = (int(pad[0]), int(pad[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (the skip path of the ToRGB outputs)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2, persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optional fused bias + leaky ReLU (gain sqrt 2).

    `lr_mul` < 1 slows the layer down under Adam (the encoder's and mapping network's 0.01)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights N(0, 1) / lr_mul, scaled by lr_mul / sqrt(fan_in))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = lr_mul / math.sqrt(in_channels * kernel_size ** 2)
        self.lr_mul = lr_mul
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.conv2d(x, self.weight * self.scale, bias, stride=self.stride, padding=self.padding)


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, slope: float = 0.2,
                    gain: float = LRELU_GAIN) -> torch.Tensor:
    """leaky_relu(x + bias) * gain, the bias broadcast over channel dim 1 (StyleGAN2's fused op)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, slope) * gain


class BiasLeakyReLU(nn.Module):
    """Per-channel bias then leaky ReLU(0.2) times sqrt(2) (rosinality's FusedLeakyReLU)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU(0.2) times sqrt(2) without a bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2x FIR up-sampling.

    Per sample, the weight is scaled per input channel by an affine map of the style (bias 1 at
    init) and, when demodulating, renormalised per output channel to unit L2 norm; the batch runs
    as one grouped convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.padding = kernel_size // 2
        if upsample:
            p = (len(blur_taps) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.out_channels, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            out = self.blur(out.view(b, self.out_channels, *out.shape[-2:]))
        else:
            out = F.conv2d(x, weight.reshape(b * self.out_channels, c, k, k), padding=self.padding, groups=b)
        return out.view(b, self.out_channels, *out.shape[-2:])


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise times one learned scale (zero at init)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[-2:]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 (size x size) input of the synthesis network, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.input.expand(batch_size, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv, noise injection, bias + leaky ReLU: one synthesis layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample,
                                    blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to `out_channels`, added to the upsampled skip output."""

    def __init__(self, in_channels: int, style_dim: int, out_channels: int = 3, upsample: bool = True,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.upsample = Upsample(blur_taps) if upsample else None

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            if self.upsample is None:
                raise ValueError("this ToRGB was built without upsampling and takes no skip input")
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[FIR blur] + equalised conv (stride 2 when downsampling) + [bias + leaky ReLU].

    With an activation the bias lives in the activation (as in StyleGAN2), so the conv has none."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True,
                 lr_mul: float = 1.0):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_taps) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_taps, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate, lr_mul=lr_mul))
        if activate:
            layers.append(BiasLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator residual block: 3x3 conv, 3x3 conv with 2x FIR downsampling, 1x1 skip; / sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, blur_taps: Sequence[float] = (1, 3, 3, 1),
                 lr_mul: float = 1.0):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_taps=blur_taps, lr_mul=lr_mul)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_taps=blur_taps, lr_mul=lr_mul)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_taps=blur_taps, bias=False,
                              activate=False, lr_mul=lr_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)
