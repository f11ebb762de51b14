"""Seconds per stage of DINAR's one-image inference (`zoo.inference.dinar_pipeline`) at CPU size.

Stage 1 is the CPU avatar network (configs/dinar/avatar_cpu.yaml: 64 px input, 21 x 64 x 64
texture), trained if `--avatar` names its export (e.g. dinar-avatar-cpu), else random; stage 2 is
a VQGAN (21 channels, /4 latents) and a denoiser of configs/inpainting/*_small.yaml's widths,
random unless `--vqgan` / `--denoiser` name saved ones. Timings do not depend on the weights.
The input is a synthetic view (a UV grid over the image centre). The fine-tuning runs without
its perceptual term unless LPIPS(vgg) is on disk (the zoo never downloads it).

    python benchmarks/dinar_one_image.py [--avatar NAME] [--steps 200] [--finetune-steps 64]
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from zoo.inference.dinar_pipeline import DinarOneImageAvatar
from zoo.losses.avatar import PerceptualDistance
from zoo.metrics.lpips import load_lpips_vgg, lpips_status
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained

S, T = 64, 64


def networks(args) -> dict:
    torch.manual_seed(0)
    sg2 = dict(channel_multiplier=1, base_channels=32, max_channels=64)
    avatar = load_pretrained(args.avatar) if args.avatar else DinarAvatarNet(
        NeuralRenderer(texture_channels=21, base_channels=16, n_downsampling=3, n_blocks=2),
        StyleEncoder(image_size=S, style_dim=128, **sg2), TextureGenerator(texture_size=T, out_channels=16, style_dim=128, **sg2))
    vqgan = load_pretrained(args.vqgan) if args.vqgan else VQGAN(
        in_channels=21, base_channels=16, channel_multipliers=[1, 2, 4], num_res_blocks=1, resolution=T,
        latent_channels=6, num_codes=512, code_dim=6)
    denoiser = load_pretrained(args.denoiser) if args.denoiser else DiffusionUNet(
        in_channels=13, out_channels=6, base_channels=32, channel_multipliers=[1, 2, 2], num_res_blocks=1,
        attention_resolutions=[8, 4], resolution=T // 4, num_heads=4, dropout=0.0)
    return {"avatar": avatar, "vqgan": vqgan, "denoiser": denoiser,
            "discriminator": StyleGAN2Discriminator(image_size=S, **sg2)}


def view(batch: int = 1):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, S, S, generator=g) * 2 - 1
    person = torch.zeros(batch, 1, S, S)
    person[..., 6:58, 20:44] = 1.0
    ys, xs = torch.meshgrid(torch.linspace(-0.95, 0.95, 52), torch.linspace(-0.45, 0.45, 24), indexing="ij")
    uv = torch.full((batch, S, S, 2), -2.0)
    uv[:, 6:58, 20:44] = torch.stack([xs, ys], dim=-1)
    cosines = torch.linspace(1.0, -1.0, T).view(1, 1, 1, T).expand(batch, 1, T, T).contiguous()
    return torch.where(person > 0.5, image, -1.0), person, uv, cosines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar"), parser.add_argument("--vqgan"), parser.add_argument("--denoiser")
    parser.add_argument("--steps", type=int, default=200, help="DDIM steps (DINAR: 200)")
    parser.add_argument("--finetune-steps", type=int, default=64, help="RGB fine-tuning steps (DINAR: 64)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lpips_ok = lpips_status(net="vgg") == "ok"
    finetune = {"crop_size": S // 2} if lpips_ok else {"crop_size": S // 2, "perceptual_weight": 0.0}
    pipe = DinarOneImageAvatar(**networks(args), sampling_steps=args.steps, rgb_erode=3,
                               finetune_steps=args.finetune_steps, finetune=finetune).eval()
    perceptual = PerceptualDistance(load_lpips_vgg(), "lpips") if lpips_ok else None
    out = pipe(*view(), perceptual=perceptual, generator=torch.Generator().manual_seed(0))
    sys.stdout.write("| stage | seconds |\n|---|---|\n")
    for stage, seconds in out.seconds.items():
        sys.stdout.write(f"| {stage} | {seconds:.2f} |\n")
    sys.stdout.write(f"| total | {sum(out.seconds.values()):.2f} |\n")
    sys.stdout.write(f"(torch threads {torch.get_num_threads()}, DDIM {args.steps} steps, fine-tuning "
                     f"{args.finetune_steps} steps, perceptual {'LPIPS(vgg)' if lpips_ok else 'off (LPIPS(vgg) not on disk)'}, "
                     f"stage 1 {'trained: ' + args.avatar if args.avatar else 'random'})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
