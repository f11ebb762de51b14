"""Parameter counts of DINAR's avatar networks at DINAR's sizes, beside a tally of the reference.

The zoo's modules are built on the meta device (no memory). The "reference" column is NOT
computed from the zoo's code: it is an arithmetic tally, layer by layer, of SamsungLabs/DINAR's
network definitions at the sizes of its configs:
- Encoder / Generator: `generators/style_gan_v2.py` with `configs/eval.yaml`
  (Encoder image_size 512, channel_multiplier 2; Generator texture_size 256, output_channels 16,
  channel_multiplier 2, ainp_path None), layers from `utils/networks_utils/sg2_modules.py`;
- Discriminator: `discriminators/style_gan_v2.py` with `configs/finetune_avatar.yaml`
  (image_size 512, channel_multiplier 2, 3 input channels, std_features off);
- Renderer: `renderers/pix2pix.py` (+ `utils/networks_utils/pix2pix_modules.py`) with
  `configs/eval.yaml` (in_channels_ntex 21, ngf 64, 3 downsamplings, 3 blocks, batch norm).
The repository states no parameter counts itself; equal numbers here mean equal tensor shapes
layer for layer; tests/modules/test_neural_renderer.py checks the same equalities.

    python benchmarks/dinar_params.py
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _sg2_width(size: int, m: int = 2) -> int:
    return {4: min(128 * m, 512), 8: min(128 * m, 512), 16: min(128 * m, 512), 32: min(128 * m, 512),
            64: 128 * m, 128: 64 * m, 256: 32 * m, 512: 16 * m, 1024: 8 * m}[size]


def _conv(i: int, o: int, k: int, bias: bool) -> int:  # EqualConv2d
    return o * i * k * k + (o if bias else 0)


def _conv_layer(i: int, o: int, k: int, act: bool = True) -> int:  # ConvLayer: bias moves into FusedLeakyReLU
    return _conv(i, o, k, False) + (o if act else 0)


def _res_block(i: int, o: int) -> int:
    return _conv_layer(i, i, 3) + _conv_layer(i, o, 3) + _conv_layer(i, o, 1, act=False)


def _linear(i: int, o: int) -> int:  # EqualLinear with bias
    return o * i + o


def reference_trunk(image_size: int, in_ch: int, out_dim: int) -> int:
    """Encoder / Discriminator of DINAR: fromRGB 1x1, ResBlocks to 4x4, final conv, two linears."""
    total, size = _conv_layer(in_ch, _sg2_width(image_size), 1), image_size
    while size > 4:
        total += _res_block(_sg2_width(size), _sg2_width(size // 2))
        size //= 2
    c4 = _sg2_width(4)
    return total + _conv_layer(c4, c4, 3) + _linear(c4 * 16, c4) + _linear(c4, out_dim)


def _mod_conv(i: int, o: int, k: int, style: int = 512) -> int:  # weight + modulation EqualLinear
    return o * i * k * k + _linear(style, i)


def reference_generator(texture_size: int = 256, out: int = 16) -> int:
    styled = lambda i, o: _mod_conv(i, o, 3) + 1 + o  # noqa: E731  noise weight + activation bias
    to_rgb = lambda i: _mod_conv(i, out, 1) + out  # noqa: E731
    c4 = _sg2_width(4)
    total, in_ch, size = c4 * 16 + styled(c4, c4) + to_rgb(c4), c4, 8
    while size <= texture_size:
        o = _sg2_width(size)
        total += styled(in_ch, o) + styled(o, o) + to_rgb(o)
        in_ch, size = o, size * 2
    return total


def reference_renderer(ntex: int = 21, ngf: int = 64, n_down: int = 3, n_blocks: int = 3, n_out: int = 16) -> int:
    cna = lambda i, o, k=3, bias=False: _conv(i, o, k, bias) + 2 * o + o  # noqa: E731  conv + BN(affine) + act bias
    pre = lambda i, o: cna(i, o) + cna(o, o)  # noqa: E731
    total = pre(ntex, ntex) + pre(2, 8) + pre(1, 4)
    total += cna(ntex + 12, ngf, 7, True)
    total += sum(cna(ngf * 2 ** i, ngf * 2 ** (i + 1), 3, True) for i in range(n_down))
    d = ngf * 2 ** n_down
    total += n_blocks * (cna(d, d, 3, True) + _conv(d, d, 3, True) + 2 * d)
    total += sum(cna(2 * ngf * 2 ** (n_down - i), ngf * 2 ** (n_down - i) // 2, 3, True) for i in range(n_down))
    total += _conv(ngf, n_out, 7, True)
    head = lambda hidden, o: 3 * n_out + hidden * cna(n_out, n_out) + _conv(n_out, o, 3, True)  # noqa: E731
    return total + head(2, 3) + head(4, 3)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    from zoo.modules.dinar import DinarAvatarNet
    from zoo.modules.neural_renderer import NeuralRenderer
    from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator

    with torch.device("meta"):
        net = DinarAvatarNet(NeuralRenderer(), StyleEncoder(), TextureGenerator()).eval()
        disc = StyleGAN2Discriminator().eval()
        image, mask = torch.empty(1, 3, 512, 512), torch.empty(1, 1, 512, 512)
        style, tex = torch.empty(1, 512), torch.empty(1, 21, 256, 256)
        uv, uv_mask = torch.empty(1, 512, 512, 2), torch.empty(1, 1, 512, 512)
        rows = [
            ("StyleEncoder (RGB+mask+noise 512 -> 512)", _count(net.encoder), reference_trunk(512, 5, 512),
             _gflops(lambda: net.encoder(image, mask, torch.empty(1, 1, 512, 512)))),
            ("TextureGenerator (4x4 -> 16x256x256)", _count(net.generator), reference_generator(),
             _gflops(lambda: net.generator(style, noise_mode="const"))),
            ("NeuralRenderer (21 ch, 512x512)", _count(net.renderer), reference_renderer(),
             _gflops(lambda: net.renderer(tex, uv, uv_mask))),
            ("DinarAvatarNet (all three)", _count(net),
             reference_trunk(512, 5, 512) + reference_generator() + reference_renderer(), None),
            ("StyleGAN2Discriminator (3 x 512x512)", _count(disc), reference_trunk(512, 3, 1),
             _gflops(lambda: disc(image))),
        ]
    header = f"| {'module':<42} | {'zoo params':>12} | {'reference tally':>15} | {'equal':>5} | {'GFLOP/call':>10} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for name, ours, ref, flops in rows:
        flops_text = f"{flops:.1f}" if flops is not None else "-"
        print(f"| {name:<42} | {ours:>12,} | {ref:>15,} | {'yes' if ours == ref else 'NO':>5} | {flops_text:>10} |")


if __name__ == "__main__":
    main()
