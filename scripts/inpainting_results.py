"""DINAR-style latent-diffusion texture inpainting against the zoo's baselines, at CPU size.

    ZOO_HOME=<cache> python scripts/inpainting_results.py

1. the small VQGAN (configs/inpainting/vqgan_small.yaml, `python -m zoo fit` in-process), unless
   $ZOO_HOME/vqgan-synthetic-rgb-small exists: RGB + known + gap-fill mask channels, trained on
   complete and gap-filled partial textures;
2. the small diffusion inpainter (configs/inpainting/diffusion_small.yaml): the system, optimiser,
   EMA and step count come from the config; the frozen VQGAN encodes the (deterministic,
   "none"-paired) training set once and the optimiser steps run on those latents, which is the
   computation of `LatentInpaintingSystem.training_step` without re-encoding every batch. Cached
   under --work_dir, keyed by the config and the VQGAN weights; an interrupted run resumes;
3. the U-Net baseline (configs/quickstart.yaml, `python -m zoo fit`) on the same identities, unless
   --baseline_ckpt;
4. on test-split identities: error on the texels unseen in the input ("invisible") and on all atlas
   texels, and seconds per texture, for mean-colour fill (with and without the gap fill), the U-Net,
   the VQGAN oracle (the ground truth's own latent, decoded: the diffusion's ceiling) and the
   diffusion inpainter with several samplers and with another identity's / a zero condition; what
   the condition carries (kept latent cells, decoded partial latents); held-out vs training
   denoising loss; VQGAN reconstruction and codebook usage; beside them the numbers of the run
   before issue 7's fixes (--previous_commit) and of the previous run of this script
   (--previous_run_commit), read from docs/inpainting_results.md at those commits.

Writes --doc (markdown; a "<!-- discussion -->" section already in the file is kept) and --figure.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from latent_diffusion_loop import train_on_latents  # scripts/, beside this file
from torch.utils.data import DataLoader, default_collate

from zoo.cli import ZooCLI
from zoo.metrics import texture_metrics
from zoo.pretrained import resolve, zoo_home
from zoo.render import soft_paste_mask, texture_with_masks
from zoo.utils.images import grid, save_png, to_uint8
from zoo.utils.runs import Timer, machine_description

log = logging.getLogger("inpainting_results")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VQGAN_NAME = "vqgan-synthetic-rgb-small"
DISCUSSION_MARKER = "<!-- discussion -->"
# DDPM with all 1000 steps is DINAR's ancestral sampler, the reference of the paper's sampler comparison
# (about 5x the DDIM 200 row's time). The 10-step DPM-Solver++ row of the pre-fix run is left out.
SAMPLERS = [("ddim", 10), ("ddim", 20), ("ddim", 50), ("ddim", 200), ("ddpm", 1000), ("dpm++", 20)]
PREVIOUS_COMMIT = "a4f8333"  # docs/inpainting_results.md before issue 7's fixes
PREVIOUS_RUN_COMMIT = "27e40f9"  # docs/inpainting_results.md of the previous run of this script (soft paste)


def code_state() -> str:
    """The checkout's commit, and its uncommitted changes under zoo/, configs/, scripts/ if any."""
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=True).stdout  # noqa: E731
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "zoo", "configs", "scripts").splitlines()]
    return git("rev-parse", "HEAD").strip() + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


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
    """Latents of the complete textures and the conditions (partial latent | nearest-resized mask)."""
    z0, cond = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        complete, partial, known = system.vqgan_inputs(batch)
        z0.append(system.encode(complete))
        cond.append(system._condition(partial, known)[1])
    return torch.cat(z0), torch.cat(cond)


def diffusion_stage(work: Path, retrain: bool, seed: int, save_every: int = 250) -> tuple[object, object, dict]:
    """Train (or load) the diffusion; an interrupted run resumes from the last `save_every` steps."""
    cli, key = build_diffusion(work)
    system, dm = cli.model, cli.datamodule
    system.vqgan  # load the frozen first stage
    dm.setup("fit")
    cache, resume = work / f"diffusion_small_{key}.ckpt", work / f"diffusion_small_{key}.resume.ckpt"
    if cache.is_file() and not retrain:
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        system.load_state_dict(saved["state_dict"])
        log.info("diffusion: using the cached %s", cache)
        earlier = saved["info"]["train_wall"] + saved["info"]["encode_wall"]
        return system, dm, {**saved["info"], "wall": math.nan,
                            "status": f"cached ({cache.name}; trained by an earlier run in {earlier:.0f} s)"}
    if retrain:
        resume.unlink(missing_ok=True)
    steps, batch_size = int(cli.trainer.max_steps), dm.batch_size
    with Timer() as t_enc:
        z0, cond = encode_views(system, dm.datasets["train"], 64)
    history, train_wall, resumed = train_on_latents(
        system, z0, cond, steps=steps, batch_size=batch_size, seed=seed, resume=resume,
        loss_type=system.hparams.loss_type, save_every=save_every, log_every=100)
    system.eval()
    info = {"steps": steps, "batch_size": batch_size, "items": len(z0), "encode_wall": t_enc.wall,
            "train_wall": train_wall, "loss_first_50": float(np.mean(history[:50])),
            "loss_last_100": float(np.mean(history[-100:])), "latent_std": float(z0.std()),
            "resumed": resumed}
    torch.save({"state_dict": system.state_dict(), "info": info}, cache)
    resume.unlink(missing_ok=True)
    return system, dm, {**info, "status": f"trained now ({steps} steps{', resumed' if resumed else ''})",
                        "wall": train_wall + t_enc.wall}


# --- stage 3: U-Net baseline -----------------------------------------------------------------
def baseline_stage(work: Path, ckpt: str | None, retrain: bool, identities: int, epochs: int):
    """The quick-start U-Net, trained on the same identities as the diffusion for `epochs` epochs."""
    config = CONFIGS / "quickstart.yaml"
    data = [f"--data.init_args.overrides={json.dumps({'num_identities': identities})}"]
    info = {"status": f"given --baseline_ckpt {ckpt}", "wall": math.nan}
    if ckpt is None:
        root = work / "baseline_quickstart"
        last, record = root / "checkpoints" / "last.ckpt", work / "baseline_quickstart_info.json"
        if last.is_file() and not retrain:
            info = cached_info(record, str(last))
        else:
            shutil.rmtree(root, ignore_errors=True)  # a fresh run, not versioned checkpoint names
            with Timer() as t:
                ZooCLI(args=["fit", *cli_args(config, root, *data, f"--trainer.max_epochs={epochs}")])
            record.write_text(json.dumps({"wall": t.wall}))
            info = {"status": f"trained now ({epochs} epochs, {identities} identities)", "wall": t.wall}
        ckpt = str(last)
    cli = ZooCLI(args=cli_args(config, work / "baseline_eval", *data), run=False)
    system = cli.model
    system.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
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
    """Metrics on the atlas; "invisible" = texels no pixel landed on (the raw known mask, the same
    split for every method: gap-filled texels count as unseen)."""
    m = texture_metrics(pred, batch["texture"], batch["texture_mask"], batch["known_mask"])
    return {k: float(v.nanmean()) for k, v in m.items()}


def other_identity(n: int, views: int) -> torch.Tensor:
    """Index of another identity's item for each of n items ordered by identity, `views` per identity."""
    return (torch.arange(n) + views) % n


@torch.no_grad()
def run_methods(batch: dict, unet, diffusion, seed: int, views: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    raw_known, gap = batch["known_mask"], batch["gap_mask"]
    partial = batch["partial"]  # gap-filled
    raw = partial * raw_known
    filled = torch.maximum(raw_known, gap)
    n = partial.shape[0]
    vq = diffusion.vqgan
    complete, vq_partial, _ = diffusion.vqgan_inputs(batch)
    _, cond, _ = diffusion._condition(vq_partial, filled)
    swap = other_identity(n, views)

    atlas = batch["texture_mask"]

    def sample(s, k, **kw):
        return diffusion.inpaint(partial, raw_known, gap, sampler=s, steps=k, atlas=atlas,
                                 generator=torch.Generator().manual_seed(seed), **kw)

    def hard_paste_sample():
        paste = diffusion.hparams.known_paste
        diffusion.hparams.known_paste = "hard"
        try:
            return sample("ddim", 50)
        finally:
            diffusion.hparams.known_paste = paste

    weight = soft_paste_mask(filled, atlas) if diffusion.hparams.known_paste == "soft" else filled

    methods = [("mean-colour fill", "-", lambda: mean_fill(raw, raw_known)),
               ("mean-colour fill after the gap fill", "-", lambda: mean_fill(partial, filled)),
               ("U-Net baseline (quickstart)", "1 pass", lambda: unet(raw, raw_known)),
               ("VQGAN oracle: ground truth encoded + decoded (ceiling)", "-",
                lambda: weight * partial + (1 - weight) * vq.decode(vq.encode(complete, quantize=False),
                                                                    quantize=True)[:, :3])]
    name = {"ddim": "diffusion, DDIM (eta 1)", "ddpm": "diffusion, DDPM", "dpm++": "diffusion, DPM-Solver++ 2M"}
    for sampler, steps in SAMPLERS:
        methods.append((name[sampler], str(steps), lambda s=sampler, k=steps: sample(s, k)))
    methods += [("diffusion, DDIM (eta 1), exact (hard) paste instead of DINAR's soft paste", "50", hard_paste_sample),
                ("diffusion, DDIM (eta 1), another identity's condition", "50",
                 lambda: sample("ddim", 50, cond_override=cond[swap])),
                ("diffusion, DDIM (eta 1), zero condition", "50",
                 lambda: sample("ddim", 50, cond_override=torch.zeros_like(cond)))]
    unet(raw[:1], raw_known[:1])  # warm-up (first-call allocations)
    rows, outputs = [], {}
    for label_, steps, fn in methods:
        with Timer() as t:
            pred = fn()
        outputs[f"{label_}|{steps}"] = pred
        rows.append({"method": label_, "steps": steps, **summarise(pred, batch),
                     "wall_per_texture": t.wall / n, "cpu_per_texture": t.cpu / n})
        log.info("%s %s: L1 invisible %.4f, %.2f s/texture", label_, steps, rows[-1]["l1/invisible"], t.wall / n)
    return rows, outputs


@torch.no_grad()
def denoising_gap(system, dm, timesteps=(10, 100, 300, 600, 999)) -> list[dict]:
    """The training loss of the EMA denoiser on every training view and every held-out view (one fixed
    noise draw) at fixed timesteps and over uniform timesteps ("all"); on held-out views also with
    another identity's condition and with a zero condition: if those match the true condition's loss,
    the denoiser ignores its condition."""
    data = {split: encode_views(system, dm.datasets[split], 64) for split in ("train", "test")}
    z_test, c_test = data["test"]
    views = dm.settings.views_per_identity
    variants = {"train": data["train"], "test": data["test"],
                "test_other": (z_test, c_test[other_identity(len(z_test), views)]),
                "test_zero": (z_test, torch.zeros_like(c_test))}
    rows = []
    with system.ema.swap_into(system.denoiser):
        system.denoiser.eval()
        for t in (*timesteps, "all"):
            row = {"t": t}
            for name, (z, c) in variants.items():
                g = torch.Generator().manual_seed(0)
                steps = None if t == "all" else torch.full((len(z),), t)
                row[name] = float(system.diffusion.training_loss(
                    system.denoiser, z, cond=c, t=steps, loss_type=system.hparams.loss_type, generator=g).loss)
            rows.append(row)
    return rows


@torch.no_grad()
def seed_spread(batch: dict, diffusion, seeds: int) -> tuple[list[dict], dict]:
    """Invisible-texel L1 / PSNR of the same inputs sampled with different seeds: how much of a
    difference between two diffusion rows one seed can explain. Also the metrics of the mean of the
    DDIM samples: an estimate of the posterior mean, which per-texel L1 / PSNR favour over any one
    sample (a sample's expected squared error is twice the posterior mean's)."""
    rows, mean_row = [], {}
    for sampler, steps in [("ddim", 50), ("dpm++", 20)]:
        values, preds = [], []
        for seed in range(seeds):
            pred = diffusion.inpaint(batch["partial"], batch["known_mask"], batch["gap_mask"], sampler=sampler,
                                     steps=steps, atlas=batch["texture_mask"],
                                     generator=torch.Generator().manual_seed(seed))
            values.append(summarise(pred, batch))
            preds.append(pred)
        if sampler == "ddim":
            mean_row = {"method": f"diffusion, DDIM (eta 1), mean of {seeds} samples (seeds 0..{seeds - 1})",
                        "steps": str(steps), **summarise(torch.stack(preds).mean(0), batch),
                        "wall_per_texture": math.nan, "cpu_per_texture": math.nan}
        for metric in ("l1/invisible", "psnr/invisible"):
            v = torch.tensor([x[metric] for x in values], dtype=torch.float64)
            rows.append({"sampler": f"{sampler} {steps}", "metric": metric, "mean": float(v.mean()),
                         "std": float(v.std()), "min": float(v.min()), "max": float(v.max())})
    return rows, mean_row


@torch.no_grad()
def condition_probe(diffusion, batch: dict, views: int) -> dict[str, float]:
    """What the condition carries (issue 7's measurements). Known-cell fractions: atlas latent cells
    whose nearest-resized mask is 1, before and after the 3x3 erosion (the replaced region). Known-texel
    L1 of decoding the partial texture's own latent vs the ground truth's. On the replaced cells, the
    distance of E(partial) to E(ground truth) vs that of another identity's E(ground truth)."""
    complete, vq_partial, filled = diffusion.vqgan_inputs(batch)
    z_gt, z_partial = diffusion.encode(complete), diffusion.encode(vq_partial)
    resized = torch.nn.functional.interpolate(filled, size=z_gt.shape[-2:], mode="nearest")
    kept = diffusion.diffusion.replacement_mask(resized, erode=diffusion.hparams.erode_known_mask)
    atlas = torch.nn.functional.interpolate(batch["texture_mask"], size=z_gt.shape[-2:], mode="area") > 0
    raw = (batch["known_mask"] > 0.5).expand_as(batch["texture"])
    l1 = {}
    for name, z in (("partial", z_partial), ("ground truth", z_gt)):
        rgb = diffusion.decode(z)[:, :3]
        l1[name] = float((rgb - batch["texture"]).abs()[raw].mean() / 2)  # [0, 1] units as texture_metrics
    cells = kept.expand_as(z_gt)
    other = z_gt[other_identity(len(z_gt), views)]
    return {"cells_known": float((resized.bool() & atlas).sum() / atlas.sum()),
            "cells_kept": float((kept & atlas).sum() / atlas.sum()),
            "l1_known_decoded_partial": l1["partial"], "l1_known_decoded_gt": l1["ground truth"],
            "dist_partial_gt": float((z_partial - z_gt)[cells].pow(2).mean()) if cells.any() else math.nan,
            "dist_other_gt": float((other - z_gt)[cells].pow(2).mean()) if cells.any() else math.nan,
            "known_fraction": float((batch["known_mask"].sum((1, 2, 3)) / batch["texture_mask"].sum((1, 2, 3))).mean()),
            "filled_fraction": float((filled.sum((1, 2, 3)) / batch["texture_mask"].sum((1, 2, 3))).mean())}


@torch.no_grad()
def vqgan_quality(vq, textures: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Reconstruction of complete textures (with their mask channels: atlas, no gap) on the RGB channels."""
    out = vq(texture_with_masks(textures, mask))
    m = texture_metrics(out.reconstruction[:, :3], textures, mask)
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


def previous_rows(commit: str) -> dict[tuple[str, str], dict[str, str]]:
    """The inpainting table of docs/inpainting_results.md at `commit` (the run before issue 7's fixes):
    {(method, steps): {column: value}}; {} for an empty commit."""
    if not commit:
        return {}
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:docs/inpainting_results.md"],
                          check=True, capture_output=True, text=True).stdout
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = next(ln for ln in lines if ln.startswith("| method | steps |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for ln in lines[lines.index(header) + 1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(columns) or cells[0].startswith("---"):
            break
        rows[(cells[0], cells[1])] = dict(zip(columns, cells))
    return rows


# --- figure and document ---------------------------------------------------------------------
def label(text: str, width: int, height: int = 14) -> torch.Tensor:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(img).text((2, 1), text, fill=(0, 0, 0))
    return torch.from_numpy(np.array(img))


def figure(batch: dict, outputs: dict[str, torch.Tensor], rows: list[int], path: Path, scale: int = 2) -> None:
    columns = [("partial input", batch["partial"]), ("mean fill", outputs["mean-colour fill after the gap fill|-"]),
               ("U-Net", outputs["U-Net baseline (quickstart)|1 pass"]),
               ("DDIM 50", outputs["diffusion, DDIM (eta 1)|50"]),
               ("DDIM 200", outputs["diffusion, DDIM (eta 1)|200"]),
               ("DDIM 50 other cond", outputs["diffusion, DDIM (eta 1), another identity's condition|50"]),
               ("VQGAN oracle", outputs["VQGAN oracle: ground truth encoded + decoded (ceiling)|-"]),
               ("ground truth", batch["texture"])]
    size = batch["texture"].shape[-1] * scale
    pics = [[label(name, size) for name, _ in columns]]
    for b in rows:
        pics.append([to_uint8(t[b]).repeat_interleave(scale, 0).repeat_interleave(scale, 1) for _, t in columns])
    save_png(grid(pics), path)


def fmt(v, digits: int = 4) -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def write_doc(path: Path, ctx: dict) -> None:
    old = path.read_text() if path.is_file() else ""
    discussion = old[old.index(DISCUSSION_MARKER):] if DISCUSSION_MARKER in old else DISCUSSION_MARKER + "\n"
    d, v, b, p = ctx["diffusion"], ctx["vqgan"], ctx["baseline"], ctx["probe"]
    prev = ctx["previous"]
    lines = [
        "# Texture inpainting: VQGAN + latent diffusion (DINAR section 3.3) at CPU size",
        "",
        "Generated by `scripts/inpainting_results.py`; every number below comes from one run of it, except the "
        f"\"pre-fix\" columns, read from docs/inpainting_results.md at commit {ctx['previous_commit']} (the run "
        "before issue 7's fixes: 38 training identities, no gap fill, RGB-only VQGAN, bilinear mask, trailing DDIM), "
        f"and the \"prev. run\" columns, read from it at commit {ctx['previous_run_commit']} (the previous run of "
        "this script).",
        "",
        f"- Command: `{ctx['command']}`",
        f"- Code: commit {ctx['code']}.",
        f"- Machine: {ctx['machine']}; load average {ctx['load_start']} at the start, {ctx['load_end']} at the end.",
        f"- Date: {ctx['date']}; total run time {ctx['total_wall']:.0f} s.",
        f"- Data: synthetic people, preset \"small\" with {ctx['identities']} identities (64x64 RGB UV textures; "
        f"{ctx['n_train_ids']} train / {ctx['n_ids']} test identities, {ctx['views_per_id']} views each). Evaluated on "
        f"{ctx['n_eval']} test items: {ctx['views']} view(s) of each test identity (never seen in training); the "
        f"input is one view scattered into UV ({100 * p['known_fraction']:.1f}% of the atlas texels hit by a pixel, "
        f"{100 * p['filled_fraction']:.1f}% after DINAR's 3x3 gap fill).",
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
        "training set (`latent_scale` 1). The VQGAN input is DINAR's layout (RGB, known mask, gap-fill mask); the "
        "condition is the partial texture's latent and its known mask resized with nearest sampling. Samples use "
        "the EMA weights, replacement of the 3x3 erosion of that mask by the noised known latent before every "
        "step (DDIM \"leading\" grid t = k c + 1, last update kept), VQ decoding and pasting of the known and "
        "gap-filled texels (DINAR eq. 6) with DINAR's test-phase soft paste: weight = (known | off-atlas) eroded "
        "3x3, box-blurred 3x3, minus off-atlas, so the rim of the known region blends into the sample (the VQGAN "
        "oracle row is pasted the same way; one row shows the exact paste).",
        "",
        "## What the condition carries",
        "",
        f"- Latent cells (of the atlas) whose nearest-resized known mask is 1: {100 * p['cells_known']:.1f}%; kept "
        f"after the 3x3 erosion (the replaced region): {100 * p['cells_kept']:.1f}%.",
        f"- Decoding the partial texture's own latent E(partial) gives L1 {p['l1_known_decoded_partial']:.4f} on the "
        f"known texels; decoding the ground truth's latent gives {p['l1_known_decoded_gt']:.4f} ([0, 1] units).",
        f"- On the replaced cells, mean squared distance to E(ground truth): E(partial) {p['dist_partial_gt']:.4f}, "
        f"another identity's E(ground truth) {p['dist_other_gt']:.4f}.",
        "",
        "## Inpainting quality on held-out identities",
        "",
        "Texels no pixel landed on (\"invisible\": atlas and not hit; gap-filled texels count as invisible for "
        "every method) and all atlas texels; textures in [0, 1] for the metrics (`zoo.metrics.texture_metrics`; "
        "L1 lower is better, PSNR dB / SSIM higher). Time: the method on the whole batch, divided by the batch "
        "size; wall and process CPU seconds (one thread). Same sampler seed for every diffusion row. \"another "
        "identity's condition\" swaps only the denoiser's condition channels for those of a different test "
        "identity (known-region replacement and paste still use the true input): if the model follows its "
        "condition, the unseen texels get worse.",
        "",
        "| method | steps | L1 invisible | prev. run | pre-fix | PSNR invisible | prev. run | pre-fix | SSIM invisible "
        "| L1 all | PSNR all | SSIM all | wall s / texture | CPU s / texture |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ctx["rows"]:
        o = prev.get((r["method"], r["steps"]), {})
        q = ctx["previous_run"].get((r["method"], r["steps"]), {})
        lines.append(f"| {r['method']} | {r['steps']} | {r['l1/invisible']:.4f} | {q.get('L1 invisible', '-')} | "
                     f"{o.get('L1 invisible', '-')} | {r['psnr/invisible']:.2f} | {q.get('PSNR invisible', '-')} | "
                     f"{o.get('PSNR invisible', '-')} | {r['ssim/invisible']:.4f} | "
                     f"{r['l1/all']:.4f} | {r['psnr/all']:.2f} | {r['ssim/all']:.4f} | "
                     f"{fmt(r['wall_per_texture'], 3)} | {fmt(r['cpu_per_texture'], 3)} |")
    lines += ["", f"Spread over sampler seeds 0..{ctx['spread_seeds'] - 1} (same inputs and models; the table above "
              "uses seed 0):", "", "| sampler | metric | mean | std | min | max |", "|---|---|---|---|---|---|"]
    for r in ctx["spread"]:
        lines.append(f"| {r['sampler']} | {r['metric']} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | "
                     f"{r['max']:.4f} |")
    lines += ["", "Denoising loss of the diffusion (its training objective, epsilon MSE, EMA weights) on all "
              f"{ctx['n_train_views']} training views and all {ctx['n_test_views']} held-out views, one fixed noise "
              "draw, at fixed timesteps and over uniform timesteps (\"all\"); held-out views also with another "
              "identity's condition and with a zero condition. Old: the held-out / training ratio of the run before "
              "issue 7's fixes (--previous_commit).",
              "", "| t | training views | held-out views | held-out / training | old ratio | held-out, another "
              "identity's condition | held-out, zero condition |", "|---|---|---|---|---|---|---|"]
    for r in ctx["gap"]:
        old = ctx["previous_gap"].get(str(r["t"]), "-")
        lines.append(f"| {r['t']} | {r['train']:.4f} | {r['test']:.4f} | {r['test'] / r['train']:.2f} | {old} | "
                     f"{r['test_other']:.4f} | {r['test_zero']:.4f} |")
    lines += ["", "## VQGAN reconstruction and codebook usage", "",
              "All atlas texels of each distinct complete texture (one per identity, RGB channels); codebook "
              "statistics over all latent positions of those textures (usage = fraction of the codes used at "
              "least once, perplexity = exp of the code-frequency entropy).", "",
              "| textures | count | L1 | PSNR | SSIM | latent positions | codes used | usage | perplexity |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, q in ctx["vq_quality"].items():
        lines.append(f"| {name} | {q['textures']} | {q['l1']:.4f} | {q['psnr']:.2f} | {q['ssim']:.4f} | "
                     f"{q['positions']} | {q['codes_used']} / {ctx['num_codes']} | {q['usage']:.3f} | "
                     f"{q['perplexity']:.1f} |")
    lines += ["", f"![partial input, fills and samples, VQGAN oracle, ground truth]({ctx['figure_rel']})", "",
              "Figure (`docs/inpainting_figure.png`): one test item for each of the first test identities; columns: "
              "gap-filled partial input, mean-colour fill, U-Net baseline, diffusion DDIM 50, DDIM 200, DDIM 50 with "
              "another identity's condition, VQGAN oracle, ground truth.", ""]
    path.write_text("\n".join(lines) + "\n" + discussion)


def previous_gap(commit: str) -> dict[str, str]:
    """Held-out / training ratios of the previous run's denoising-loss table, by t."""
    if not commit:
        return {}
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:docs/inpainting_results.md"],
                          check=True, capture_output=True, text=True).stdout
    out = {}
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit() and ln.startswith("| "):
            out[cells[0]] = cells[3]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline_ckpt", default=None, help="checkpoint of a configs/quickstart.yaml run")
    parser.add_argument("--baseline_epochs", type=int, default=2, help="U-Net baseline epochs over the training views")
    parser.add_argument("--work_dir", default=None, help="caches and runs (default $ZOO_HOME/inpainting_results)")
    parser.add_argument("--views_per_identity", type=int, default=1, help="test views per test identity")
    parser.add_argument("--spread_seeds", type=int, default=3, help="seeds of the sample-spread table")
    parser.add_argument("--retrain", action="store_true", help="train every stage even if cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--previous_commit", default=PREVIOUS_COMMIT,
                        help="commit whose docs/inpainting_results.md gives the 'old' columns ('' for none)")
    parser.add_argument("--previous_run_commit", default=PREVIOUS_RUN_COMMIT,
                        help="commit whose docs/inpainting_results.md gives the 'prev. run' columns ('' for none)")
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
    previous, old_gap = previous_rows(args.previous_commit), previous_gap(args.previous_commit)
    previous_run, code = previous_rows(args.previous_run_commit), code_state()

    vqgan_info = vqgan_stage(work, args.retrain)
    diffusion, dm, diffusion_info = diffusion_stage(work, args.retrain, args.seed)
    identities = dm.settings.num_identities
    unet, baseline_info = baseline_stage(work, args.baseline_ckpt, args.retrain, identities, args.baseline_epochs)

    test = dm.datasets["test"]
    picked = eval_items(test, args.views_per_identity)
    batch = default_collate([test[i] for i in picked])
    with Timer() as t_eval:
        rows, outputs = run_methods(batch, unet, diffusion, args.seed, args.views_per_identity)
        spread, mean_row = seed_spread(batch, diffusion, args.spread_seeds)
        rows.append(mean_row)
        gap = denoising_gap(diffusion, dm)
        probe = condition_probe(diffusion, batch, args.views_per_identity)
        vq = diffusion.vqgan
        vq_quality = {"held-out (test identities)": vqgan_quality(vq, *unique_textures(test)),
                      "training identities": vqgan_quality(vq, *unique_textures(dm.datasets["train"]))}
    first_view = list(range(0, min(len(picked), 8 * args.views_per_identity), args.views_per_identity))
    figure(batch, outputs, first_view, Path(args.figure))
    doc = Path(args.doc)
    write_doc(doc, {
        "command": shlex.join(["python", *sys.argv]), "machine": machine_description(), "load_start": load_start,
        "load_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "total_wall": time.perf_counter() - start,
        "identities": identities, "n_train_ids": dm.datasets["train"].num_identities,
        "views_per_id": dm.settings.views_per_identity,
        "n_eval": len(picked), "views": args.views_per_identity, "n_ids": test.num_identities,
        "vqgan": vqgan_info, "diffusion": diffusion_info, "probe": probe,
        "baseline": baseline_info, "eval_wall": t_eval.wall, "rows": rows, "vq_quality": vq_quality,
        "num_codes": vq.quantizer.num_codes, "spread": spread, "spread_seeds": args.spread_seeds,
        "gap": gap, "n_train_views": len(dm.datasets["train"]), "n_test_views": len(test),
        "previous": previous, "previous_gap": old_gap, "previous_commit": args.previous_commit,
        "previous_run": previous_run, "previous_run_commit": args.previous_run_commit, "code": code,
        "figure_rel": os.path.relpath(Path(args.figure).resolve(), doc.resolve().parent),
    })
    log.info("wrote %s and %s in %.0f s", doc, args.figure, time.perf_counter() - start)


if __name__ == "__main__":
    main()
