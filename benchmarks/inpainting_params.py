"""Parameter counts (and FLOPs) of DINAR's inpainting presets, built on the meta device.

Nothing is allocated: the ~390 M-parameter U-Net costs no memory here. FLOPs come from
torch.utils.flop_counter on meta tensors (a multiply-add counts as 2 FLOPs).

    python benchmarks/inpainting_params.py
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.vqgan import VQGAN, count_parameters


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    with torch.device("meta"):
        vqgan = VQGAN().eval()
        unet = DiffusionUNet().eval()
        texture = torch.empty(1, 21, 256, 256)
        latent_in = torch.empty(1, 13, 64, 64)
        t = torch.zeros(1, dtype=torch.long)
        rows = [
            ("VQGAN (21x256x256 -> 6x64x64, 8192 codes)", count_parameters(vqgan),
             gflops(lambda: vqgan(texture)), "-", "-"),
            ("  encoder + quant_conv", count_parameters(vqgan.encoder) + count_parameters(vqgan.quant_conv),
             gflops(lambda: vqgan.encode(texture, quantize=False)), "-", "-"),
            ("  codebook", count_parameters(vqgan.quantizer), None, "8192 x 6 = 49152", "-"),
            ("  post_quant_conv + decoder", count_parameters(vqgan.decoder) + count_parameters(vqgan.post_quant_conv),
             gflops(lambda: vqgan.decode(torch.empty(1, 6, 64, 64))), "-", "-"),
            ("Denoiser U-Net (13 -> 6, base 256, x(1,2,3,4))", count_parameters(unet),
             gflops(lambda: unet(latent_in, t)), "~390 M", "~300 GFLOP"),
        ]
    header = (f"| {'module':<48} | {'parameters':>14} | {'GFLOP / call':>12} | {'notes: params':>16} "
              f"| {'notes: GFLOP':>12} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, params, flops, note_p, note_f in rows:
        flops_text = f"{flops:.1f}" if flops is not None else "-"
        print(f"| {name:<48} | {params / 1e6:>12.2f} M | {flops_text:>12} | {note_p:>16} | {note_f:>12} |")


if __name__ == "__main__":
    main()
