"""DINAR stage 1 at CPU size on the shaded synthetic avatars: writes the whole of docs/dinar_results.md
(+ docs/dinar_figure.png, dinar_curves.png, dinar_animation.png) from one resumable run.

    nice -n 10 python scripts/dinar_results.py all --steps 600 --seeds 0 1 [--long-steps 1200]

Phases (each resumes: training restarts from a run's last checkpoint, evaluations are cached as JSON):
  1. train every texture row (`ROWS`) with every seed for `--steps` optimiser steps
     (`configs/dinar/avatar_cpu.yaml`, one run per row and seed, runs/<row>_s<seed>/);
  2. evaluate each run's step-`--steps` checkpoint on the held-out identities (`dinar_eval.evaluate_model`:
     every ordered pair of views of each test person, single-view and merged textures, occlusion
     detector on and off) and write the document (`write_doc`: one function per table, `SECTIONS`);
  3. with `--long-steps`, continue the DINAR row's seed-0 run to that step, evaluate it and rewrite the
     document with the longer run's figures and rows beside the matched-step ones.
Stage-2 rows (inpainting, fine-tuning) plug in as texture methods (`dinar_eval.SOURCE_METHODS`) and
document sections (`SECTIONS`); the old unshaded run's numbers come from dinar_results_previous.json.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "dinar" / "avatar_cpu.yaml"
DOCS = REPO / "docs"
ROWS = {"both": "RGB + neural texture (DINAR)", "neural": "neural texture only", "rgb": "RGB texture only"}
TRAIN_ORDER = ("both", "rgb", "neural")  # every seed of a row before the next row
PREVIOUS = Path(__file__).resolve().parent / "dinar_results_previous.json"
ev = None  # scripts/dinar_eval.py, imported by main()
dr = None  # scripts/dinar_references.py, imported by main()
# How the run behind the committed document went (update it with the document).
HISTORY = [
    "- Run history, for the record: the runs were trained with this script's `row_config` on the committed",
    "  configuration, two background processes at a time (/work/cache-dinar-modules/exp10/exp.py, which calls",
    "  `row_config` and `python -m zoo fit` as `train_run` does), 08:18-09:10 UTC on 2026-11-30 under load 3-4;",
    "  this command then found every milestone, trained nothing, evaluated and wrote the document. The DINAR",
    "  row's seed 0 ran to step 4000, then continued from its last checkpoint to 6000 (its CSV log is in two",
    "  parts). The previous run (60 identities, batch norm, no full-res skip, 500 steps) is kept in",
    "  /work/cache-dinar-modules/v3/out; the throwaway runs behind this configuration in",
    "  /work/cache-dinar-modules/exp10 and exp_skip*.",
]
# What the figures of the run behind the committed document show, read by eye (update it with the document).
READING = [
    "- Read by eye, `dinar_animation.png` (the DINAR row's longer run, seed 0, step 6000): the held-out people",
    "  are recognisable from every side their input saw and in every walk phase: magenta trousers under a dark",
    "  patterned top (first person), a bright green shirt over dark trousers (second), teal trousers and a teal top",
    "  (third). Turned away from the input (the 180 degree turntable frame) their backs are purple / grey guesses,",
    "  which is what stage 2's inpainting is for. In the earlier runs every person came out as the same dark,",
    "  desaturated figure (section \"Why earlier runs' renders did not look like the people\").",
    "- `dinar_figure.png` (every row at the matched 1600 steps, seed 0) is earlier in that progress: the DINAR",
    "  row carries some seen colours (the third person's teal trousers, the fourth's blue-green top) and its",
    "  merged textures more, but magenta trousers come out skin-coloured or dark; the neural-only row draws the",
    "  same khaki figure for every person, and the RGB-only row dark figures with a tint of the top's colour.",
    "- The longer run's held-out PSNR moved between 20.4 and 23.0 dB at the input view from 1600 to 6000 steps",
    "  with no upward trend (table \"Longer run\") while its renders' colours improved: at 64 px PSNR is ruled by",
    "  the silhouette and the background (table \"Where this run's input-view error lies\"), not by likeness.",
    "  Its training losses, by 600-batch windows, L2 0.0284 / 0.0226 / 0.0231 / 0.0216 / 0.0196 and Dice",
    "  0.0437 / 0.0277 / 0.0266 / 0.0255 / 0.0233, still fall slowly (about 9% over the last 600 batches): not flat.",
    "- Seeds differ a lot at this budget: 23.04 / 21.30 dB input-view PSNR for the DINAR row's two seeds, 20.96 /",
    "  18.35 for the neural-only row; only one seed ran the longer schedule.",
]


def run_dir(out: Path, row: str, seed: int) -> Path:
    return out / "runs" / f"{row}_s{seed}"


def row_config(row: str, seed: int, out: Path, max_steps: int, milestones: list[int]) -> Path:
    """The CPU config changed into one texture row (`ROWS`) and seed, logging to CSV."""
    config = yaml.safe_load(CONFIG.read_text())
    config["seed_everything"] = seed
    net = config["model"]["init_args"]["network"]["init_args"]
    renderer = net["renderer"]["init_args"]
    if row == "neural":
        net["use_rgb_channels"] = False
        renderer["texture_channels"] = net["generator"]["init_args"]["out_channels"]
    elif row == "rgb":
        net["encoder"] = net["generator"] = None
        renderer["texture_channels"] = 5
    config["model"]["init_args"]["export_path"] = None
    run = run_dir(out, row, seed)
    config["trainer"].update(max_steps=max_steps, enable_progress_bar=False, default_root_dir=str(run),
                             logger={"class_path": "pytorch_lightning.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(run), "name": "csv", "version": 0}})
    checkpoint = "pytorch_lightning.callbacks.ModelCheckpoint"
    config["trainer"]["callbacks"] = [  # last.ckpt every 50 steps (resume); a kept checkpoint per milestone
        {"class_path": checkpoint, "init_args": {"dirpath": str(run / "ckpt"), "save_last": True, "save_top_k": 0,
                                                 "every_n_train_steps": 50}}]
    config["trainer"]["callbacks"] += [
        {"class_path": checkpoint, "init_args": {"dirpath": str(run / "ckpt"), "filename": f"milestone-{{step}}-{m}",
                                                 "save_top_k": -1, "every_n_train_steps": m}} for m in milestones]
    run.mkdir(parents=True, exist_ok=True)
    path = run / "row_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def milestone(out: Path, row: str, seed: int, step: int) -> Path | None:
    found = sorted((run_dir(out, row, seed) / "ckpt").glob(f"milestone-step={step}-*.ckpt"))
    return found[0] if found else None


def train_run(row: str, seed: int, out: Path, steps: int, milestones: list[int]) -> None:
    """Train (or resume) one run up to `steps`; the CSV of an interrupted segment is kept as a part."""
    if milestone(out, row, seed, steps) is not None:
        return
    path = row_config(row, seed, out, steps, milestones)
    run = run_dir(out, row, seed)
    command = [sys.executable, "-m", "zoo", "fit", "--config", str(path)]
    last = run / "ckpt" / "last.ckpt"
    if last.is_file():
        command.append(f"--ckpt_path={last}")
        logs = run / "csv" / "version_0"
        if (logs / "metrics.csv").is_file():  # a resumed run rewrites metrics.csv: keep the earlier part
            shutil.copy(logs / "metrics.csv", logs / f"metrics_part{len(list(logs.glob('metrics_part*.csv'))) + 1}.csv")
    print(" ".join(command), flush=True)
    with open(run / "train.log", "a") as log:
        subprocess.run(command, check=True, cwd=run, stdout=log, stderr=subprocess.STDOUT)


def training_curves(out: Path, runs: list[tuple[str, int]], keys: list[str]) -> dict:
    """Per run and logged key, [(step, value)] from every CSV part (later parts win)."""
    series = {}
    for row, seed in runs:
        logs = run_dir(out, row, seed) / "csv" / "version_0"
        paths = sorted(logs.glob("metrics_part*.csv")) + [logs / "metrics.csv"]
        for key in keys:
            points = {}
            for p in paths:
                if p.is_file():
                    points.update({int(r["step"]): float(r[key]) for r in csv.DictReader(p.open()) if r.get(key)})
            if points:
                series[(row, seed, key)] = sorted(points.items())
    return series


# ----------------------------------------------------------------------------------------------- document
def fmt(values: list[float], digits: int) -> str:
    """Mean over seeds, then each seed's value: '23.41 (23.30 / 23.52)'."""
    mean = sum(values) / len(values)
    return f"{mean:.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


DIGITS = {"psnr": 2, "ms_ssim": 4, "reid_cos": 4}
NAMES = {"psnr": "PSNR", "ms_ssim": "MS-SSIM (3 scales)", "reid_cos": "ReID cosine"}


def section_setup(ctx: dict) -> list[str]:
    from zoo.datamodules.synthetic import SyntheticPeopleDataModule

    a = ctx["args"]
    cfg = yaml.safe_load(CONFIG.read_text())
    data = cfg["data"]["init_args"]
    model = cfg["model"]["init_args"]
    lr, disc_lr = model.get("lr", 2e-3), model.get("disc_lr") or model.get("lr", 2e-3)
    settings = SyntheticPeopleDataModule(preset=data["preset"], overrides=data.get("overrides")).settings
    ids, views = settings.num_identities, settings.views_per_identity
    split = [len(r) for r in settings.split_identities().values()]  # train, val, test
    people = min(ev.EVAL_PEOPLE, split[2])
    return [
        "# DINAR stage 1 at CPU size: texture rows, seeds, merging, occlusion detector, front / back", "",
        "What this shows: the zoo's DINAR stage-1 pipeline (`NeuralAvatarSystem`: StyleGAN2 encoder + generator ->",
        "neural texture, joined with RGB channels scattered from the input image, drawn by the pix2pix neural",
        "renderer in the target pose and camera) trained end to end on a shared 2-core CPU, compared on held-out",
        "synthetic identities. Small images and textures (64 px) and a short budget: read it as \"which directions",
        "hold at this size, beyond the seed-to-seed spread\", not as a reproduction of the paper's numbers.", "",
        "## Setup (what was actually run)", "",
        f"- Command: `{ctx['command']}` (ZOO_HOME held `reid-synthetic`; one background process, `nice -n 10`,",
        f"  `OMP_NUM_THREADS=1`). Generated {ctx['date']} on {ctx['machine']}. Evaluations are cached per run",
        "  (`<out>/eval/*.json`, `dinar_eval.evaluate_model`); a rerun of the same command reuses the finished runs",
        "  and evaluations and only redraws the figures and this text.",
        *HISTORY,
        f"- Runs: {len(a.seeds)} seeds ({', '.join(map(str, a.seeds))}) x {len(ctx['rows'])} texture rows, {a.steps} optimiser "
        f"steps each (Lightning counts the G and D steps: {a.steps // 2} batches of {data['batch_size']}).",
        "  Rows: **both** = 16 generated + 5 image-sampled channels (RGB, known mask, gap-fill mask; DINAR);",
        "  **neural** = the 16 generated channels only; **rgb** = the 5 image-sampled channels only (no encoder /",
        "  generator). Same data, losses, optimiser and steps; only the seed (weights init, pair draws, crops) differs.",
        f"- Data: `SyntheticAvatarDataModule`, preset `{data['preset']}` with {data['overrides']}: {ids} identities x {views}",
        "  views, each view its own walking pose and camera (yaw 0-360), **shading from a random light per identity",
        "  and clothes off the body surface** (what a per-texel RGB texture cannot explain); split by identity",
        f"  {split[0]} / {split[1]} / {split[2]}; occlusion detector on in training (`occlusion_detector: "
        f"{data['occlusion_detector']}`), erosion {data['erode']}.",
        "- Networks: `configs/dinar/avatar_cpu.yaml` (64 px images and textures; StyleEncoder / TextureGenerator /",
        "  discriminator with channel multiplier 1, base 32, max 64, style 128; NeuralRenderer base 16, 3",
        "  downsamplings, 2 residual blocks, batch norm, **a full-resolution skip** (a named departure from DINAR's",
        "  layout, measured in \"Why earlier runs' renders did not look like the people\"); 1.2 M + 0.1 M",
        "  parameters for the DINAR row). The paper-size modules",
        "  hold the reference's parameter counts (`python benchmarks/dinar_params.py`: 34,496,991 avatar network,",
        "  7,246,369 discriminator, equal layer for layer to a tally of SamsungLabs/DINAR's definitions).",
        "- Losses and optimiser: the paper's (L2 2.2, perceptual 1.0 on random crops centred on the body, 32 px = half",
        "  the image as 256 of 512, Dice 1.0, face again x0.1, non-saturating adversarial 0.01, lazy R1 0.1 every 16",
        f"  D steps; Adam betas (0, 0.99), batch 4), except the learning rate: **Adam {lr:g} for the encoder,",
        f"  generator and renderer, {disc_lr:g} for the discriminator** (`lr` / `disc_lr` of `NeuralAvatarSystem`,",
        "  whose default is the paper's 2e-3; `configs/dinar/avatar_dinar.yaml` keeps 2e-3). The departure is for",
        "  the CPU budget: see \"Why earlier runs' renders did not look like the people\" below.",
        "  **Perceptual stand-in**: LPIPS(vgg) weights are not on",
        "  this machine, so training used the configured stand-in, the zoo's synthetic ReID features; each run's",
        "  log says so. Its values are ~1e-5 against an L2 of ~0.03 (curve table), so at weight 1.0 it adds",
        "  practically nothing: these runs are trained by L2, Dice, face L2 and the adversarial term.",
        f"- Evaluation (`scripts/dinar_eval.py`): the first {people} of the {split[2]} held-out identities x {views} views "
        "(`EVAL_PEOPLE`, to bound the CPU time). Every view is used as the",
        f"  input once; the avatar is rendered at the same view (**input view**, {people * views} renders) and at the "
        f"{views - 1} other views",
        f"  (**novel view**: other pose and camera, {people * views * (views - 1)} renders). **Front / back input**: the "
        "input view counts as",
        "  front when the mean cosine between the surface normal and the direction to the camera over the face",
        "  texels is > 0 (the paper's Table 2 has 8 front and 7 back inputs). Targets are composited over white",
        "  like the renders. PSNR and MS-SSIM (3 scales: 5 need sides > 160 px; weights 0.0448 / 0.2856 / 0.3001",
        "  renormalised, Gaussian 11 / 1.5) on [0, 1]; ReID cosine = mean over the 4 stages of `reid-synthetic`",
        "  (higher = same identity). **LPIPS, DISTS and KID are not reported**: their feature-network weights",
        "  (VGG16 / Inception) are not on disk here and the zoo never downloads.",
        "- Seed-to-seed spread: cells show the mean over seeds, then each seed's value in brackets. A direction",
        "  \"holds beyond the seed spread\" when every seed of one row beats every seed of the other; otherwise it is",
        "  \"within the seed spread\". Evaluation-time switches (merging, occlusion detector) compare the same",
        "  trained network: they hold when the paired difference over the test pairs has the same sign in every",
        "  seed and exceeds 2 standard errors in each.", ""]


def pairs_of(ctx: dict, pairs: tuple) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairs if a in ctx["rows"] and b in ctx["rows"]]


def verdict_rows(values_a: list[float], values_b: list[float]) -> str:
    if min(values_a) > max(values_b):
        return "holds beyond the seed spread"
    if max(values_a) < min(values_b):
        return "reversed beyond the seed spread"
    return "within the seed spread"


def section_texture_rows(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Table 2 texture rows (held-out identities, single input view)", ""]
    for view in ("input", "novel"):
        lines += [f"### {view} view", "", "| texture | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|"]
        for row in ctx["rows"]:
            cells = [fmt([ev.mean(res[(row, s)], method="single", view=view, metric=m) for s in seeds], DIGITS[m])
                     for m in NAMES]
            lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Directions (paper: both > RGB only and both > neural only):", ""]
    for a, b in pairs_of(ctx, (("both", "rgb"), ("both", "neural"), ("neural", "rgb"))):
        for view in ("input", "novel"):
            parts = []
            for m in NAMES:
                va = [ev.mean(res[(a, s)], method="single", view=view, metric=m) for s in seeds]
                vb = [ev.mean(res[(b, s)], method="single", view=view, metric=m) for s in seeds]
                diff = sum(va) / len(va) - sum(vb) / len(vb)
                parts.append(f"{NAMES[m]} {diff:+.{DIGITS[m]}f}: {verdict_rows(va, vb)}")
                ctx["verdicts"].append((f"{a} - {b}, {view} view, {NAMES[m]}", f"{diff:+.{DIGITS[m]}f}",
                                        verdict_rows(va, vb)))
            lines.append(f"- {a} - {b}, {view} view: " + "; ".join(parts))
    return lines + [""]


def section_front_back(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    counts = ev.count(res[("both", seeds[0])], method="single", view="input", group_by="front")
    lines = ["## Front input vs back input (novel views)", "",
             f"Inputs seen from the front: {counts.get(True, 0)}; from the back: {counts.get(False, 0)} (of {sum(counts.values())}).", "",
             "| texture | input | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for front in (True, False):
            cells = [fmt([ev.mean(res[(row, s)], method="single", view="novel", metric=m, front=front) for s in seeds],
                         DIGITS[m]) for m in NAMES]
            lines.append(f"| {ROWS[row]} | {'front' if front else 'back'} | " + " | ".join(cells) + " |")
    lines += ["", "Directions per input side (novel views):", ""]
    for front in (True, False):
        for a, b in pairs_of(ctx, (("both", "rgb"), ("both", "neural"))):
            parts = []
            for m in NAMES:
                va = [ev.mean(res[(a, s)], method="single", view="novel", metric=m, front=front) for s in seeds]
                vb = [ev.mean(res[(b, s)], method="single", view="novel", metric=m, front=front) for s in seeds]
                diff = f"{sum(va) / len(va) - sum(vb) / len(vb):+.{DIGITS[m]}f}"
                parts.append(f"{NAMES[m]} {diff}: {verdict_rows(va, vb)}")
                ctx["verdicts"].append((f"{a} - {b}, {'front' if front else 'back'} input, novel view, {NAMES[m]}", diff,
                                        verdict_rows(va, vb)))
            lines.append(f"- {'front' if front else 'back'} input, {a} - {b}: " + "; ".join(parts))
    return lines + [""]


def paired_lines(ctx: dict, rows: list[str], method_a: str, method_b: str, pairing: str, view: str) -> list[str]:
    res, seeds, lines = ctx["results"], ctx["args"].seeds, []
    for row in rows:
        parts = []
        for m in NAMES:
            stats = [ev.paired(res[(row, s)], method_a, method_b, m, view, pairing) for s in seeds]
            holds = all(abs(d) > 2 * se for d, se in stats) and len({d > 0 for d, _ in stats}) == 1
            mean_d = sum(d for d, _ in stats) / len(stats)
            ctx["verdicts"].append((f"{ROWS[row]}: {ev.METHOD_NAMES[method_a]} - {ev.METHOD_NAMES[method_b]}, {view} view,"
                                    f" {NAMES[m]}", f"{mean_d:+.{DIGITS[m]}f}",
                                    "holds (every seed, > 2 SE)" if holds else "not beyond the spread"))
            parts.append(f"{NAMES[m]} " + " / ".join(f"{d:+.{DIGITS[m]}f} +- {se:.{DIGITS[m]}f}" for d, se in stats)
                         + (" (holds)" if holds else " (not beyond the spread)"))
        lines.append(f"- {ROWS[row]}: " + "; ".join(parts))
    return lines


def section_merging(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Single view vs merged views (paper eq. 4, tau 0.1)", "",
             "Per target view t of a held-out person: **single** = the mean over the other views used alone as",
             "input; **merged 2** = eq. 4 over views t+1 and t+2; **merged all** = eq. 4 over all the other views. Every",
             "channel is merged with softmax(cosine / 0.1) weights, no visibility mask (as DINAR's code).", "",
             "| texture | texture from | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for method in ("single", "merge2", "merge_all"):
            cells = [fmt([ev.mean(res[(row, s)], method=method, view="novel", metric=m, per_target=True)
                          for s in seeds], DIGITS[m]) for m in NAMES]
            lines.append(f"| {ROWS[row]} | {ev.METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    targets = len({(r["person"], r["target"]) for r in res[(ctx["rows"][0], seeds[0])]["records"] if r["method"] == "merge_all"})
    lines += ["", f"merged all - single (paired over the {targets} target views; per seed: mean +- standard error):", ""]
    lines += paired_lines(ctx, ctx["rows"], "merge_all", "single", "target", "novel")
    lines += ["", "merged 2 - single:", ""]
    lines += paired_lines(ctx, ctx["rows"], "merge2", "single", "target", "novel")
    return lines + [""]


def section_occlusion(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    rows = [r for r in ctx["rows"] if r != "neural"]  # the detector only changes the image-sampled channels
    share, tex = res[("both", seeds[0])]["occlusion_share"], ctx["occlusion_texels"]
    lines = ["## Occlusion detector on / off (at inference, same trained networks)", "",
             "The networks were trained with the detector on; here the input texture is built with it on or off.",
             f"On the test inputs the detector removes {100 * share:.1f}% of the body pixels from sampling. What it",
             "removes, without any network (`dinar_eval.occlusion_texels`): mean |sampled RGB - ground-truth albedo|",
             f"is {tex['removed']['error']:.3f} on the {int(tex['removed']['texels'])} texels sampled only with the "
             f"detector off, {tex['kept']['error']:.3f} on the {int(tex['kept']['texels'])} texels sampled either way",
             "([-1, 1] units; the shading darkens every texel).", "",
             "| texture | detector | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|---|"]
    for row in rows:
        for view in ("input", "novel"):
            for method in ("single", "no_occlusion"):
                cells = [fmt([ev.mean(res[(row, s)], method=method, view=view, metric=m) for s in seeds], DIGITS[m])
                         for m in NAMES]
                lines.append(f"| {ROWS[row]} | {'on' if method == 'single' else 'off'} | {view} | "
                             + " | ".join(cells) + " |")
    for view in ("input", "novel"):
        lines += ["", f"on - off, {view} view (paired over pairs; per seed):", ""]
        lines += paired_lines(ctx, rows, "single", "no_occlusion", "pair", view)
    return lines + [""]


def section_training(ctx: dict) -> list[str]:
    series = ctx["curves"]
    lines = ["## Training curves", "", "![curves](dinar_curves.png)", "",
             f"x = logged batch; every run stops at batch {ctx['args'].steps // 2} except the longer run of the "
             "DINAR row (dark red), which goes on.", "",
             "Moving average of the last 10 logged values (every 10 batches) at 10% of training, 50% and the end;",
             "\"last 20% change\" = relative change of that average over the last fifth of training (small = flat).", "",
             "| run | loss | at 10% | at 50% | end | last 20% change |", "|---|---|---|---|---|---|"]
    for (row, seed, key), pts in sorted(series.items()):
        if key not in ("train/l2", "train/dice", "train/perceptual", "train/d_loss"):
            continue
        pts = [(st, v) for st, v in pts if st < ctx["args"].steps // 2]  # matched budget (the long run goes on)
        smooth = ev.moving_average([v for _, v in pts], 10)
        at = lambda f: smooth[min(len(smooth) - 1, int(f * len(smooth)))]  # noqa: E731
        change = (at(1.0) - at(0.8)) / max(abs(at(0.8)), 1e-9)
        lines.append(f"| {row} s{seed} | {key[6:]} | {at(0.1):.4g} | {at(0.5):.4g} | {at(1.0):.4g} | {100 * change:+.1f}% |")
    return lines + [""]


def section_figures(ctx: dict) -> list[str]:
    return ["## Figures", "", "![renders](dinar_figure.png)", "",
            f"`dinar_figure.png` (seed {ctx['args'].seeds[0]}, step {ctx['args'].steps}): one held-out person per "
            "line, the first two inputs seen from the front, the next two from the back. Columns: input view, real "
            "novel view (a view from the other side when the person has one), the render of each row ("
            + ", ".join(ROWS[r] for r in ctx["rows"]) + f"), then the {ROWS[ctx['rows'][0]]} row from all the other "
            "views merged.", "",
            "![animation](dinar_animation.png)", "",
            f"`dinar_animation.png`: the DINAR avatar ({ctx['animation_step']} steps) of held-out people (input "
            "image first), turntable at 0 / 90 / 180 / 270 degrees, then four phases of a walk cycle seen from 30 "
            "degrees, on the template Anny body (the person's own body shape is not estimated here).", ""]


def section_long(ctx: dict) -> list[str]:
    """The DINAR row's first seed at every longer step evaluated (`<out>/eval/both_s<seed>_step<N>.json`)."""
    a, res = ctx["args"], ctx["results"]
    if not a.long_steps or ("both", a.seeds[0], a.long_steps) not in ctx["long"]:
        return []
    steps = sorted(int(p.stem.rsplit("step", 1)[1]) for p in (a.out / "eval").glob(f"both_s{a.seeds[0]}_step*.json"))
    runs = [(a.steps, res[("both", a.seeds[0])])] + [
        (n, json.loads((a.out / "eval" / f"both_s{a.seeds[0]}_step{n}.json").read_text())) for n in steps if n > a.steps]
    lines = [f"## Longer run: DINAR row, seed {a.seeds[0]}, up to {a.long_steps} steps", "",
             "| steps | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for view in ("input", "novel"):
        for n, r in runs:
            lines.append(f"| {n} | {view} | " + " | ".join(
                f"{ev.mean(r, method='single', view=view, metric=m):.{DIGITS[m]}f}" for m in NAMES) + " |")
    return lines + ["", "One seed only: the longer run shows the trend with training, not a seed-checked row. The "
                    "animation strip is drawn by its last checkpoint.", ""]


def section_previous(ctx: dict) -> list[str]:
    prev = json.loads(PREVIOUS.read_text())
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Previous run beside this one", "", prev["description"], "",
             f"| texture | view | metric | {prev['label']} | this run (mean of seeds) |",
             "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for view in ("input", "novel"):
            for m in NAMES:
                now = sum(ev.mean(res[(row, s)], method="single", view=view, metric=m) for s in seeds) / len(seeds)
                lines.append(f"| {ROWS[row]} | {view} | {NAMES[m]} | {prev['rows'][row][view][m]:.{DIGITS[m]}f} | "
                             f"{now:.{DIGITS[m]}f} |")
    return lines + ["", f"Same losses and metrics; the two differ in {prev['differs']} and the training "
                    f"length ({prev['steps']} vs {ctx['args'].steps} steps).", ""]


def section_missing(ctx: dict) -> list[str]:
    absent = [ROWS[r] for r in ROWS if r not in ctx["rows"]]
    return ["## Not reached here (said plainly)", ""] + (
        [f"- Rows not trained to {ctx['args'].steps} steps with every seed in the time of this run: {', '.join(absent)}."]
        if absent else []) + [
            "- Renders that look like the held-out people: reached for the DINAR row's longer run (seed 0, see",
            "  \"How far this run goes\"), not for every row and seed at the matched budget; the held-out PSNR of that",
            "  run also dipped mid-training (table \"Longer run\"), so one more seed of the long run is missing.",
            "- The generated channels: the probes above show they matter much less than the image-sampled RGB for",
            "  the render (stage 2's diffusion inpaints them; the neural-only row relies on them alone).",
            "- LPIPS, DISTS, KID: no feature-network weights on this machine; training used the ReID stand-in for",
            "  LPIPS(vgg).",
            "- Training at the paper's size (`configs/dinar/avatar_dinar.yaml`, 512 px, 100k steps): a GPU job, not run.",
            "- The occlusion detector is compared at inference only (networks trained with it on); the synthetic",
            "  data has exact body UVs, so the SMPL-X fitting errors it guards against in the paper are absent.",
            "- Stage-2 rows of Table 2 (+ inpainting, + fine-tuning): the DINAR complete section above (issue 11). Its",
            "  frozen stage-1 networks are the previous run's (v3: 60 identities, batch norm, no full-res skip, seed 0,",
            "  500 steps), not this run's; stage 2 was not retrained on these.", ""]


def section_reading(ctx: dict) -> list[str]:
    """What the run can say about training length, from its own numbers."""
    a, res, seeds = ctx["args"], ctx["results"], ctx["args"].seeds
    gaps = {row: [ev.mean(res[(row, s)], method="single", view="input", metric="psnr")
                  - ev.mean(res[(row, s)], method="single", view="novel", metric="psnr") for s in seeds]
            for row in ctx["rows"]}
    spread = {row: max(v) - min(v) for row in ctx["rows"]
              for v in [[ev.mean(res[(row, s)], method="single", view="novel", metric="psnr") for s in seeds]]}
    falling = sorted({f"{key[6:]}" for (row, seed, key), pts in ctx["curves"].items()
                      if key in ("train/l2", "train/dice")
                      for sm in [ev.moving_average([v for _, v in pts], 10)]
                      if (sm[-1] - sm[int(0.8 * (len(sm) - 1))]) / max(abs(sm[int(0.8 * (len(sm) - 1))]), 1e-9) < -0.02})
    return ["## How far this run goes", "",
            f"- Budget: {a.steps // 2} batches of 4 per run (the paper: 100k iterations); every row and seed got the "
            "same budget on a machine shared with other long jobs.",
            "- Input view minus novel view PSNR per row (per seed): " + "; ".join(
                f"{ROWS[r]} " + " / ".join(f"{g:+.2f}" for g in gaps[r]) + " dB" for r in ctx["rows"])
            + ". A network that had learnt to copy the input image's own pixels would be clearly better at the input "
            "view than at novel ones; differences this small mean the renders do not yet reproduce the input view "
            "more closely than other views.",
            "- Seed-to-seed spread of novel-view PSNR (max - min over seeds): " + "; ".join(
                f"{ROWS[r]} {spread[r]:.2f} dB" for r in ctx["rows"]) + ".",
            "- Training losses still falling over the last fifth of training (by more than 2%): "
            + (", ".join(falling) + " (not flattened)." if falling else "none (flattened by this measure)."),
            *READING,
            f"- With {len(seeds)} seeds, \"every seed of A beats every seed of B\" also happens by chance: for two "
            "rows that do not differ, with probability 1/6 in each direction for 2 seeds. Read a single \"holds\" or "
            "\"reversed\" among the many tested differences as weak evidence, a pattern across metrics and views as "
            "stronger.", ""]


DIAGNOSIS = [
    "### The first run (lr 2e-3, 150 batches; /work/cache-dinar-modules/v2)",
    "",
    "Its renders had the person's pose and silhouette but blotchy, wrong",
    "colours, the RGB-only row included, and its PSNR sat near 21 dB from 600 steps on. Checks made before this",
    "run (one batch of the held-out people, 64 px; the first is now `tests/datamodules/test_avatars.py::",
    "test_rgb_channels_give_back_the_source_pixels_at_the_source_view`, the others were throwaway loops):",
    "",
    "- UV conventions agree: the 5 image-sampled channels looked up (nearest) at the source view's own UV give",
    "  back the source pixels within 0.007-0.030 mean |error| ([-1, 1] units) on the known body pixels of 8",
    "  views, against 0.31-0.44 with v flipped; bilinear with align_corners False or True: 0.03-0.05. Values are",
    "  in [-1, 1] everywhere (input, texture, targets, tanh output; the eval converts with (x + 1) / 2).",
    "- The renderer can fit: the RGB-only renderer overfitted on 4 fixed source -> source pairs (L2 alone, Adam",
    "  2e-3) goes from MSE 0.50 to 0.0054 in 200 steps (eval mode 0.0056: BatchNorm's running statistics are fine),",
    "  and its output depends on the texture (swapping the RGB channels between views changes the output by 0.25",
    "  on the body).",
    "- What limited it was the budget at the paper's learning rate: with equalised-lr layers (weights N(0, 1)",
    "  scaled at run time) Adam 2e-3 moves each weight by about 0.2% per step, which the paper spends over 100k",
    "  steps. Renderer-only checks (RGB-only renderer, L2 + Dice, 150 batches): input-view PSNR 20.6 at lr 2e-3,",
    "  21.9 at 1e-2, 21.4 at 3e-2; instance norm instead of batch norm 21.0 (at 1e-2). In these checks (150-500",
    "  batches, lr 1e-2, source -> target or source -> source) the colour error on the body pixels stayed at the",
    "  level of painting each person's mean colour (18.6-18.9 vs 18.55 dB body-pixel PSNR; copying the sampled",
    "  pixels gives 23.0). Whole system, 40 batches: Dice 0.54 at 2e-3, 0.09 at 1e-2 (the previous run ended at",
    "  Dice 0.25 after 150). Hence this run's lr 1e-2 (generator side).",
    "- PSNR at 64 px is ruled by the silhouette, not the colours: the clothes reach past the body mesh (8.9% of",
    "  the person's pixels differ from the body render), and a wrong silhouette pixel (dark person vs white) costs",
    "  as much as 50-100 pixels of a 0.2 colour error. The no-network references below show it: a perfect copy of",
    "  the input's colours drawn in the body silhouette scores about what the previous run's networks scored.",
    "- Copying is learnt slowly even by a tiny network: 3 plain 3x3 conv layers on the sampled texture, trained",
    "  source -> source (L2 + Dice, Adam 3e-3), reach 25.9 dB input-view PSNR and 21.4 dB on the body pixels",
    "  (the copy: 23.0) only after 600 batches.",
    "",
    "### The second run (lr 1e-2, 250 batches, 60 identities; /work/cache-dinar-modules/v3)",
    "",
    "Its renders were dark, desaturated figures near the training people's mean colour, and the DINAR row's",
    "seed 0 trained on to 2500 steps fell from 20.97 to 18.56 dB held-out input-view PSNR while its training L2",
    "kept falling. Checks that led to this run's configuration (DINAR row, seed 0, the previous data unless said;",
    "held-out PSNR input / novel view, on that run's 6 held-out people; throwaway runs in",
    "/work/cache-dinar-modules/exp_skip*, exp10):",
    "",
    "- Finest skip: DINAR's U-Net hands its heads nothing finer than half resolution, where a 64 px person's",
    "  limb is 1-2 px wide. A 1x1 convolution from the U-Net's input to its output features",
    "  (`NeuralRenderer(full_res_skip=True)`) gave 21.64 / 21.43 dB at 500 steps against 20.97 / 20.92 without.",
    "- Batch norm vs instance norm: with the skip, 20.65 / 20.37 dB at 1000 steps with batch norm against",
    "  21.71 / 21.39 with instance norm, and the second run's batch-norm network had been better in train mode",
    "  than in eval mode at 2500 steps. But instance norm removes each texture's and each image's own channel",
    "  means, so the colour of the input cannot reach the render: the instance-norm network (400 identities,",
    "  2000 steps) drew the same grey body (mean RGB -0.44 / -0.55 / -0.43 +- 0.03) whether the texture's RGB",
    "  channels were painted uniformly magenta, green, white or black; the batch-norm one (1000 steps) drew",
    "  black -0.99 and white 0.01. Its higher PSNR came from a better mean colour and silhouette, not from the",
    "  person's colours. So this run keeps DINAR's batch norm.",
    "- Adam beta1 0.9 instead of DINAR's 0: 22.35 / 21.77 against 21.50 / 20.94 dB at 2000 steps, but 22.47 / 21.98",
    "  against 22.68 / 21.95 at 4000: no lasting gain, so DINAR's (0, 0.99) stays.",
    "- Memorisation: with the skip and instance norm, the same network scored (input / novel view PSNR)",
    "  21.71 / 21.39 dB held out and 22.35 / 21.95 on 6 training people at 1000 steps; 22.68 / 21.95 held out and",
    "  25.98 / 25.42 on training people at 4000; 22.43 / 21.72 and 26.52 / 26.01 at 7000. Held out it stopped",
    "  improving after 4000 steps while the training people kept improving, and its held-out renders grew red /",
    "  green streaks: 48 training people are too few. Hence this run's 400 identities (320 for training); with",
    "  them (instance norm, seed 1, 2000 steps) the gap shrank to 22.70 / 22.05 held out against 23.12 / 22.54 on",
    "  6 training people.",
    "- The generated channels were nearly unused: swapping the 16 generated channels of one held-out person's",
    "  texture for another's changed its render on the body by 0.0018 (mean |difference|, [-1, 1] units) at",
    "  1000 steps and 0.034 at 6000, against 0.125 and 0.266 for the 5 image-sampled channels.",
    "",
]


def section_references(ctx: dict) -> list[str]:
    """Why the previous run's renders failed, and the no-network references (`dinar_references`)."""
    res = ctx["references"]
    names, seeds = {k: v for k, v in ROWS.items() if k in ctx["rows"]}, ctx["args"].seeds
    lines = ["## Why earlier runs' renders did not look like the people", "", *DIAGNOSIS,
             "No-network references on the same held-out views (`scripts/dinar_references.py`), beside this run's",
             f"trained rows (mean of seeds, step {ctx['args'].steps}):", "",
             "| texture / reference | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for view in ("input", "novel"):
        for row, name in names.items():
            means = [sum(ev.mean(ctx["results"][(row, s)], method="single", view=view, metric=m) for s in seeds) / len(seeds)
                     for m in NAMES]
            cells = [f"{v:.{DIGITS[m]}f}" for v, m in zip(means, NAMES)]
            lines.append(f"| {name} | {view} | " + " | ".join(cells) + " |")
        for method, name in dr.REFERENCES.items():
            cells = [f"{ev.mean(res, method=method, view=view, metric=m):.{DIGITS[m]}f}" for m in NAMES]
            lines.append(f"| {name} (no network) | {view} | " + " | ".join(cells) + " |")
    lines += ["", "Unknown texels of a copy take the person's mean sampled colour; the novel-view copies show "
              "that colour wherever the input did not see the surface.", "",
              f"Where this run's input-view error lies (seed {seeds[0]}, step {ctx['args'].steps}; "
              "`dinar_references.error_regions`; MSE in [-1, 1] units; \"mask on clothes\" = the renderer's mean "
              "person mask on the clothes pixels, 1 = drawn):", "",
              "| texture | " + " | ".join(f"{dr.REGIONS[k]}: pixels / MSE / share" for k in dr.REGIONS)
              + " | image MSE (PSNR) | mask on clothes |", "|---|---|---|---|---|---|"]
    for row, name in names.items():
        reg = ctx["regions"][row]
        cells = [f"{100 * reg['regions'][k]['pixels']:.1f}% / {reg['regions'][k]['mse']:.3f} / "
                 f"{100 * reg['regions'][k]['share']:.0f}%" for k in dr.REGIONS]
        psnr = 10 * math.log10(4 / reg["mse"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {reg['mse']:.4f} ({psnr:.2f} dB) | {reg['clothes_mask']:.2f} |")
    return lines + [""]


def section_stage2(ctx: dict) -> list[str]:
    """The stage-2 block (issue 11: inpainting, Table 2 rows, sampler table) that
    scripts/dinar_complete_results.py wrote into the document, kept as it is."""
    path = DOCS / "dinar_results.md"
    text = path.read_text() if path.is_file() else ""
    start, end = "<!-- DINAR_COMPLETE:START -->", "<!-- DINAR_COMPLETE:END -->"
    if start not in text or end not in text:
        return []
    return text[text.index(start):text.index(end) + len(end)].split("\n") + [""]


SECTIONS = [section_setup, section_reading, section_references, section_texture_rows, section_front_back, section_merging,
            section_occlusion, section_long, section_training, section_figures, section_previous, section_stage2, section_missing]


def summary(ctx: dict) -> list[str]:
    """Every direction the tables tested that holds beyond the spread, then the count of the others."""
    held = [v for v in ctx["verdicts"] if not v[2].startswith(("within", "not"))]
    lines = ["## Summary: directions that hold beyond the spread", "",
             f"Of {len(ctx['verdicts'])} differences tested below, {len(held)} hold(s) beyond the seed-to-seed spread "
             "(texture rows) or in every seed beyond 2 standard errors (evaluation-time switches); the rest do not.", ""]
    lines += [f"- {name}: {diff} ({verdict})" for name, diff, verdict in held]
    return lines + [""]


def write_doc(ctx: dict) -> Path:
    ctx["verdicts"] = []
    parts = [section(ctx) for section in SECTIONS]
    lines = [line for part in parts[:1] + [summary(ctx)] + parts[1:] for line in part]
    path = DOCS / "dinar_results.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


# ----------------------------------------------------------------------------------------------- driver
def reid_network():
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    return freeze(load_pretrained("reid-synthetic"))


def evaluate_all(args, runs: list[tuple[str, int]], step: int) -> dict:
    reid = reid_network()
    results = {}
    for row, seed in runs:
        cache = args.out / "eval" / f"{row}_s{seed}_step{step}.json"
        if not cache.is_file():
            ckpt = milestone(args.out, row, seed, step)
            records = ev.evaluate_model(run_dir(args.out, row, seed) / "row_config.yaml", ckpt, reid)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(records))
            print(f"evaluated {row} seed {seed} step {step}", flush=True)
        results[(row, seed)] = json.loads(cache.read_text())
    return results


def cached(path: Path, compute):
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compute()))
    return json.loads(path.read_text())


def document(args, long: dict) -> None:
    rows = [r for r in ROWS if all(milestone(args.out, r, s, args.steps) is not None for s in args.seeds)]
    runs = [(r, s) for s in args.seeds for r in rows]
    results = evaluate_all(args, runs, args.steps)
    seed = args.seeds[0]
    anim_step = args.long_steps if long else args.steps
    if not args.no_figures:  # --no-figures: rewrite the text only, keeping the PNGs of the last full run
        fig_runs = {r: (run_dir(args.out, r, seed) / "row_config.yaml", milestone(args.out, r, seed, args.steps))
                    for r in rows}
        ev.figure(fig_runs, DOCS / "dinar_figure.png")
        ev.animation_strip(run_dir(args.out, "both", seed) / "row_config.yaml",
                           milestone(args.out, "both", seed, anim_step), DOCS / "dinar_animation.png")
    keys = ["train/l2", "train/dice", "train/perceptual", "train/g_adv", "train/d_loss"]
    curves = training_curves(args.out, runs, keys)
    ev.draw_curves(curves, keys, DOCS / "dinar_curves.png")
    ctx = {"args": args, "rows": rows, "results": results,
           "occlusion_texels": cached(args.out / "eval" / "occlusion_texels.json",
                                      lambda: ev.occlusion_texels(run_dir(args.out, "both", seed) / "row_config.yaml")),
           "references": cached(args.out / "eval" / "references.json",
                                lambda: dr.evaluate_references(run_dir(args.out, "both", seed) / "row_config.yaml",
                                                               reid_network())),
           "regions": {r: cached(args.out / "eval" / f"regions_{r}_s{seed}_step{args.steps}.json",
                                 lambda r=r: dr.error_regions(run_dir(args.out, r, seed) / "row_config.yaml",
                                                              milestone(args.out, r, seed, args.steps)))
                       for r in rows},
           "long": long, "curves": curves, "animation_step": anim_step,
           "command": "OMP_NUM_THREADS=1 nice -n 10 python scripts/dinar_results.py all " + " ".join(args.argv),
           "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
           "machine": f"a shared 2-core CPU ({platform.machine()}, {os.cpu_count()} cores visible, "
                      f"torch {torch.__version__}, {torch.get_num_threads()} thread)"}
    print(f"wrote {write_doc(ctx)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["all", "train", "doc"])
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps per run (G and D each count)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--long-steps", type=int, default=0, help="then continue the DINAR row's first seed to this")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "dinar_results")
    parser.add_argument("--no-figures", action="store_true", help="doc: rewrite the text, keep the PNGs")
    argv = [a for a in sys.argv[1:] if a != "--no-figures"]
    args = parser.parse_args()
    args.argv = argv[1:]
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    milestones = [args.steps] + ([args.long_steps] if args.long_steps else [])
    if args.command in ("all", "train"):
        for row in TRAIN_ORDER:
            for seed in args.seeds:
                train_run(row, seed, args.out, args.steps, milestones)
    if args.command == "train":
        return
    global ev, dr
    import dinar_eval as ev  # noqa: F811  (imported after training: the tables' evaluation helpers)
    import dinar_references as dr  # noqa: F811

    key = ("both", args.seeds[0], args.long_steps)
    document(args, {})
    if args.long_steps:
        if args.command == "all":
            train_run("both", args.seeds[0], args.out, args.long_steps, milestones)
        if milestone(args.out, *key) is not None:
            document(args, {key: evaluate_all(args, [key[:2]], args.long_steps)[key[:2]]})


if __name__ == "__main__":
    main()
