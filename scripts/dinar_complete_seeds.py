"""Training-seed spread of the stage-2 rows of Table 2 (scripts/dinar_complete_results.py evaluate
--train_seeds 0 1 ...): the diffusion trained again with another seed (diffusion_seed<s>.pt: its
initial weights, epoch order, timesteps and noise; same config, latents and steps), sampled on the
same inputs with the same sampler seeds (its draws cached in eval_cache_seed<s>), and the stage-2
rows (+ inpainting, + occlusion detector, + RGB fine-tuning) scored as for training seed 0. Stage 1,
the VQGAN and the pairs are the same for every training seed: only the diffusion's training seed
varies. The doc part compares each step's paired difference across training seeds."""
from __future__ import annotations

import math

import numpy as np
import torch
from dinar_complete_doc import METRICS, paired  # scripts/, beside this file (it imports this module lazily)

STAGE2 = "Both + inpainting"  # the stage-2 rows are the Table 2 rows whose name starts with this


@torch.no_grad()
def seed_textures(args, seed: int, textures: dict, both_occ: torch.Tensor, atlas: torch.Tensor) -> tuple[list[dict], dict]:
    """Per sampler seed: the inpainting rows' textures of the diffusion of training seed `seed` (without and
    with the occlusion detector); and that model's training record."""
    from dinar_complete_eval import cached, inpaint_full
    from dinar_complete_results import load_diffusion

    system, saved = load_diffusion(args, seed)
    folder = f"eval_cache_seed{seed}"
    by_seed = []
    for s in range(args.seeds):
        plain = cached(args, f"ddim200_plain_s{s}", lambda: {
            "texture": inpaint_full(system, textures["Both textures"], "ddim", 200, s, atlas)}, folder)
        occ = cached(args, f"ddim200_occ_s{s}", lambda: {"texture": inpaint_full(system, both_occ, "ddim", 200, s, atlas)}, folder)
        by_seed.append({"Both + inpainting": plain["texture"], "Both + inpainting + occlusion detector": occ["texture"]})
    losses = saved["losses"]
    record = {"info": saved["info"], "curve": [float(losses[:50].mean()), float(losses[-100:].mean())]}
    return by_seed, record


def train_seed_study(args, nets, reid, people, batch, index, side, textures, both_occ, finetune) -> dict:
    """{training seed: {"diffusion": training record, "table2": {row: [per sampler seed: front / back / per_item]}}}
    for every --train_seeds other than 0 (seed 0's rows are ctx["table2"]). `finetune(texture, folder)`:
    the fine-tuned textures of a draw (cached in `folder`), or None when the row is not run."""
    from dinar_complete_eval import split_means, table2

    out = {}
    for seed in [s for s in args.train_seeds if s != 0]:
        by_seed, record = seed_textures(args, seed, textures, both_occ, batch["atlas"])
        tuned = finetune(by_seed[0]["Both + inpainting + occlusion detector"], f"eval_cache_seed{seed}")
        if tuned is not None:
            by_seed[0]["Both + inpainting + occlusion detector + RGB fine-tuning"] = tuned["texture"]
            record["finetune_wall_per_avatar"] = tuned["wall"] / len(index)
        results, _ = table2(by_seed, nets, reid, people, batch, index)
        out[str(seed)] = {"diffusion": record, "table2": {
            row: [{"front": split_means(p, side, "front"), "back": split_means(p, side, "back"), "per_item": p} for p in per]
            for row, per in results.items()}}
    return out


def verdict(diffs: list[tuple[float, float]]) -> str:
    """Direction of a step from its paired difference (mean, SE over people) under each training seed: it
    holds beyond both spreads when every seed has the same sign, the mean over seeds exceeds 2 SE (the
    largest SE of the seeds) and exceeds the training-seed spread (largest minus smallest difference)."""
    means = [m for m, _ in diffs]
    mean, spread, se = float(np.mean(means)), max(means) - min(means), max(s for _, s in diffs)
    if len({np.sign(m) for m in means}) > 1:
        return "sign differs between training seeds"
    beyond_se, beyond_seed = abs(mean) > 2 * se, abs(mean) > spread
    if beyond_se and beyond_seed:
        return "beyond both"
    if beyond_se:
        return "beyond 2 SE, within the training-seed spread"
    if beyond_seed:
        return "beyond the training-seed spread, within 2 SE"
    return "within both"


def train_seed_lines(ctx: dict) -> list[str]:
    """Markdown: each stage-2 row per training seed (mean over sampler seeds) and its difference; each
    stage-2 step's paired difference per training seed (sampler seed 0) and the verdict."""
    seeds = {"0": {"diffusion": {"info": ctx["diffusion_info"], "curve": ctx["diffusion_curve"]}, "table2": ctx["table2"]},
             **ctx["train_seeds"]}
    names = list(seeds)
    t2, side = ctx["table2"], ctx["side"]
    rows = [r for r in t2 if r.startswith(STAGE2) and all(r in s["table2"] for s in seeds.values())]
    missing = [r for r in t2 if r.startswith(STAGE2) and r not in rows]
    lines = ["#### Training-seed spread of the stage-2 rows", "",
             f"The diffusion trained with {len(names)} training seeds ({', '.join(names)}; seed s > 0: `diffusion_seed<s>.pt`, "
             "its initial weights, epoch order, timesteps and noise; the same config, latents and steps); stage 1, the "
             "VQGAN, the pairs, the inputs and the sampler seeds are the same. Training:", "",
             "| training seed | steps | loss first 50 -> last 100 | wall s |", "|---|---|---|---|"]
    for name, s in seeds.items():
        info, curve = s["diffusion"]["info"], s["diffusion"]["curve"]
        lines.append(f"| {name} | {info['steps']} | {curve[0]:.3f} -> {curve[1]:.3f} | {info['wall']:.0f} |")
    lines += ["", "Each row's mean (over the sampler seeds it has; the fine-tuned row: sampler seed 0) per training seed, "
              f"and the difference seed {names[-1]} - seed {names[0]}:", "",
              "| input | row | " + " | ".join(f"{name}: " + " / ".join(f"seed {n}" for n in names) + " / diff."
                                            for _, name, _ in METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for which in ("front", "back"):
        for row in rows:
            cells = []
            for key, _, digits in METRICS:
                vals = [float(np.mean([p[which][key] for p in seeds[n]["table2"][row]])) for n in names]
                diff = vals[-1] - vals[0]
                cells.append(" / ".join(f"{v:.{digits}f}" for v in vals) + f" / {diff:+.{digits}f}" if not math.isnan(diff) else "-")
            lines.append(f"| {which} | {row} | " + " | ".join(cells) + " |")
    if missing:
        lines += ["", "Not run with every training seed (training seed 0 only, in the table above): " + ", ".join(missing) + "."]
    lines += ["", "Each stage-2 step against the previous row: paired difference over the same inputs (mean +- standard "
              "error over the people, sampler seed 0) under each training seed, the training-seed spread (largest minus "
              "smallest of those differences) and the verdict: \"beyond both\" when every training seed has the same sign "
              "and their mean exceeds both 2 SE (the larger SE) and the training-seed spread; the paper's direction: the step "
              "raises PSNR, MS-SSIM and ReID and lowers the RGB error.", ""]
    order = list(t2)
    for which in ("front", "back"):
        keep = [i for i, s in enumerate(side) if s == which]
        for row in rows:
            prev = order[order.index(row) - 1]
            cells = []
            for key, name, digits in METRICS:
                diffs = [paired(seeds[n]["table2"][row][0]["per_item"][key],
                                (seeds[n]["table2"] if prev.startswith(STAGE2) else t2)[prev][0]["per_item"][key], keep)
                         for n in names]
                if any(math.isnan(m) for m, _ in diffs):
                    cells.append(f"{name} -")
                    continue
                per = ", ".join(f"seed {n} {m:+.{digits}f} +- {s:.{digits}f}" for n, (m, s) in zip(names, diffs))
                spread = max(m for m, _ in diffs) - min(m for m, _ in diffs)
                text = verdict(diffs)
                if not text.startswith("sign"):  # the paper's direction: every step improves the row
                    better = (diffs[0][0] > 0) == (key != "rgb_l1_unseen")
                    text = ("the paper's direction, " if better else "opposite to the paper, ") + text
                cells.append(f"{name} {per}, spread {spread:.{digits}f}: {text}")
            lines.append(f"- {which}: {row} - {prev}: " + "; ".join(cells))
    return lines
