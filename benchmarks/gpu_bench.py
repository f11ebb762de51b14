"""Device benchmarks run by benchmarks/gpu.sh, one part per call, each printing a markdown table.

    python benchmarks/gpu_bench.py refinetex|diffusion|dinar [--device cuda] [--dry-run]

- refinetex: RefineTex training throughput at the paper's size (configs/refinetex/synthetic.yaml:
  Texformer width 128, image 128x64, UV 128x128, batch 16, all losses; a randomly initialised
  ReID network of configs/reid/synthetic.yaml), fp32 and bf16 autocast: samples/s, peak memory.
- diffusion: DINAR's denoiser (configs/inpainting/diffusion_dinar.yaml, ~390 M parameters) at
  its latent size 64x64: denoiser steps/s at batch 1; seconds per avatar (one 256x256 texture,
  VQGAN of configs/inpainting/vqgan_dinar.yaml) with DDIM 200 (DINAR) and DPM-Solver++ 20.
- dinar: DINAR stage 1 (NeuralAvatarSystem) training step at the paper's sizes (512x512 images,
  256x256 neural texture, StyleGAN2 encoder / generator / discriminator at their defaults,
  pix2pixHD renderer 64 channels, batch 4) under a Lightning Trainer; the perceptual term is off
  (LPIPS-VGG weights are not on the device machine), so the step is that much cheaper.

All networks have random weights: these are speed numbers, not quality. Times are wall clock
with the device synchronised. `--dry-run` runs the same code on the CPU at tiny sizes (a check
that the script works, not a measurement).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def config_args(path: str, *keys: str) -> dict:
    """init_args found under `keys` of a YAML config."""
    node = yaml.safe_load((ROOT / path).read_text())
    for key in keys:
        node = node[key]
    return dict(node["init_args"])


def build(spec):
    """Instantiate `{"class_path", "init_args"}` mappings, nested ones first."""
    if isinstance(spec, dict) and "class_path" in spec:
        args = {k: build(v) for k, v in (spec.get("init_args") or {}).items()}
        module, name = spec["class_path"].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(**args)
    return spec


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if device.startswith("cuda") else "n/a (CPU)"


def reset_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed(fn, steps: int, warmup: int, device: str) -> float:
    """Seconds per call of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


# ---------------------------------------------------------------- RefineTex
def refinetex(device: str, dry: bool) -> None:
    from tests.systems.refinetex_batches import random_refinetex_batch, tiny_uv_maps  # PYTHONPATH=. (gpu.sh)
    from zoo.systems.refinetex import RefineTexSystem

    args = config_args("configs/refinetex/synthetic.yaml", "model")
    reid_args = config_args("configs/reid/synthetic.yaml", "model", "init_args", "network")
    net = args["network"]["init_args"]
    batch, (H, W), steps, warmup = 16, (128, 64), 10, 3
    if dry:
        batch, (H, W), steps, warmup = 2, (32, 16), 1, 1
        net["backbone"]["init_args"].update(feat_dim=8, num_heads=2, uv_size=[16, 16])
        net["refiner"]["init_args"].update(hidden_channels=8, feature_channels=8)
        args["uncertainty"]["init_args"].update(width=8)
        reid_args.update(widths=[4, 4, 8, 8], embedding_dim=8)
    T = net["backbone"]["init_args"]["uv_size"][0]
    reid_args["input_size"] = [H, W]
    data = random_refinetex_batch(batch, (H, W), T, torch.Generator().manual_seed(0))
    data = {k: v.to(device) for k, v in data.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build({"class_path": "zoo.modules.reid.SmallReID", "init_args": reid_args}).save_pretrained(Path(tmp) / "reid")
        for precision in ("fp32", "bf16 autocast"):
            torch.manual_seed(0)
            system = RefineTexSystem(**{k: build(v) for k, v in args.items()} | {"reid": str(Path(tmp) / "reid")})
            system.configure_data(tiny_uv_maps(T))
            system.load_reid()
            system = system.to(device).train()
            optimizer = system.configure_optimizers()
            reset_memory(device)

            def step(system=system, optimizer=optimizer, precision=precision):
                with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision != "fp32"):
                    loss, _ = system.compute_losses(data, 0)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            seconds = timed(step, steps, warmup, device)
            rows.append(f"| {precision} | {batch} | {1000 * seconds:.1f} | {batch / seconds:.1f} | {peak_memory(device)} |")
            del system, optimizer
    print(f"RefineTex training step (full model: Texformer + deformable refiner + uncertainty, all losses), "
          f"image {H}x{W}, UV {T}x{T}, batch {batch}, {steps} timed steps after {warmup}")
    print()
    print("| precision | batch | ms/step | samples/s | peak memory GiB |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


# ---------------------------------------------------------------- diffusion
def diffusion(device: str, dry: bool) -> None:
    from zoo.systems.latent_inpainting import LatentInpaintingSystem

    args = config_args("configs/inpainting/diffusion_dinar.yaml", "model")
    vq_args = config_args("configs/inpainting/vqgan_dinar.yaml", "model", "init_args", "vqgan")
    unet = dict(args.pop("denoiser").get("init_args") or {})  # the configs give only what differs from the defaults
    samplers, steps = (("ddim", 200), ("dpm++", 20)), 20
    if dry:
        samplers, steps = (("ddim", 4), ("dpm++", 2)), 2
        unet.update(base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, attention_resolutions=[4],
                    resolution=8, num_heads=2, norm_groups=4)
        vq_args.update(base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=16, num_codes=16,
                       norm_groups=4)
    torch.manual_seed(0)
    vqgan = build({"class_path": "zoo.modules.vqgan.VQGAN", "init_args": vq_args})
    denoiser = build({"class_path": "zoo.modules.diffusion_unet.DiffusionUNet", "init_args": unet})
    args.pop("vqgan")
    system = LatentInpaintingSystem(denoiser, vqgan, **args).to(device).eval()
    size, latent = vqgan.config["init_args"]["resolution"], denoiser.config["init_args"]["resolution"]
    x = torch.randn(1, denoiser.in_channels, latent, latent, device=device)
    t = torch.full((1,), 500, device=device, dtype=torch.long)
    with torch.no_grad():
        per_step = timed(lambda: system.denoiser(x, t), steps, 2, device)
    rows = [(f"| denoiser forward, batch 1, {latent}x{latent} latent | {1 / per_step:.1f} steps/s | "
             f"{1000 * per_step:.1f} ms/step |")]
    partial = torch.rand(1, 3, size, size, device=device) * 2 - 1
    known = torch.zeros(1, 1, size, size, device=device)
    known[..., : size // 2] = 1
    for sampler, n in samplers:
        def run(sampler=sampler, n=n):
            with torch.no_grad():
                system.inpaint(partial, known, sampler=sampler, steps=n, generator=torch.Generator(device).manual_seed(0))
        seconds = timed(run, 1, 1, device)
        rows.append(f"| {sampler} {n} steps, one {size}x{size} avatar texture | {seconds:.2f} s/avatar | |")
    print(f"DINAR diffusion: denoiser {sum(p.numel() for p in denoiser.parameters()) / 1e6:.0f} M parameters; "
          f"sampling includes the VQGAN encode / decode")
    print()
    print("| what | speed | |")
    print("|---|---|---|")
    print("\n".join(rows))


# ---------------------------------------------------------------- DINAR stage 1
class _StepTimer(pl.Callback):
    def __init__(self, device: str):
        self.device, self.times, self._last = device, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sync(self.device)
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def dinar(device: str, dry: bool) -> None:
    from zoo.modules.dinar import DinarAvatarNet
    from zoo.systems.neural_avatar import NeuralAvatarSystem

    image, texture, batch, steps = 512, 256, 4, 8
    encoder = {"image_size": image, "style_dim": 512}
    generator = {"texture_size": texture, "out_channels": 16, "style_dim": 512}
    renderer = {"texture_channels": 21, "base_channels": 64, "n_downsampling": 3, "n_blocks": 3}
    disc = {"image_size": image}
    crops = {"crop_size": 256, "face_crop_size": 128}
    if dry:
        image, texture, batch, steps = 32, 16, 2, 2
        small = {"channel_multiplier": 1, "base_channels": 4, "max_channels": 8}
        encoder, generator = {"image_size": image, "style_dim": 8, **small}, {"texture_size": texture, "out_channels": 4,
                                                                              "style_dim": 8, **small}
        renderer = {"texture_channels": 9, "base_channels": 4, "n_downsampling": 2, "n_blocks": 1, "uv_features": 2,
                    "mask_features": 2, "features": 4}
        disc, crops = {"image_size": image, **small}, {"crop_size": 16, "face_crop_size": 8}
    torch.manual_seed(0)
    network = build({"class_path": "zoo.modules.dinar.DinarAvatarNet", "init_args": {  # parts built first
        "encoder": {"class_path": "zoo.modules.stylegan2.StyleEncoder", "init_args": encoder},
        "generator": {"class_path": "zoo.modules.stylegan2.TextureGenerator", "init_args": generator},
        "renderer": {"class_path": "zoo.modules.neural_renderer.NeuralRenderer", "init_args": renderer},
        "use_rgb_channels": True}})
    assert isinstance(network, DinarAvatarNet)
    discriminator = build({"class_path": "zoo.modules.stylegan2.StyleGAN2Discriminator", "init_args": disc})
    system = NeuralAvatarSystem(network, discriminator, perceptual="none", texture_size=texture,
                                image_log_every_n_steps=0, **crops)
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(steps + 2):
        item = {}
        for p in ("source_", "target_"):
            item[p + "image"] = torch.rand(batch, 3, image, image, generator=g) * 2 - 1
            mask = torch.zeros(batch, 1, image, image)
            mask[..., image // 8: -image // 8, image // 4: -image // 4] = 1
            item[p + "mask"] = mask
            item[p + "uv"] = torch.rand(batch, image, image, 2, generator=g) * 1.8 - 0.9
        items.append(item)
    timer = _StepTimer(device)
    trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, max_steps=2 * len(items),
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    reset_memory(device)
    trainer.fit(system, train_dataloaders=torch.utils.data.DataLoader(items, batch_size=None))
    times = timer.times[1:] or timer.times  # the first interval still holds warm-up work
    seconds = sum(times) / len(times)
    print(f"DINAR stage 1 (G step + D step, lazy R1 every 16), images {image}x{image}, texture {texture}x{texture}, "
          f"batch {batch}, perceptual term off; mean of {len(times)} steps")
    print()
    print("| ms/step | samples/s | peak memory GiB |")
    print("|---|---|---|")
    print(f"| {1000 * seconds:.0f} | {batch / seconds:.1f} | {peak_memory(device)} |")


PARTS = {"refinetex": refinetex, "diffusion": diffusion, "dinar": dinar}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", choices=tuple(PARTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks that the part runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    device = "cpu" if args.dry_run else args.device
    if device == "cpu":
        torch.set_num_threads(1)
    failed = []
    for part in args.parts:  # one failing part does not hide the others' numbers
        try:
            PARTS[part](device, args.dry_run)
        except Exception as error:  # noqa: BLE001 - reported in the table, and in the exit status
            failed.append(part)
            print(f"{part}: FAILED: {type(error).__name__}: {error}")
        print()
    if failed:
        raise SystemExit(f"failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
