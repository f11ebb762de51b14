"""DINAR stage 1 at CPU size on the shaded synthetic avatars: writes the whole of docs/dinar_results.md
(+ docs/dinar_figure.png, dinar_curves.png, dinar_animation.png) from one resumable run.

    nice -n 10 python scripts/dinar_results.py all --steps 600 --seeds 0 1 [--long-steps 1200 [--long-runs both:0 rgb:0]]

Phases (each resumes: training restarts from a run's last checkpoint, evaluations are cached as JSON):
  1. train every texture row (`ROWS`) with every seed for `--steps` optimiser steps
     (`configs/dinar/avatar_cpu.yaml`, one run per row and seed, runs/<row>_s<seed>/);
  2. evaluate each run's step-`--steps` checkpoint on the held-out identities (`dinar_eval.evaluate_model`:
     every ordered pair of views of each test person, single-view and merged textures, occlusion
     detector on and off) and write the document (`write_doc`: one function per table, `SECTIONS`);
  3. with `--long-steps`, continue the `--long-runs` (default: the DINAR row, every seed) to that step,
     evaluate every kept checkpoint after `--steps` and rewrite the document with the longer runs'
     figures, tables and loss windows beside the matched-step ones.
Stage-2 rows (inpainting, fine-tuning) plug in as texture methods (`dinar_eval.SOURCE_METHODS`) and
document sections (`dinar_results_doc.SECTIONS`; hand-written text in `dinar_results_text`); the old
unshaded run's numbers come from dinar_results_previous.json.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dinar_eval as ev  # noqa: E402  (scripts/: the held-out evaluation and the figures)
import dinar_references as dr  # noqa: E402
from dinar_results_doc import CONFIG, DOCS, ROWS, write_doc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRAIN_ORDER = ("both", "rgb", "neural")  # every seed of a row before the next row


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


# ----------------------------------------------------------------------------------------------- driver
@functools.cache
def reid_network():
    """The frozen `reid-synthetic` network, loaded once per process (and only when an evaluation runs)."""
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    return freeze(load_pretrained("reid-synthetic"))


def evaluate_all(args, runs: list[tuple[str, int]], step: int) -> dict:
    results = {}
    for row, seed in runs:
        cache = args.out / "eval" / f"{row}_s{seed}_step{step}.json"
        if not cache.is_file():
            ckpt = milestone(args.out, row, seed, step)
            records = ev.evaluate_model(run_dir(args.out, row, seed) / "row_config.yaml", ckpt, reid_network())
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(records))
            print(f"evaluated {row} seed {seed} step {step}", flush=True)
        results[(row, seed)] = json.loads(cache.read_text())
    return results


def parse_runs(specs: list[str] | None, seeds: list[int]) -> list[tuple[str, int]]:
    """`--long-runs` ROW:SEED strings -> [(row, seed)]; None: the DINAR row with every seed."""
    if not specs:
        return [("both", s) for s in seeds]
    runs = []
    for spec in specs:
        row, _, seed = spec.partition(":")
        if row not in ROWS or not seed.isdigit() or int(seed) not in seeds:
            raise SystemExit(f"--long-runs {spec!r}: expected ROW:SEED with ROW in {list(ROWS)} and SEED in {seeds}")
        runs.append((row, int(seed)))
    return runs


def kept_steps(out: Path, row: str, seed: int) -> list[int]:
    """Steps of the run's kept (milestone) checkpoints."""
    names = (run_dir(out, row, seed) / "ckpt").glob("milestone-step=*.ckpt")
    return sorted({int(p.name.split("=", 1)[1].split("-", 1)[0]) for p in names})


def evaluate_long(args, run: tuple[str, int]) -> dict[int, dict]:
    """A longer run evaluated at every kept checkpoint after `--steps` (cached like `evaluate_all`)."""
    steps = [n for n in kept_steps(args.out, *run) if args.steps < n <= args.long_steps]
    return {n: evaluate_all(args, [run], n)[run] for n in steps}


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
    anim_step = args.long_steps if ("both", seed) in long else args.steps
    extra = [s for s in args.seeds[1:] if ("both", s) in long]  # further seeds' animations (longer runs)
    long_rows = [r for r in ROWS if (r, seed) in long]
    if not args.no_figures:  # --no-figures: rewrite the text only, keeping the PNGs of the last full run
        fig_runs = {r: (run_dir(args.out, r, seed) / "row_config.yaml", milestone(args.out, r, seed, args.steps))
                    for r in rows}
        ev.figure(fig_runs, DOCS / "dinar_figure.png")
        if long_rows:
            ev.figure({r: (run_dir(args.out, r, seed) / "row_config.yaml", milestone(args.out, r, seed, args.long_steps))
                       for r in long_rows}, DOCS / "dinar_figure_long.png")
        for s, name in [(seed, "dinar_animation.png")] + [(s, f"dinar_animation_s{s}.png") for s in extra]:
            ev.animation_strip(run_dir(args.out, "both", s) / "row_config.yaml",
                               milestone(args.out, "both", s, anim_step), DOCS / name)
    keys = ["train/l2", "train/dice", "train/perceptual", "train/g_adv", "train/d_loss"]
    curves = training_curves(args.out, sorted(set(runs) | set(long)), keys)
    # a run that is not a finished longer run is shown at the matched budget (an abandoned continuation's log is cut)
    curves = {k: pts if k[:2] in long else [(st, v) for st, v in pts if st < args.steps // 2] for k, pts in curves.items()}
    model = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
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
           "colour": {(r, s, n): cached(args.out / "eval" / f"colour_{r}_s{s}_step{n}.json",
                                         lambda r=r, s=s, n=n: ev.colour_probe(run_dir(args.out, r, s) / "row_config.yaml",
                                                                               milestone(args.out, r, s, n)))
                      for r, s, n in [(r, s, args.steps) for r, s in runs if r != "neural"]
                      + [(r, s, args.long_steps) for r, s in long if r != "neural"]},
           "long": long, "curves": curves, "animation_step": anim_step, "extra_animations": extra,
           "long_figure_rows": long_rows,
           "lr_decay": (list(model.get("lr_decay_milestones", [])), model.get("lr_decay_factor", 0.1)),
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
    parser.add_argument("--long-steps", type=int, default=0, help="then continue the --long-runs to this step")
    parser.add_argument("--long-runs", nargs="+", default=None, metavar="ROW:SEED",
                        help="runs continued to --long-steps (default: the DINAR row, every seed)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "dinar_results")
    parser.add_argument("--no-figures", action="store_true", help="doc: rewrite the text, keep the PNGs")
    argv = [a for a in sys.argv[1:] if a != "--no-figures"]
    args = parser.parse_args()
    args.argv = argv[1:]
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    milestones = [args.steps] + ([args.long_steps] if args.long_steps else [])
    args.long_runs = parse_runs(args.long_runs, args.seeds) if args.long_steps else []
    if args.command in ("all", "train"):
        for row in TRAIN_ORDER:
            for seed in args.seeds:
                train_run(row, seed, args.out, args.steps, milestones)
    if args.command == "train":
        return
    if not (args.long_steps and all(milestone(args.out, *run, args.long_steps) for run in args.long_runs)):
        document(args, {})  # the matched-step document first, before the longer training
    if args.long_steps:
        if args.command == "all":
            for row, seed in args.long_runs:
                train_run(row, seed, args.out, args.long_steps, milestones)
        long = {run: evaluate_long(args, run) for run in args.long_runs
                if milestone(args.out, *run, args.long_steps) is not None}
        if long:
            document(args, long)


if __name__ == "__main__":
    main()
