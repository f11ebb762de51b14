"""Markdown section of scripts/dinar_complete_results.py, written between DINAR_COMPLETE markers of
docs/dinar_results.md (the rest of the file, including a hand-written reading after the end
marker, is kept)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

START, END = "<!-- DINAR_COMPLETE:START -->", "<!-- DINAR_COMPLETE:END -->"
TARGETS = {"rgb_truth": "RGB vs truth", "rgb_merged": "RGB vs merged", "gen_merged": "generated vs merged"}
PROJECTIONS = 128  # as scripts/dinar_complete_posterior.py
DISCUSSION = "<!-- DINAR_COMPLETE:DISCUSSION -->"  # hand-written reading, kept when the section is rewritten
METRICS = (("psnr", "PSNR", 2), ("ms_ssim", "MS-SSIM (3 sc.)", 4), ("reid_cos", "ReID cos", 4),
           ("rgb_l1_unseen", "RGB L1 unseen texels vs truth", 4))


def f(v, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def paired(a: list[float], b: list[float], keep: list[int]) -> tuple[float, float]:
    d = np.array([a[i] - b[i] for i in keep], dtype=float)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return float("nan"), float("nan")
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def table2_lines(ctx: dict) -> list[str]:
    t2, side = ctx["table2"], ctx["side"]
    lines = []
    for which in ("front", "back"):
        n = side.count(which)
        lines += [f"#### {which} input ({n} held-out people, novel views = the person's 5 other views)", "",
                  "| row | " + " | ".join(name for _, name, _ in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for row, seeds in t2.items():
            cells = []
            for key, _, digits in METRICS:
                vals = [s[which][key] for s in seeds]
                text = f(vals[0], digits)
                if len(vals) > 1:
                    text = f"{f(float(np.mean(vals)), digits)} +- {f(float(np.std(vals, ddof=1)), digits)}"
                cells.append(text)
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Inpainting rows: mean +- standard deviation over sampler seeds 0.."
              f"{max(len(s) for s in t2.values()) - 1} (DDIM 200, eta 1). The other rows do not depend on a seed "
              "at test time; their training-seed spread was not measured (one stage-1 run per row). " + (
                  "Stage 2: the table is the diffusion of training seed 0; its training-seed spread (the diffusion trained "
                  "again with other seeds, the VQGAN and the U-Net once) follows the step list below." if ctx.get("train_seeds")
                  else "Stage 2 has one training run too (VQGAN, diffusion and U-Net each trained once, seed 0): the "
                  "sampler-seed spread is the only seed spread measured for the inpainting rows."), "",
              "Each step against the previous row: paired difference over the same inputs (mean +- standard error "
              "over inputs, seed 0), and for the inpainting rows the sampler-seed standard deviation of the row's mean:", ""]
    rows = list(t2)
    steps = [(rows[i], rows[i - 1]) for i in range(1, len(rows))] + ([("Both textures", "RGB texture")] if "RGB texture" in t2 else [])
    for which in ("front", "back"):
        keep = [i for i, s in enumerate(side) if s == which]
        for a, b in steps:
            cells = []
            for key, name, digits in METRICS:
                mean, se = paired(t2[a][0]["per_item"][key], t2[b][0]["per_item"][key], keep)
                spread = [s[which][key] for s in t2[a]] if len(t2[a]) > 1 else []
                sd = f" (seed sd {float(np.std(spread, ddof=1)):.{digits}f})" if spread else ""
                cells.append(f"{name} {mean:+.{digits}f} +- {se:.{digits}f}{sd}" if not math.isnan(mean) else f"{name} -")
            lines.append(f"- {which}: {a} - {b}: " + "; ".join(cells))
    if ctx.get("train_seeds"):
        from dinar_complete_seeds import train_seed_lines  # scripts/, beside this file

        lines += [""] + train_seed_lines(ctx)
    return lines + [""]


def overrides_text(data: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in data["overrides"].items() if k not in ("num_identities", "views_per_identity"))


def recipe_text(overrides: dict) -> str:
    weights = overrides.get("reconstruction_channel_weights")
    if weights is None:
        return "reconstruction_channel_weights null (every channel alike, DINAR's)"
    heavy = [i for i, w in enumerate(weights) if w != 1]
    return f"reconstruction_channel_weights {weights[heavy[0]]:g} on channels {heavy} (RGB), 1 elsewhere"


def study_lines(study: dict) -> list[str]:
    """The VQGAN budget study: the oracle at each kept checkpoint of each recipe."""
    keys = (("rgb_l1_truth", "RGB L1 vs truth"), ("rgb_l1_merged", "RGB L1 vs merged"),
            ("gen_l1_merged", "generated L1 vs merged"))
    head = "| recipe | steps | " + " | ".join(f"{name} (all / evaluated)" for _, name in keys) + " |"
    lines = [f"#### Pairs from stage-1 `{study['stage1']}` (`{study['path']}`)", "",
             f"The oracle (the person's merged texture encoded and decoded as the pipeline does: pre-quantisation latent, "
             f"decoded through the codebook, the input's B_fill pasted) on the texels unseen in the input, on all "
             f"{study['inputs']} test inputs and on the {study['evaluated']} evaluated ones; mean fill and the merged texture "
             "itself (what a VQGAN that reproduced its target exactly would score; the floor of any method whose target "
             "is the merged texture) on the same inputs. Recipes (model.init_args of configs/dinar/vqgan_cpu.yaml): "
             + "; ".join(f"{name}: {recipe_text(rec['overrides'])}" for name, rec in study["recipes"].items()) + ".", "",
             head, "|---" * (len(keys) + 2) + "|"]

    def cells(row: dict) -> str:
        return " | ".join(f"{row[f'{k}/all']:.4f} / {row[f'{k}/evaluated']:.4f}" for k, _ in keys)
    for name in ("mean fill", "merged texture (floor)"):
        lines.append(f"| {name} | - | {cells(study[name])} |")
    for name, rec in study["recipes"].items():
        for row in rec["rows"]:
            lines.append(f"| {name} | {row['step']} | {cells(row)} |")
    walls = [f"{name}: {rec['wall']:.0f} s" for name, rec in study["recipes"].items() if rec.get("wall")]
    return lines + ([""] + ["Training wall time: " + "; ".join(walls) + "."] if walls else []) + [""]


PREDICTION_NAMES = {"epsilon": "epsilon prediction", "v_prediction": "v-prediction", "sample": "x0 prediction"}


def prediction_name(info: dict) -> str:
    """The diffusion's parametrisation; runs before it was recorded used epsilon (the CPU config's then)."""
    return PREDICTION_NAMES[info.get("prediction_type", "epsilon")]


def diffusion_name(ctx: dict) -> str:
    """"2400 steps, v-prediction"."""
    return f"{ctx['diffusion_info']['steps']} steps, {prediction_name(ctx['diffusion_info'])}"


def previous_lines(ctx: dict) -> list[str]:
    """Key numbers of this run next to the previous run's (its results.json)."""
    prev = ctx["previous"]
    same_stage1 = {r: s["checkpoint"] for r, s in prev["stage1"].items()} == {r: s["checkpoint"] for r, s in ctx["stage1"].items()}
    same_models = prev["diffusion_info"] == ctx["diffusion_info"] and prev["unet_info"] == ctx["unet_info"]
    only_diffusion = same_stage1 and prev["unet_info"] == ctx["unet_info"] and not same_models
    lines = ["### This run vs the previous one", "",
             f"Previous: `{prev['path']}` ({prev['started']}; stage 1 " + ", ".join(
                 f"{r}: step {s['step']}" for r, s in prev["stage1"].items()) + f"; VQGAN {prev['vqgan_info'].get('steps', '?')} "
             f"steps, diffusion {prev['diffusion_info']['steps']} steps). " + (
                 "The same stage-1 networks, pairs and trained stage-2 models (the same diffusion and U-Net training "
                 "records), evaluated again from the cached predictions: equal numbers are the same computation; new here "
                 "are the rows that were not measured before (\"-\")." if same_stage1 and same_models else
                 f"The same stage-1 networks, pairs, VQGAN and U-Net; only the diffusion differs ({diffusion_name(prev)} "
                 f"-> {diffusion_name(ctx)}): the methods without diffusion score the same, the diffusion rows and the rows "
                 "built on them (Table 2's inpainting and fine-tuning rows) are draws of the other model." if only_diffusion else
                 "Different stage-1 networks on the same people and inputs (the same pair settings: RGB channels, masks, "
                 "truth and evaluated inputs are the same, the generated channels come from the other network): the RGB "
                 "of mean fill compares directly, every learned stage-2 model was retrained." if prev["stage1"]["both"]["data"]
                 == ctx["stage1"]["both"]["data"] else
                 "Different stage-1 networks and people (see Setup), so only the ordering of the methods within each run "
                 "compares directly."), "",
             "| quantity | previous | this run |", "|---|---|---|"]

    def sampler(c, method, steps, key):
        vals = [r[key] for r in c["samplers"] if r["method"] == method and r["steps"] == steps]
        return f"{np.mean(vals):.4f}" if vals else "-"
    for key, name in (("rgb_l1_truth", "RGB L1 unseen vs truth"), ("rgb_l1_merged", "RGB L1 unseen vs merged")):
        for method, steps in (("mean fill (per channel)", None), ("U-Net baseline", 1),
                              ("VQGAN oracle (merged texture encoded + decoded)", None), ("diffusion ddim", 200),
                              ("diffusion ddim", 20), ("diffusion dpm++", 10)):
            lines.append(f"| {method}{f' {steps}' if steps and steps > 1 else ''}: {name} | "
                         f"{sampler(prev, method, steps, key)} | {sampler(ctx, method, steps, key)} |")

    def k_mean(c, t, k, m):
        row = c.get("posterior", {}).get("targets", {}).get(t, {}).get("k_mean", {}).get(str(k))
        return f"{row[m]:.4f}" if row else "-"
    if ctx.get("posterior"):
        last = ctx["posterior"]["targets"]["rgb_merged"]["ks"][-1]
        for t, name in TARGETS.items():
            for k in (1, last):
                lines.append(f"| diffusion ddim 200, mean of {k} draw(s): {name} L1 unseen | {k_mean(prev, t, k, 'l1')} | "
                             f"{k_mean(ctx, t, k, 'l1')} |")
        gap = {r["t"]: r.get("test_mean_latent") for r in ctx["gap"]}
        old = {r["t"]: r["test"] for r in prev["gap"]}
        lines += [f"| held-out epsilon MSE at t = {t}: denoiser / mean-latent guess | {old[t]:.3g} / - | "
                  f"{r['test']:.3g} / {gap[t]:.3g} |"
                  for t, r in ((r["t"], r) for r in ctx["gap"]) if t in (600, 999) and gap[t] and t in old]
    for which in ("front", "back"):
        for row in ctx["table2"]:
            if row in prev["table2"]:
                old = np.mean([s[which]["psnr"] for s in prev["table2"][row]])
                new = np.mean([s[which]["psnr"] for s in ctx["table2"][row]])
                lines.append(f"| {which}: {row}, PSNR | {old:.2f} | {new:.2f} |")
    return lines + [""]


def posterior_lines(ctx: dict) -> list[str]:
    """The posterior-sample study (scripts/dinar_complete_posterior.py): K-sample means, the 1 + 1/K
    law, calibration and the colour distribution of the unseen texels."""
    post = ctx["posterior"]
    n, targets = post["samples"], post["targets"]
    ks = targets["rgb_merged"]["ks"]
    lines = ["### Posterior samples: one draw vs the mean of K draws, calibration, colour distribution", "",
             f"`scripts/dinar_complete_posterior.py`: {n} DDIM 200 (eta 1) draws per input, sampler seeds 0..{n - 1} "
             f"(seeds 0-1 are the draws of the tables above), on the same {post['inputs']} inputs "
             f"({post['cpu_per_draw_per_avatar']:.2f} CPU s per draw per avatar). The mean of K draws uses every disjoint group of K "
             "draws (K = 1: the mean error of single draws). For independent draws with per-texel mean mu and variance "
             "s^2, E (mean_K - y)^2 = (mu - y)^2 + s^2 / K; a calibrated sampler (y a draw of the same distribution) "
             "also has E (mu - y)^2 = s^2, so MSE = s^2 (1 + 1/K): one draw has twice the posterior mean's error "
             "(Blau & Michaeli 2018). RGB in [0, 1] units (vs truth: clamped to the texture range, as above); "
             "generated channels raw. MSE is per texel and channel. Probe rows (not DINAR, a diagnostic of the high-noise "
             "steps): the same DDIM 200 started at t = 800 or 600 from the mean training latent noised to that step (SDEdit's "
             "start; the grid steps above are skipped; known-region replacement and paste as DINAR), seeds 0..3.", "",
             "| method | " + " | ".join(f"{name} L1 | {name} MSE" for name in TARGETS.values()) + " |",
             "|---" * (2 * len(TARGETS) + 1) + "|"]
    for k in ks:
        cells = " | ".join(f"{targets[t]['k_mean'][str(k)]['l1']:.4f} | {targets[t]['k_mean'][str(k)]['mse']:.5f}" for t in TARGETS)
        lines.append(f"| diffusion DDIM 200, mean of {k} draw{'s' if k > 1 else ''} | {cells} |")
    lines.append("| diffusion, K -> infinity (fit A of MSE = A + B / K) | " + " | ".join(
        f"- | {targets[t]['fit']['A']:.5f}" for t in TARGETS) + " |")
    probes = post.get("probes", {})
    for start, probe in probes.items():
        for k in (1, probe["rgb_merged"]["ks"][-1]):
            cells = " | ".join(f"{probe[t]['k_mean'][str(k)]['l1']:.4f} | {probe[t]['k_mean'][str(k)]['mse']:.5f}" for t in TARGETS)
            lines.append(f"| probe (not DINAR): DDIM 200 from the mean latent at t = {start}, mean of {k} draw{'s' if k > 1 else ''} "
                         f"| {cells} |")
    for name in targets["rgb_merged"]["methods"]:
        lines.append(f"| {name} | " + " | ".join(
            f"{targets[t]['methods'][name]['l1']:.4f} | {targets[t]['methods'][name]['mse']:.5f}" for t in TARGETS) + " |")
    lines += ["", "The 1 + 1/K check: measured MSE of the K-draw mean, the least-squares fit A + B / K, and the law of a "
              "calibrated sampler s^2 (1 + 1/K) with s^2 the measured sample-to-sample variance (per texel, averaged):", "",
              "| target | s^2 | fit A | fit B | " + " | ".join(f"K={k}: measured / fit / calibrated law" for k in ks) + " |",
              "|---" * (len(ks) + 4) + "|"]
    for t, name in TARGETS.items():
        row, s2 = targets[t], targets[t]["variance"]
        cells = " | ".join(f"{row['k_mean'][str(k)]['mse']:.5f} / {row['fit']['A'] + row['fit']['B'] / k:.5f} / "
                           f"{s2 * (1 + 1 / k):.5f}" for k in ks)
        lines.append(f"| {name} | {s2:.5f} | {row['fit']['A']:.5f} | {row['fit']['B']:.5f} | {cells} |")
    lines += ["", f"Calibration with all {n} draws: s^2 (the spread the draws claim) against the truth's squared deviation "
              f"from their mean, divided by 1 + 1/{n} (an unbiased estimate of E (y - mu)^2; equal to s^2 for a calibrated "
              f"sampler); coverage: fraction of unseen texel-channels with |y - mean| <= 2 s sqrt(1 + 1/{n}) (Student-t with "
              f"{n - 1} degrees of freedom for calibrated Gaussian draws: {student_t_coverage(n):.3f}). Ratio: mean over inputs "
              "of the per-input ratio, and the ratio of the means.", "",
              "| draws: target | s^2 | deviation | ratio (mean of inputs) | ratio of means | coverage |", "|---|---|---|---|---|---|"]
    runs = {f"DDIM 200 ({n} draws)": targets, **{f"probe from t = {start} ({probe['rgb_merged']['ks'][-1]} draws)": probe
                                                  for start, probe in probes.items()}}
    for label, run in runs.items():
        for t, name in TARGETS.items():
            c = run[t]["calibration"]
            lines.append(f"| {label}: {name} | {c['variance']:.5f} | {c['deviation']:.5f} | {c['ratio']:.2f} | "
                         f"{c['ratio_of_means']:.2f} | {c['coverage']:.3f} |")
    lines += ["", f"Paired differences over the {post['inputs']} inputs (mean +- standard error), diffusion minus each method "
              "(the probes: vs mean fill and the U-Net):", ""]
    for label, run in runs.items():
        last = run["rgb_merged"]["ks"][-1]
        for t, name in TARGETS.items():
            for method, m in run[t]["methods"].items():
                if label != list(runs)[0] and method.startswith("VQGAN"):
                    continue
                cells = "; ".join(f"{key.split(' minus')[0].replace('1-mean', 'one draw').replace(f'{last}-mean', f'mean of {last}')} "
                                  f"{key.rsplit(', ', 1)[1].upper()} {v['mean']:+.4f} +- {v['se']:.4f}"
                                  for key, v in m.items() if " minus it" in key)
                lines.append(f"- {label}, {name}, vs {method}: {cells}")
    dist = post["distribution"]
    lines += ["", "Colour distribution of the unseen RGB texels (a comparison that does not reward blur): per input, the "
              "colour standard deviation (mean over R, G, B of the std over the texels; [0, 1] units) and the sliced W1 "
              f"({PROJECTIONS} seeded random directions in RGB; `zoo.metrics.distribution.sliced_wasserstein`) between the "
              "method's colours and the truth's on all unseen texels, and the merged texture's on the unseen texels some "
              "view saw; means over inputs; std ratio = mean of the per-input ratios to the reference's std. A draw is "
              "scored per draw and averaged. Mean fill's std is not 0: gap-filled texels (B_fill) count as unseen and keep "
              "the input's colours.", "",
              "| method | std (unseen) | std / truth's | sliced W1 vs truth | std (texels some view saw) | std / merged's "
              "| sliced W1 vs merged |", "|---|---|---|---|---|---|---|"]
    for name, r in dist.items():
        lines.append(f"| {name} | {r['std']:.4f} | {r['std_ratio_truth']:.2f} | {r['sw_truth']:.4f} | {r['std_merged_texels']:.4f} | "
                     f"{r['std_ratio_merged']:.2f} | {r['sw_merged']:.4f} |")
    return lines + [""]


def student_t_coverage(n: int, z: float = 2.0) -> float:
    from scipy.stats import t

    return float(2 * t.cdf(z, n - 1) - 1)


def write_section(ctx: dict, path: Path) -> None:
    info, kept, d = ctx["diffusion_info"], ctx["kept"], ctx["items"]
    data = ctx["stage1"]["both"]["data"]
    n = int(data["overrides"]["num_identities"])
    lines = [START, "", "## DINAR complete: stage-2 inpainting of neural textures and Table 2 (CPU size)", "",
             "Generated by `scripts/dinar_complete_results.py` (train, then evaluate); every number in this section "
             "comes from its one evaluation run.", "",
             f"- Command: `ZOO_HOME=/work/cache-dinar-stage2 python scripts/dinar_complete_results.py evaluate "
             f"--work {ctx['args']['work']} --stage1 {' '.join(ctx['args']['stage1'])} --items {ctx['args']['items']} "
             f"--seeds {ctx['args']['seeds']}" + (f" --samples {ctx['args']['samples']}" if "samples" in ctx["args"] else "")
             + (f" --train_seeds {' '.join(str(s) for s in ['0', *ctx['train_seeds']])}" if ctx.get("train_seeds") else "") + "`"
             + (" --ddpm" if ctx["args"]["ddpm"] == "True" else "") + (" --no_finetune" if ctx["args"]["finetune"] == "False" else "")
             + f" (trained by the same script's `train` with --vqgan_recipe '{ctx['args']['vqgan_recipe']}' "
             f"--vqgan_steps {ctx['args']['vqgan_steps']} --diffusion_steps {ctx['args']['diffusion_steps']} "
             f"--unet_steps {ctx['args']['unet_steps']})",
             f"- Machine: {ctx['machine_start']} (start); {ctx['machine_end']} (end). 2 logical cores shared with other "
             f"engineers' runs: wall seconds are inflated by the load; CPU seconds are the process's own.",
             f"- Date: {ctx['started']}; evaluation wall time {ctx['wall']:.0f} s.", "",
             "### Setup", ""] + ([f"- {ctx['note']}"] if ctx.get("note") else []) + [
             "- Stage 1 (frozen), one training run (seed) per row: " + "; ".join(
                 f"{r}: `{s['checkpoint']}` (step {s['step']})" for r, s in ctx["stage1"].items())
             + f". People: the `{data['preset']}` synthetic preset with {overrides_text(data)}, erosion {data['erode']}, "
             f"encoder input {data['encoder_image']} (the stage-1 run's data settings, read from its row_config.yaml).",
             f"- Stage-2 pairs (`NeuralTexturePairsDataModule`): the same generator settings with {n} identities "
             f"(train 0-{int(n * 0.8) - 1}, val {int(n * 0.8)}-{int(n * 0.9) - 1}, test {int(n * 0.9)}-{n - 1}; identities "
             f"are seeded by their number and split by it with the same fractions, so the stage-1 run's training people "
             f"(of its {ctx.get('stage1_identities', '?')} identities) are among these training people and the test "
             "people were trained on by neither stage), "
             f"{data['overrides']['views_per_identity']} views each with vertices. Condition = one view's 21-channel "
             "texture from the frozen \"both\" network (16 generated + RGB + known + gap-fill masks; occlusion detector "
             f"on); target = the merge of the person's views (eq. 4). {info['items']} training pairs.",
             f"- Evaluated inputs: for each of {d['people']} test people its most frontal view (\"front\") and its "
             "most back-facing view (\"back\"), by the mean texel cosine of the face region.",
             "- Sizes: 64 x 64 textures (the stage-1 size; the person is ~54 px tall in a 64 px image), VQGAN with one "
             "downsampling to 6 x 32 x 32 latents (DINAR: 256 -> 64 x 64). Kept latent cells over the evaluated inputs "
             "(fractions of the atlas):", ""]
    lines += ["| quantity | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in kept.items()] + [""]
    vq = ctx["vqgan_info"]
    lines += ["### Training", "", "| stage | what | wall s |", "|---|---|---|",
              f"| VQGAN (configs/dinar/vqgan_cpu.yaml) | {vq.get('steps', '?')} optimiser steps (batch 4 merged + 4 single-view "
              f"textures) | {f(vq.get('wall', float('nan')), 0)} |",
              f"| diffusion (configs/dinar/diffusion_cpu.yaml, {prediction_name(info)}) | "
              f"{info['steps']} steps of batch {info['batch_size']} on "
              f"{info['items']} pairs; loss {ctx['diffusion_curve'][0]:.3f} (first 50) -> {ctx['diffusion_curve'][1]:.3f} "
              f"(last 100); latent std {info['latent_std']:.2f} | {info['wall']:.0f} (+ {info['encode_wall']:.0f} encoding) |",
              f"| U-Net baseline (`TextureUNet` 19 -> 19, base 16, depth 3) | {ctx['unet_info']['steps']} steps of batch 16, "
              f"L1 {ctx['unet_curve'][0]:.3f} -> {ctx['unet_curve'][1]:.3f} | {ctx['unet_info']['wall']:.0f} |", ""]
    if ctx.get("vqgan_studies"):
        lines += ["### VQGAN budget study: the oracle vs training steps", ""]
        for study in ctx["vqgan_studies"]:
            lines += study_lines(study)
    lines += ["### Held-out vs training denoising loss", "",
              "EMA weights, epsilon MSE (of a v-prediction model: the epsilon its output implies, "
              "(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)), one fixed noise draw; 480 training pairs and all held-out "
              "(test) pairs. Mean-latent guess: on the held-out pairs, the epsilon of a constant guess x0 = the mean "
              "training latent, (x_t - sqrt(abar_t) mean) / sqrt(1 - abar_t), which ignores the condition. Last column: "
              "the held-out latent x0 MSE of the denoiser's x0 estimate and of that constant guess.", "",
              "| t | training pairs | held-out pairs | held-out / training | held-out, mean-latent guess "
              "| held-out x0 MSE: denoiser / guess |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['t']} | {r['train']:.4g} | {r['test']:.4g} | {r['test'] / r['train']:.2f} | "
              + (f"{r['test_mean_latent']:.3g} |" if "test_mean_latent" in r else "- |")
              + (f" {r['test_x0']:.4g} / {r['test_x0_mean_latent']:.3g} |" if "test_x0" in r else " - |")
              for r in ctx["gap"]] + [""]
    lines += ["### Inpainting and sampler table (21-channel textures, the same inputs)", "",
              "Unseen texels = atlas texels no pixel of the input landed on (gap-filled ones count as unseen). RGB vs the "
              "exact ground-truth texture ([0, 1] units, PSNR dB), RGB vs the merged multi-view texture (texels some "
              "view saw), generated channels vs the merged texture. Seconds per avatar: the method on the whole batch "
              f"of {d['inputs']} inputs divided by {d['inputs']}.", "",
              "| method | steps | seed | RGB L1 vs truth | RGB PSNR vs truth | RGB L1 vs merged | generated L1 vs merged "
              "| wall s / avatar | CPU s / avatar |", "|---|---|---|---|---|---|---|---|---|"]
    for r in ctx["samplers"]:
        lines.append(f"| {r['method']} | {r['steps'] or '-'} | {r['seed']} | {f(r['rgb_l1_truth'])} | "
                     f"{f(r['rgb_psnr_truth'], 2)} | {f(r['rgb_l1_merged'])} | {f(r['gen_l1_merged'])} | "
                     f"{r['wall_per_avatar']:.3f} | {r['cpu_per_avatar']:.3f} |")
    spread = {}
    for r in ctx["samplers"]:
        spread.setdefault((r["method"], r["steps"]), []).append(r["rgb_l1_truth"])
    lines += ["", "Sampler-seed spread of RGB L1 vs truth: " + "; ".join(
        f"{m} {s}: {np.mean(v):.4f} +- {np.std(v, ddof=1):.4f} ({len(v)} seeds)" for (m, s), v in spread.items() if len(v) > 1), ""]
    if ctx.get("posterior"):
        lines += posterior_lines(ctx)
    if ctx.get("budget"):
        from dinar_complete_budget import budget_lines  # scripts/, beside this file

        lines += budget_lines(ctx["budget"])
    lines += ["### Table 2 rows (held-out people, novel views)", "",
              "Renders at the person's other 5 views (their real poses and cameras) over white, against the real views "
              "over white: PSNR, MS-SSIM with 3 scales (as the stage-1 section), ReID cosine (`reid-synthetic`), and the "
              "L1 of the texture's RGB channels on the atlas texels unseen in the input against the exact ground-truth "
              "texture. Rows without inpainting have RGB 0 (grey) there: the renderer fills those texels in image space; "
              "the neural-texture row has no RGB channels (\"-\"). Inpainted textures are rendered with DINAR's eq. 6 "
              "texture: the decoded 21 channels (masks included) outside B_fill, the input's on B_fill.", ""]
    lines += table2_lines(ctx)
    if ctx["args"]["finetune"] == "False":
        lines += ["The \"+ RGB fine-tuning\" row was not run in this evaluation (--no_finetune): "
                  "`zoo.inference.dinar_finetune.finetune_rgb` (DINAR's 64 / 128 steps per avatar, on main) took more than "
                  "7 wall minutes for 4 avatars on this shared CPU in a trial, beyond the time left.", ""]
    if ctx.get("previous"):
        lines += previous_lines(ctx)
    lines += ["![Table 2 rows](dinar_complete_figure.png)", "",
              "Figure (`docs/dinar_complete_figure.png`): one line per Table 2 row, top to bottom in the table's order; "
              "per held-out person (front input): the input view, the render at the person's most frontal other view, "
              "the render at its most back-facing view.", "",
              "![animation](dinar_complete_animation.png)", "",
              "Animation strip (`docs/dinar_complete_animation.png`): the last row's avatar of the same people (input "
              "first), turntable at 0 / 90 / 180 / 270 degrees, then four phases of a walk seen from 30 degrees, on the "
              "template Anny body.", ""]
    text = path.read_text() if path.is_file() else ""
    old = text[text.index(START):text.index(END)] if START in text and END in text else ""
    lines += ([old[old.index(DISCUSSION):].rstrip("\n")] if DISCUSSION in old else [DISCUSSION, ""]) + [END]
    if START in text and END in text:
        text = text[:text.index(START)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)
