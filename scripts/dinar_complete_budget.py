"""Diffusion budget study of scripts/dinar_complete_results.py: one denoiser (same config, latents and
seed; the resumable loop continued the same run) saved at several training lengths, side by side.

The kept models are diffusion_d<steps>.pt beside the current diffusion.pt (copied before a longer
run resumes; `train` skips the diffusion while diffusion.pt exists). Each one's DDIM 200 draws
(eta 1, seeds 0..--samples-1, occlusion detector on, the evaluated inputs) are cached in its own
folder: eval_cache for diffusion.pt (the draws of the posterior study and Table 2), eval_cache_d<steps>
for the kept ones. Per model: the errors on unseen texels of one draw and of the mean of all draws
(RGB vs truth, RGB vs merged, generated channels vs merged; `posterior.sample_stats`), the paired
differences to mean fill and the U-Net, and the sliced W1 of the unseen colours
(`posterior.colour_distribution`). The denoising gap per model comes from `gap_check`
(gap_check.json), with a least-squares power law err = c * steps^b per timestep over the models.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import torch
from dinar_complete_eval import baselines, cached, inpaint_full  # scripts/, beside this file
from dinar_complete_posterior import TARGETS, colour_distribution, ks_up_to, sample_stats, target_views
from dinar_complete_results import diffusion_system

log = logging.getLogger("dinar_complete")
GAP_TIMES = (300, 600, 800, 900, 999)


def kept_diffusions(work: Path) -> list[tuple[int, Path, str]]:
    """(training steps, file, eval cache folder) of diffusion.pt and every diffusion_d<steps>.pt, by steps."""
    out = []
    for path in work.glob("diffusion*.pt"):
        match = re.fullmatch(r"diffusion_d(\d+)\.pt", path.name)
        if path.name != "diffusion.pt" and not match:
            continue  # the resume states
        steps = int(torch.load(path, map_location="cpu", weights_only=True)["info"]["steps"])
        if match and int(match.group(1)) != steps:
            raise RuntimeError(f"{path} holds a {steps}-step model, its name says {match.group(1)}")
        out.append((steps, path, f"eval_cache_d{steps}" if match else "eval_cache"))
    return sorted(out)


@torch.no_grad()
def budget_study(args, unet, batch: dict, texture21: torch.Tensor) -> dict:
    """Every kept model on the evaluated inputs (`texture21`: their 21-channel single-view textures)."""
    rows = []
    for steps, path, folder in kept_diffusions(args.work):
        system, _, _ = diffusion_system(args)
        saved = torch.load(path, map_location="cpu", weights_only=True)
        system.load_state_dict(saved["state_dict"])
        system.eval()
        draws = torch.stack([cached(args, f"ddim200_occ_s{seed}", lambda: {
            "texture": inpaint_full(system, texture21, "ddim", 200, seed, batch["atlas"])}, folder)["texture"][:, :19]
            for seed in range(args.samples)])
        refs = {name: fn() for name, (_, fn) in baselines(system, unet, batch).items() if not name.startswith("VQGAN")}
        k = ks_up_to(len(draws))[-1]  # the largest K of the study's K-means (all draws when a power of 2)
        stats = sample_stats(draws, refs, batch)
        dist = colour_distribution({"one draw": draws, f"mean of {k}": draws[:k].mean(0), **refs}, batch)
        split = {name: colour_split(pred, batch) for name, pred in
                 {"one draw": draws, f"mean of {k}": draws[:k].mean(0), **refs}.items()}
        rows.append({"steps": steps, "split": split, "file": path.name, "cache": folder, "info": saved["info"],
                     "loss_last100": float(saved["losses"][-100:].mean()), "draws": k,
                     "targets": {t: {"k_mean": {str(q): {m: s["k_mean"][str(q)][m] for m in ("l1", "mse")} for q in (1, k)},
                                     "methods": {name: {key: v for key, v in m.items() if not key.endswith("_items")}
                                                 for name, m in s["methods"].items()}} for t, s in stats.items()},
                     "distribution": {name: {key: v for key, v in r.items() if key != "items"} for name, r in dist.items()}})
        log.info("budget %d steps: %s", steps, {t: rows[-1]["targets"][t]["k_mean"] for t in TARGETS})
    gap_file, probe = args.work / "gap_check.json", args.work / "lr_probe.json"
    return {"models": rows, "gap_check": json.loads(gap_file.read_text()) if gap_file.is_file() else [],
            "lr_probe": json.loads(probe.read_text()) if probe.is_file() else None}


def colour_split(pred: torch.Tensor, batch: dict) -> dict[str, list[float]]:
    """Per input, the RGB MSE vs the merged texture on the unseen texels some view saw ([0, 1] units, as
    `posterior.target_views`) split exactly into the error of the region's mean colour, mean over R, G, B
    of (mean pred - mean merged)^2 ("mean colour"), and the rest, the error of the deviations from each
    one's own mean ("pattern"): MSE = mean colour + pattern. `pred`: (B, 19, H, W) or draws (K, B, 19, H, W),
    split per draw and averaged."""
    _, ref, mask = target_views(pred if pred.ndim == 4 else pred[0], batch)["rgb_merged"]
    out = {"mean colour": [], "pattern": []}
    for draw in (pred if pred.ndim == 5 else pred[None]):
        p = target_views(draw, batch)["rgb_merged"][0]
        count = mask.sum((2, 3)).clamp_min(1)  # (B, 1)
        p_mean, r_mean = (p * mask).sum((2, 3)) / count, (ref * mask).sum((2, 3)) / count  # (B, 3)
        dev = (p - p_mean[..., None, None]) - (ref - r_mean[..., None, None])
        out["mean colour"].append(((p_mean - r_mean) ** 2).mean(1))
        out["pattern"].append(((dev ** 2) * mask).sum((2, 3)).div(count).mean(1))
    return {key: torch.stack(v).mean(0).tolist() for key, v in out.items()}


def power_law(steps: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares (c, b) of log(value) = log(c) + b log(steps)."""
    b, log_c = np.polyfit(np.log(steps), np.log(values), 1)
    return float(math.exp(log_c)), float(b)


def gap_lines(gap_check: list[dict]) -> list[str]:
    """Held-out EMA epsilon MSE per model and t, the constant guess, and the power-law trend."""
    runs = sorted(gap_check, key=lambda r: r["steps"])
    steps = [r["steps"] for r in runs]
    by_t = [{row["t"]: row for row in r["gap"]} for r in runs]
    lines = ["Held-out epsilon MSE (`gap_check`: all held-out pairs, one fixed noise draw per t; of a v-prediction model "
             "the epsilon its output implies) of each kept model, EMA "
             "weights (raw weights in brackets), next to the constant guess x0 = the mean training latent (the same for "
             "every model). Trend: least-squares power law err = c * steps^b over the models (log-log), the local "
             "exponents between consecutive models, and the steps at which the fitted law reaches the constant guess.", "",
             "| t | " + " | ".join(f"{s} steps" for s in steps) + " | constant guess | fit b | local b | fit reaches the guess at |",
             "|---" * (len(steps) + 5) + "|"]
    for t in GAP_TIMES:
        if not all(t in g for g in by_t):
            continue
        ema = [g[t]["test"] for g in by_t]
        cells = " | ".join(f"{g[t]['test']:.5f} ({g[t]['test_raw']:.5f})" for g in by_t)
        guess = by_t[-1][t]["test_mean_latent"]
        local = ", ".join(f"{math.log(ema[i + 1] / ema[i]) / math.log(steps[i + 1] / steps[i]):+.2f}" for i in range(len(ema) - 1))
        fit, cross = "-", "-"
        if len(steps) >= 2:
            c, b = power_law(steps, ema)
            fit = f"{b:+.2f}"
            if ema[-1] <= guess:
                cross = "already below"
            elif b < 0:
                cross = f"{(guess / c) ** (1 / b):.3g} steps"
            else:
                cross = "never (not falling)"
        lines.append(f"| {t} | {cells} | {guess:.3g} | {fit} | {local or '-'} | {cross} |")
    return lines + [""]


def budget_lines(budget: dict) -> list[str]:
    """Markdown of the study (the tables; the reading is hand-written)."""
    models = budget["models"]
    if not models:
        return []
    k = models[-1]["draws"]
    lines = ["### Diffusion budget: the same denoiser at " + " / ".join(str(m["steps"]) for m in models) + " steps", "",
             "`scripts/dinar_complete_budget.py`: one training run (same config, latents, seed 0; the resumable loop "
             "continued it and the shorter models were kept as diffusion_d<steps>.pt). Each model sampled with DDIM 200 "
             f"(eta 1) {k} times on the same inputs (seeds 0..{k - 1}; the current model's draws are the posterior study's).", "",
             "| steps | training wall s (cumulative) | loss, last 100 steps |", "|---|---|---|"]
    lines += [f"| {m['steps']} | {m['info']['wall']:.0f} | {m['loss_last100']:.4f} |" for m in models] + [""]
    if budget.get("gap_check"):
        lines += gap_lines(budget["gap_check"])
    if budget.get("lr_probe"):
        lines += probe_lines(budget["lr_probe"], budget["gap_check"])
    lines += ["Unseen texels, one draw (mean over draws) and the mean of all draws: L1 / MSE (RGB [0, 1] units; generated "
              "channels raw), next to mean fill and the U-Net on the same inputs:", "",
              "| method | " + " | ".join(f"{name} L1 / MSE" for name in TARGETS.values()) + " |", "|---" * (len(TARGETS) + 1) + "|"]
    for m in models:
        for q, label in ((1, "one draw"), (m["draws"], f"mean of {m['draws']}")):
            lines.append(f"| diffusion {m['steps']} steps, {label} | " + " | ".join(
                f"{m['targets'][t]['k_mean'][str(q)]['l1']:.4f} / {m['targets'][t]['k_mean'][str(q)]['mse']:.5f}" for t in TARGETS) + " |")
    for name in models[-1]["targets"]["rgb_merged"]["methods"]:
        lines.append(f"| {name} | " + " | ".join(
            f"{models[-1]['targets'][t]['methods'][name]['l1']:.4f} / {models[-1]['targets'][t]['methods'][name]['mse']:.5f}"
            for t in TARGETS) + " |")
    lines += ["", "Paired differences over the inputs (mean +- standard error), diffusion minus the method; "
              f"\"mean of {k}\": the mean of the draws:", "",
              "| steps | target | vs | one draw L1 | one draw MSE | mean L1 | mean MSE |", "|---|---|---|---|---|---|---|"]
    for m in models:
        q = m["draws"]
        for t, tname in TARGETS.items():
            for name, d in m["targets"][t]["methods"].items():
                cells = " | ".join(f"{d[f'{n}-mean minus it, {e}']['mean']:+.4f} +- {d[f'{n}-mean minus it, {e}']['se']:.4f}"
                                   for n in (1, q) for e in ("l1", "mse"))
                lines.append(f"| {m['steps']} | {tname} | {name} | {cells} |")
    lines += ["", "Sliced W1 of the unseen RGB colours (`posterior.colour_distribution`, 128 directions) against the truth's "
              "(all unseen texels) and the merged texture's (unseen texels some view saw); colour std ratio to the "
              "merged texture's:", "",
              "| method | W1 vs truth | W1 vs merged | std / merged's |", "|---|---|---|---|"]
    for m in models:
        for label in ("one draw", f"mean of {m['draws']}"):
            r = m["distribution"][label]
            lines.append(f"| diffusion {m['steps']} steps, {label} | {r['sw_truth']:.4f} | {r['sw_merged']:.4f} | "
                         f"{r['std_ratio_merged']:.2f} |")
    for name, r in models[-1]["distribution"].items():
        if name not in ("one draw", f"mean of {models[-1]['draws']}"):
            lines.append(f"| {name} | {r['sw_truth']:.4f} | {r['sw_merged']:.4f} | {r['std_ratio_merged']:.2f} |")
    if "split" in models[-1]:
        lines += split_lines(models)
    return lines + [""]


def split_lines(models: list[dict]) -> list[str]:
    """`colour_split`: where the RGB MSE vs merged lies, the region's mean colour or the pattern."""
    lines = ["", "RGB MSE vs merged on the unseen texels some view saw, split per input into the error of the region's mean "
             "colour, mean over R, G, B of (mean predicted - mean merged)^2, and the error of the pattern around each "
             "one's own mean (the two add up to the MSE; means over inputs; a draw split per draw and averaged). Mean "
             "fill is constant there except on gap-filled texels (they count as unseen and keep the input's colours), so "
             "its pattern error is about the merged texture's own variation; a pattern error above it is structure "
             "that does not match the person's:", "",
             "| method | mean colour | pattern | sum (MSE) |", "|---|---|---|---|"]

    def row(label: str, split: dict) -> str:
        a, b = float(np.mean(split["mean colour"])), float(np.mean(split["pattern"]))
        return f"| {label} | {a:.5f} | {b:.5f} | {a + b:.5f} |"
    for m in models:
        lines += [row(f"diffusion {m['steps']} steps, {label}", m["split"][label]) for label in ("one draw", f"mean of {m['draws']}")]
    lines += [row(name, split) for name, split in models[-1]["split"].items() if name not in ("one draw", f"mean of {models[-1]['draws']}")]
    return lines


def probe_lines(probe: dict, gap_check: list[dict]) -> list[str]:
    """`lr_probe` (dinar_complete_studies): the last model continued at a lower learning rate."""
    last = {row["t"]: row for row in max(gap_check, key=lambda r: r["steps"])["gap"]} if gap_check else {}
    lines = [f"Learning-rate probe (`lr_probe`, not a model of the tables): the run's last resume state (step "
             f"{probe['from_step']}) continued to step {probe['to_step']} at lr {probe['lr']:g} instead of the config's "
             f"constant 1e-3 (same loop, latents and seed; {probe['wall']:.0f} s of training in all segments; loss of the last "
             f"100 steps {probe['loss_last100']:.4f}). Held-out epsilon MSE, EMA (raw):", "",
             "| t | the longest model, lr 1e-3 | probe, lr " + f"{probe['lr']:g} | constant guess |", "|---|---|---|---|"]
    for row in probe["gap"]:
        if row["t"] == "all":
            continue
        old = last.get(row["t"])
        before = f"{old['test']:.5f} ({old['test_raw']:.5f})" if old else "-"
        lines.append(f"| {row['t']} | {before} | {row['test']:.5f} ({row['test_raw']:.5f}) | {row['test_mean_latent']:.3g} |")
    return lines + [""]
