"""DINAR-style latent-diffusion texture inpainting against the zoo's baselines, at CPU size.

    python scripts/inpainting_results.py --baseline_ckpt <quickstart last.ckpt>

1. the small VQGAN (configs/inpainting/vqgan_small.yaml, `python -m zoo fit` in-process), unless
   $ZOO_HOME/vqgan-synthetic-rgb-small exists;
2. the small diffusion inpainter (configs/inpainting/diffusion_small.yaml): the system, optimiser,
   EMA and step count come from the config; the frozen VQGAN encodes the (deterministic,
   "none"-paired) training set once and the optimiser steps run on those latents, which is the
   computation of `LatentInpaintingSystem.training_step` without re-encoding every batch. Cached
   under --work_dir, keyed by the config and the VQGAN weights;
3. the U-Net baseline (configs/quickstart.yaml, `python -m zoo fit`), unless --baseline_ckpt;
4. on test-split identities of the "small" preset: error on the texels unseen in the input
   ("invisible") and on all atlas texels, and seconds per texture, for mean-colour fill, the U-Net,
   the VQGAN oracle (the ground truth's own latent, decoded: the diffusion's ceiling) and the
   diffusion inpainter with several samplers; VQGAN reconstruction and codebook usage.

Writes --doc (markdown; a "<!-- discussion -->" section already in the file is kept) and --figure.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from zoo.cli import ZooCLI
from zoo.datamodules import SyntheticPeopleDataModule
from zoo.metrics import texture_metrics
from zoo.pretrained import load_pretrained, resolve, zoo_home
from zoo.utils.images import grid, save_png, to_uint8

log = logging.getLogger("inpainting_results")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VQGAN_NAME = "vqgan-synthetic-rgb-small"
DISCUSSION_MARKER = "<!-- discussion -->"
SAMPLERS = [("ddim", 10), ("ddim", 20), ("ddim", 50), ("ddim", 200), ("ddpm", 1000), ("dpm++", 10), ("dpm++", 20)]


class Timer:
    """Wall and process-CPU seconds of a block (CPU time is less affected by other jobs' load)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def cached_info(path: Path, what: str) -> dict:
    """Status of a stage found in the cache, with its training time when an earlier run recorded it."""
    info = json.loads(path.read_text()) if path.is_file() else {}
    wall = info.get("wall", math.nan)
    earlier = f"; trained by an earlier run in {wall:.0f} s" if not math.isnan(wall) else ""
    return {**info, "status": f"cached ({what}{earlier})", "wall": math.nan}


def cli_args(config: Path, root: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "--trainer.logger=false", f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false", *extra]


# --- stage 1: VQGAN --------------------------------------------------------------------------
def vqgan_stage(work: Path, retrain: bool) -> dict:
    config = CONFIGS / "inpainting" / "vqgan_small.yaml"
    try:
        folder = None if retrain else resolve(VQGAN_NAME)
    except FileNotFoundError:
        folder = None
    record = work / "vqgan_small_info.json"
    if folder is not None:
        log.info("VQGAN: using the cached %s", folder)
        return cached_info(record, str(folder))
    with Timer() as t:
        cli = ZooCLI(args=["fit", *cli_args(config, work / "vqgan_small")])
    steps = int(cli.model.generator_steps)
    record.write_text(json.dumps({"wall": t.wall, "steps": steps}))
    return {"status": f"trained now ({steps} steps)", "wall": t.wall, "steps": steps}


# --- stage 2: diffusion ----------------------------------------------------------------------
def build_diffusion(work: Path):
    config = CONFIGS / "inpainting" / "diffusion_small.yaml"
    cli = ZooCLI(args=cli_args(config, work / "diffusion_small"), run=False)
    weights = resolve(cli.model.hparams.vqgan) / "model.safetensors"
    key = hashlib.sha256(config.read_bytes() + weights.read_bytes()).hexdigest()[:16]
    return cli, key


@torch.no_grad()
def encode_views(system, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    z0, cond = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        z0.append(system.encode(batch["texture"]))
        cond.append(system._condition(batch["partial"], batch["known_mask"])[1])
    return torch.cat(z0), torch.cat(cond)


def diffusion_stage(work: Path, retrain: bool, seed: int) -> tuple[object, dict]:
    cli, key = build_diffusion(work)
    system, dm = cli.model, cli.datamodule
    system.vqgan  # load the frozen first stage
    cache = work / f"diffusion_small_{key}.ckpt"
    if cache.is_file() and not retrain:
        saved = torch.load(cache, map_location="cpu", weights_only=False)
        system.load_state_dict(saved["state_dict"])
        log.info("diffusion: using the cached %s", cache)
        earlier = saved["info"]["train_wall"] + saved["info"]["encode_wall"]
        return system, {**saved["info"], "wall": math.nan,
                        "status": f"cached ({cache.name}; trained by an earlier run in {earlier:.0f} s)"}
    dm.setup("fit")
    steps, batch_size = int(cli.trainer.max_steps), dm.batch_size
    with Timer() as t_enc:
        z0, cond = encode_views(system, dm.datasets["train"], batch_size)
    optimiser = system.configure_optimizers()
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    system.denoiser.train()
    with Timer() as t:
        while len(losses) < steps:
            order = torch.randperm(len(z0), generator=generator)
            for i in range(0, len(order), batch_size):  # drop_last=False, as the datamodule
                idx = order[i:i + batch_size]
                loss = system.diffusion.training_loss(system.denoiser, z0[idx], cond=cond[idx],
                                                      loss_type=system.hparams.loss_type).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                system.ema.update(system.denoiser)
                losses.append(loss.item())
                if len(losses) % 100 == 0:
                    log.info("diffusion step %d/%d loss %.4f (%.0f s)", len(losses), steps,
                             np.mean(losses[-100:]), time.perf_counter() - t.wall)
                if len(losses) >= steps:
                    break
    system.eval()
    info = {"steps": steps, "batch_size": batch_size, "items": len(z0), "encode_wall": t_enc.wall,
            "train_wall": t.wall, "loss_first_50": float(np.mean(losses[:50])),
            "loss_last_100": float(np.mean(losses[-100:])), "latent_std": float(z0.std())}
    torch.save({"state_dict": system.state_dict(), "info": info}, cache)
    return system, {**info, "status": f"trained now ({steps} steps)", "wall": t.wall + t_enc.wall}


# --- stage 3: U-Net baseline -----------------------------------------------------------------
def baseline_stage(work: Path, ckpt: str | None, retrain: bool):
    config = CONFIGS / "quickstart.yaml"
    info = {"status": f"given --baseline_ckpt {ckpt}", "wall": math.nan}
    if ckpt is None:
        root = work / "baseline_quickstart"
        last, record = root / "checkpoints" / "last.ckpt", work / "baseline_quickstart_info.json"
        if last.is_file() and not retrain:
            info = cached_info(record, str(last))
        else:
            shutil.rmtree(root, ignore_errors=True)  # a fresh run, not versioned checkpoint names
            with Timer() as t:
                ZooCLI(args=["fit", *cli_args(config, root)])
            record.write_text(json.dumps({"wall": t.wall}))
            info = {"status": "trained now", "wall": t.wall}
        ckpt = str(last)
    cli = ZooCLI(args=cli_args(config, work / "baseline_eval"), run=False)
    system = cli.model
    system.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    if system.hparams.use_position_code:  # what TextureCompletionSystem.setup takes from a fitting trainer
        system.position_code = cli.datamodule.uv_maps()["position_code"]
    return system.eval(), info


# --- evaluation ------------------------------------------------------------------------------
def eval_items(dataset, views_per_identity: int) -> list[int]:
    picked = []
    for views in dataset.views_of:
        positions = np.unique(np.linspace(0, len(views) - 1, views_per_identity).round().astype(int))
        picked += [int(views[p]) for p in positions]
    return picked


def mean_fill(partial: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Each texture's mean known colour pasted into its unknown texels."""
    k = (known > 0.5).float()
    mean = (partial * k).sum((2, 3), keepdim=True) / k.sum((2, 3), keepdim=True).clamp_min(1.0)
    return torch.where(k > 0.5, partial, mean.expand_as(partial))


def summarise(pred: torch.Tensor, batch: dict) -> dict[str, float]:
    m = texture_metrics(pred, batch["texture"], batch["texture_mask"], batch["known_mask"])
    return {k: float(v.nanmean()) for k, v in m.items()}


@torch.no_grad()
def run_methods(batch: dict, unet, diffusion, seed: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    partial, known = batch["partial"], batch["known_mask"]
    n = partial.shape[0]
    vq = diffusion.vqgan
    methods = [("mean-colour fill", "-", lambda: mean_fill(partial, known)),
               ("U-Net baseline (quickstart)", "1 pass", lambda: unet(partial, known)),
               ("VQGAN oracle: ground truth encoded + decoded (ceiling)", "-",
                lambda: torch.where(known > 0.5, partial,
                                    vq.decode(vq.encode(batch["texture"], quantize=False), quantize=True)))]
    for sampler, steps in SAMPLERS:
        name = {"ddim": "diffusion, DDIM (eta 1)", "ddpm": "diffusion, DDPM", "dpm++": "diffusion, DPM-Solver++ 2M"}
        methods.append((name[sampler], str(steps), lambda s=sampler, k=steps: diffusion.inpaint(
            partial, known, sampler=s, steps=k, generator=torch.Generator().manual_seed(seed))))
    unet(partial[:1], known[:1])  # warm-up (first-call allocations)
    rows, outputs = [], {}
    for name, steps, fn in methods:
        with Timer() as t:
            pred = fn()
        outputs[f"{name}|{steps}"] = pred
        rows.append({"method": name, "steps": steps, **summarise(pred, batch),
                     "wall_per_texture": t.wall / n, "cpu_per_texture": t.cpu / n})
        log.info("%s %s: L1 invisible %.4f, %.2f s/texture", name, steps, rows[-1]["l1/invisible"], t.wall / n)
    return rows, outputs


@torch.no_grad()
def denoising_gap(system, dm, timesteps=(10, 100, 300, 600, 999)) -> list[dict]:
    """The training loss of the EMA denoiser at fixed timesteps on every training view and every
    held-out view (one fixed noise draw): a large gap at low noise levels means memorised textures."""
    data = {split: encode_views(system, dm.datasets[split], 32) for split in ("train", "test")}
    rows = []
    with system.ema.swap_into(system.denoiser):
        system.denoiser.eval()
        for t in timesteps:
            row = {"t": t}
            for split, (z, c) in data.items():
                row[split] = float(system.diffusion.training_loss(
                    system.denoiser, z, cond=c, t=torch.full((len(z),), t), loss_type=system.hparams.loss_type,
                    generator=torch.Generator().manual_seed(0)).loss)
            rows.append(row)
    return rows


@torch.no_grad()
def seed_spread(batch: dict, diffusion, seeds: int) -> list[dict]:
    """Invisible-texel L1 / PSNR of the same inputs sampled with different seeds: how much of a
    difference between two diffusion rows one seed can explain."""
    rows = []
    for sampler, steps in [("ddim", 50), ("dpm++", 20)]:
        values = []
        for seed in range(seeds):
            pred = diffusion.inpaint(batch["partial"], batch["known_mask"], sampler=sampler, steps=steps,
                                     generator=torch.Generator().manual_seed(seed))
            values.append(summarise(pred, batch))
        for metric in ("l1/invisible", "psnr/invisible"):
            v = torch.tensor([x[metric] for x in values], dtype=torch.float64)
            rows.append({"sampler": f"{sampler} {steps}", "metric": metric, "mean": float(v.mean()),
                         "std": float(v.std()), "min": float(v.min()), "max": float(v.max())})
    return rows


def replaced_cells(diffusion, known: torch.Tensor, atlas: torch.Tensor) -> tuple[float, float]:
    """Fraction of atlas latent cells whose texels are all known, before / after the 3x3 erosion:
    the part of the latent that known-region replacement actually pins during sampling."""
    size = [side // diffusion.vqgan.downsampling for side in known.shape[-2:]]
    full = torch.nn.functional.interpolate(known, size=size, mode="area") > 0.999
    eroded = diffusion.diffusion.replacement_mask(full.float(), erode=True)
    cells = (torch.nn.functional.interpolate(atlas, size=size, mode="area") > 0).float().sum()
    return float(full.sum() / cells), float(eroded.sum() / cells)


@torch.no_grad()
def vqgan_quality(vq, textures: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    out = vq(textures)
    m = texture_metrics(out.reconstruction, textures, mask)
    counts = torch.bincount(out.indices.flatten(), minlength=vq.quantizer.num_codes).double()
    probs = counts / counts.sum()
    nz = probs[probs > 0]
    return {"textures": textures.shape[0], "l1": float(m["l1/all"].mean()), "psnr": float(m["psnr/all"].mean()),
            "ssim": float(m["ssim/all"].mean()), "positions": int(counts.sum()),
            "codes_used": int((counts > 0).sum()), "usage": float((counts > 0).float().mean()),
            "perplexity": float(torch.exp(-(nz * nz.log()).sum()))}


def unique_textures(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    textures = torch.from_numpy(np.array(dataset.textures)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return textures, dataset.texture_mask[None].expand(len(textures), -1, -1, -1)


# --- figure and document ---------------------------------------------------------------------
def label(text: str, width: int, height: int = 14) -> torch.Tensor:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(img).text((2, 1), text, fill=(0, 0, 0))
    return torch.from_numpy(np.array(img))


def figure(batch: dict, outputs: dict[str, torch.Tensor], rows: list[int], path: Path, scale: int = 2) -> None:
    columns = [("partial input", batch["partial"]), ("mean fill", outputs["mean-colour fill|-"]),
               ("U-Net", outputs["U-Net baseline (quickstart)|1 pass"]),
               ("DDIM 50", outputs["diffusion, DDIM (eta 1)|50"]),
               ("DPM++ 20", outputs["diffusion, DPM-Solver++ 2M|20"]),
               ("DDIM 200", outputs["diffusion, DDIM (eta 1)|200"]),
               ("VQGAN oracle", outputs["VQGAN oracle: ground truth encoded + decoded (ceiling)|-"]),
               ("ground truth", batch["texture"])]
    size = batch["texture"].shape[-1] * scale
    pics = [[label(name, size) for name, _ in columns]]
    for b in rows:
        pics.append([to_uint8(t[b]).repeat_interleave(scale, 0).repeat_interleave(scale, 1) for _, t in columns])
    save_png(grid(pics), path)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores shared with other jobs, torch {torch.__version__} "
            f"on CPU with torch.set_num_threads(1), Python {platform.python_version()}")


def fmt(v, digits: int = 4) -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def write_doc(path: Path, ctx: dict) -> None:
    old = path.read_text() if path.is_file() else ""
    discussion = old[old.index(DISCUSSION_MARKER):] if DISCUSSION_MARKER in old else DISCUSSION_MARKER + "\n"
    d, v, b = ctx["diffusion"], ctx["vqgan"], ctx["baseline"]
    lines = [
        "# Texture inpainting: VQGAN + latent diffusion (DINAR section 3.3) at CPU size",
        "",
        "Generated by `scripts/inpainting_results.py`; every number below comes from one run of it.",
        "",
        f"- Command: `{ctx['command']}`",
        f"- Machine: {ctx['machine']}; load average {ctx['load_start']} at the start, {ctx['load_end']} at the end.",
        f"- Date: {ctx['date']}; total run time {ctx['total_wall']:.0f} s.",
        f"- Data: synthetic people, preset \"small\" (64x64 RGB UV textures; 38 train / 5 test identities, "
        f"6 views each). Evaluated on {ctx['n_eval']} test items: {ctx['views']} views of each of the "
        f"{ctx['n_ids']} test identities (never seen in training); the input is one view scattered into UV "
        f"({100 * ctx['known_fraction']:.1f}% of the atlas texels known on average).",
        "",
        "## Stages",
        "",
        "| stage | config | status | wall s |",
        "|---|---|---|---|",
        f"| VQGAN | configs/inpainting/vqgan_small.yaml | {v['status']} | {fmt(v['wall'], 0)} |",
        f"| diffusion | configs/inpainting/diffusion_small.yaml | {d['status']}, batch {d.get('batch_size')}, "
        f"loss {d.get('loss_first_50', math.nan):.3f} (first 50 steps) -> {d.get('loss_last_100', math.nan):.3f} "
        f"(last 100) | {fmt(d['wall'], 0)} |",
        f"| U-Net baseline | configs/quickstart.yaml | {b['status']} | {fmt(b['wall'], 0)} |",
        f"| evaluation | - | all methods below, one after the other | {ctx['eval_wall']:.0f} |",
        "",
        f"Diffusion latents: 6 x 16 x 16, pre-quantisation, std {d.get('latent_std', math.nan):.2f} over the "
        "training set (`latent_scale` 1). Samples use the EMA weights, known-region replacement with the "
        "3x3-eroded latent mask, VQ decoding and pasting of the known texels (DINAR eq. 6). On these inputs "
        f"{100 * ctx['replaced_cells'][0]:.1f}% of the atlas latent cells have all their texels known and "
        f"{100 * ctx['replaced_cells'][1]:.2f}% survive the erosion: one view scattered into a 64 px UV map "
        "is too sparse for replacement to pin the latent, so the condition channels carry the input.",
        "",
        "## Inpainting quality on held-out identities",
        "",
        "Texels unseen in the input (\"invisible\": atlas and not known) and all atlas texels; textures in "
        "[0, 1] for the metrics (`zoo.metrics.texture_metrics`; L1 lower is better, PSNR dB / SSIM higher). "
        f"Time: the method on the whole batch of {ctx['n_eval']} textures (VQGAN encode + sampling + decode for "
        "the diffusion), divided by the batch size; wall seconds on the shared machine and process CPU seconds "
        "(one thread). Same sampler seed for every diffusion row.",
        "",
        "| method | steps | L1 invisible | PSNR invisible | SSIM invisible | L1 all | PSNR all | SSIM all "
        "| wall s / texture | CPU s / texture |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ctx["rows"]:
        lines.append(f"| {r['method']} | {r['steps']} | {r['l1/invisible']:.4f} | {r['psnr/invisible']:.2f} | "
                     f"{r['ssim/invisible']:.4f} | {r['l1/all']:.4f} | {r['psnr/all']:.2f} | {r['ssim/all']:.4f} | "
                     f"{r['wall_per_texture']:.3f} | {r['cpu_per_texture']:.3f} |")
    lines += ["", f"Spread over sampler seeds 0..{ctx['spread_seeds'] - 1} (same inputs and models; the table above "
              "uses seed 0):", "", "| sampler | metric | mean | std | min | max |", "|---|---|---|---|---|---|"]
    for r in ctx["spread"]:
        lines.append(f"| {r['sampler']} | {r['metric']} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | "
                     f"{r['max']:.4f} |")
    lines += ["", "Denoising loss of the diffusion (its training objective, epsilon MSE, EMA weights) at fixed "
              f"timesteps on all {ctx['n_train_views']} training views and all {ctx['n_test_views']} held-out "
              "views, one fixed noise draw:", "", "| t | training views | held-out views | held-out / training |",
              "|---|---|---|---|"]
    for r in ctx["gap"]:
        lines.append(f"| {r['t']} | {r['train']:.4f} | {r['test']:.4f} | {r['test'] / r['train']:.1f} |")
    lines += ["", "## VQGAN reconstruction and codebook usage", "",
              "All atlas texels of each distinct texture (one per identity); codebook statistics over all "
              "latent positions of those textures (usage = fraction of the codes used at least once, "
              "perplexity = exp of the code-frequency entropy).", "",
              "| textures | count | L1 | PSNR | SSIM | latent positions | codes used | usage | perplexity |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, q in ctx["vq_quality"].items():
        lines.append(f"| {name} | {q['textures']} | {q['l1']:.4f} | {q['psnr']:.2f} | {q['ssim']:.4f} | "
                     f"{q['positions']} | {q['codes_used']} / {ctx['num_codes']} | {q['usage']:.3f} | "
                     f"{q['perplexity']:.1f} |")
    lines += ["", f"![partial input, fills and samples, VQGAN oracle, ground truth]({ctx['figure_rel']})", "",
              "Figure (`docs/inpainting_figure.png`): one test item per held-out identity; columns: partial "
              "input, mean-colour fill, U-Net baseline, diffusion DDIM 50, DPM-Solver++ 20, DDIM 200, "
              "VQGAN oracle, ground truth.", ""]
    path.write_text("\n".join(lines) + "\n" + discussion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline_ckpt", default=None, help="checkpoint of a configs/quickstart.yaml run")
    parser.add_argument("--work_dir", default=None, help="caches and runs (default $ZOO_HOME/inpainting_results)")
    parser.add_argument("--views_per_identity", type=int, default=3, help="test views per test identity")
    parser.add_argument("--spread_seeds", type=int, default=5, help="seeds of the sample-spread table")
    parser.add_argument("--retrain", action="store_true", help="train every stage even if cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", default=str(ROOT / "docs" / "inpainting_results.md"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "inpainting_figure.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("WANDB_SILENT", "true")
    work = Path(args.work_dir).expanduser() if args.work_dir else zoo_home() / "inpainting_results"
    work.mkdir(parents=True, exist_ok=True)
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    start = time.perf_counter()

    vqgan_info = vqgan_stage(work, args.retrain)
    diffusion, diffusion_info = diffusion_stage(work, args.retrain, args.seed)
    unet, baseline_info = baseline_stage(work, args.baseline_ckpt, args.retrain)

    dm = SyntheticPeopleDataModule(preset="small", pairs="none", progress=False)
    dm.setup("test")
    test = dm.datasets["test"]
    picked = eval_items(test, args.views_per_identity)
    batch = default_collate([test[i] for i in picked])
    with Timer() as t_eval:
        rows, outputs = run_methods(batch, unet, diffusion, args.seed)
        spread = seed_spread(batch, diffusion, args.spread_seeds)
        gap = denoising_gap(diffusion, dm)
        vq = load_pretrained(diffusion.hparams.vqgan).eval()
        vq_quality = {"held-out (test identities)": vqgan_quality(vq, *unique_textures(test)),
                      "training identities": vqgan_quality(vq, *unique_textures(dm.datasets["train"]))}
    first_view = [i for i, idx in enumerate(picked) if idx == test.views_of[int(test.view_person[idx])][0]]
    figure(batch, outputs, first_view, Path(args.figure))
    atlas = batch["texture_mask"].sum((1, 2, 3))
    known_fraction = float((batch["known_mask"].sum((1, 2, 3)) / atlas).mean())
    cells = replaced_cells(diffusion, batch["known_mask"], batch["texture_mask"])
    doc = Path(args.doc)
    write_doc(doc, {
        "command": shlex.join(["python", *sys.argv]), "machine": machine(), "load_start": load_start,
        "load_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "total_wall": time.perf_counter() - start,
        "n_eval": len(picked), "views": args.views_per_identity, "n_ids": test.num_identities,
        "known_fraction": known_fraction, "vqgan": vqgan_info, "diffusion": diffusion_info,
        "baseline": baseline_info, "eval_wall": t_eval.wall, "rows": rows, "vq_quality": vq_quality,
        "num_codes": vq.quantizer.num_codes, "spread": spread, "spread_seeds": args.spread_seeds,
        "replaced_cells": cells, "gap": gap, "n_train_views": len(dm.datasets["train"]),
        "n_test_views": len(test),
        "figure_rel": os.path.relpath(Path(args.figure).resolve(), doc.resolve().parent),
    })
    log.info("wrote %s and %s in %.0f s", doc, args.figure, time.perf_counter() - start)


if __name__ == "__main__":
    main()
