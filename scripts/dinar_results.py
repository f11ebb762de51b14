"""DINAR stage 1 at CPU size, the paper's Table 2 texture rows: train, evaluate on held-out synthetic
identities, draw; writes docs/dinar_results.md, docs/dinar_figure.png and docs/dinar_curves.png.

Rows (one `configs/dinar/avatar_cpu.yaml` run each, same data, steps and seed):
    both   - 16 generated + 5 image-sampled channels (DINAR);
    neural - the 16 generated channels only;
    rgb    - the 5 image-sampled channels only (no encoder / generator).
Each run is resumable (it restarts from its last.ckpt). Evaluation renders every test pair
(source view -> the same view, and -> a target view with another pose and camera) and reports
PSNR, MS-SSIM (3 scales, see MS_SSIM) and the ReID cosine with $ZOO_HOME/reid-synthetic.

    python scripts/dinar_results.py train --steps 2400 [--rows both neural rgb] [--out DIR]
    python scripts/dinar_results.py evaluate [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "dinar" / "avatar_cpu.yaml"
ROWS = {"both": "RGB + neural texture (DINAR)", "neural": "neural texture only", "rgb": "RGB texture only"}
# MS-SSIM at 64 px: 5 scales need sides > 160 px, so 3 scales with the first three of the standard
# weights, renormalised; Gaussian window 11, sigma 1.5, data range 1.
MS_SSIM = {"betas": (0.0448, 0.2856, 0.3001), "kernel_size": 11, "sigma": 1.5}


def row_config(row: str, out: Path, steps: int, data: dict | None) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    model = config["model"]["init_args"]
    net = model["network"]["init_args"]
    renderer = net["renderer"]["init_args"]
    if row == "neural":
        net["use_rgb_channels"] = False
        renderer["texture_channels"] = net["generator"]["init_args"]["out_channels"]
    elif row == "rgb":
        net["encoder"] = net["generator"] = None
        renderer["texture_channels"] = 5
    model["export_path"] = None
    if data is not None:
        config["data"] = data
    run = out / row
    config["trainer"].update(max_steps=steps, enable_progress_bar=False, default_root_dir=str(run),
                             logger={"class_path": "pytorch_lightning.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(run), "name": "csv", "version": 0}})
    config["trainer"]["callbacks"] = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                       "init_args": {"dirpath": str(run / "ckpt"), "save_last": True,
                                                     "every_n_train_steps": 200}}]
    run.mkdir(parents=True, exist_ok=True)
    path = run / "row_config.yaml"  # the fit writes its resolved config.yaml beside it
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(args) -> None:
    data = json.loads(args.data) if args.data else None
    for row in args.rows:
        path = row_config(row, args.out, args.steps, data)
        last = args.out / row / "ckpt" / "last.ckpt"
        command = [sys.executable, "-m", "zoo", "fit", "--config", str(path)]
        if last.is_file():
            command.append(f"--ckpt_path={last}")
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=args.out)


@torch.no_grad()
def evaluate_row(row: str, out: Path, reid) -> tuple[dict, dict]:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    from zoo.cli import ZooCLI
    from zoo.metrics.image import reid_cosine_similarity, standard_psnr
    from zoo.systems.neural_avatar import uv_body_mask

    cli = ZooCLI(args=["--config", str(out / row / "row_config.yaml"), "--trainer.logger=false"], run=False)
    system, dm = cli.model, cli.datamodule
    state = torch.load(out / row / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    system.load_state_dict(state["state_dict"], strict=True)
    system.eval()
    dm.prepare_data()
    dm.setup("test")
    hp, sums, count, examples = system.hparams, {}, 0, {}
    for batch in dm.test_dataloader():
        texture = system.source_texture(batch)
        views = {"input view": hp.source_prefix, "novel view": hp.target_prefix}
        for view, prefix in views.items():
            image, mask, uv = batch[prefix + "image"], batch[prefix + "mask"], batch[prefix + "uv"]
            real = image * mask + (1 - mask) * hp.background
            render = system.network.render(texture, uv, uv_body_mask(uv), hp.background)["rgb"].clamp(-1, 1)
            values = {"psnr": standard_psnr(render, real),
                      "ms_ssim": ms_ssim((render + 1) / 2, (real + 1) / 2, data_range=1.0, reduction="none",
                                         normalize="relu", **MS_SSIM),
                      "reid_cos": reid_cosine_similarity(reid, render, real)}
            for name, v in values.items():
                sums[(view, name)] = sums.get((view, name), 0.0) + float(v.sum())
            if not examples.get(view):
                examples[view] = (batch[hp.source_prefix + "image"][:4], real[:4], render[:4])
        count += texture.shape[0]
    return {k: v / count for k, v in sums.items()}, examples


def curves(out: Path, rows: list[str], key: str = "train/l2") -> tuple[Path, dict]:
    """Training curves of `key` (moving average of 50 logged steps) drawn with PIL."""
    from PIL import Image, ImageDraw

    series = {}
    for row in rows:
        path = out / row / "csv" / "version_0" / "metrics.csv"
        if not path.is_file():
            continue
        points = [(int(r["step"]), float(r[key])) for r in csv.DictReader(path.open()) if r.get(key)]
        smooth = [(s, sum(v for _, v in points[max(0, i - 49): i + 1]) / len(points[max(0, i - 49): i + 1]))
                  for i, (s, _) in enumerate(points)]
        series[row] = smooth
    w, h, pad = 640, 360, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    if series:
        xs = [s for pts in series.values() for s, _ in pts]
        ys = [v for pts in series.values() for _, v in pts]
        x0, x1, y0, y1 = min(xs), max(xs) or 1, min(ys), max(ys)
        colours = {"both": (200, 30, 30), "neural": (30, 120, 30), "rgb": (30, 30, 200)}
        for row, pts in series.items():
            xy = [(pad + (s - x0) / max(x1 - x0, 1) * (w - 2 * pad),
                   h - pad - (v - y0) / max(y1 - y0, 1e-9) * (h - 2 * pad)) for s, v in pts]
            draw.line(xy, fill=colours[row], width=2)
            draw.text((xy[-1][0] - 60, xy[-1][1] - 14), row, fill=colours[row])
        draw.text((pad, 8), f"{key} (50-step moving average) vs optimiser step; y {y0:.3f}..{y1:.3f}", fill="black")
    path = REPO / "docs" / "dinar_curves.png"
    img.save(path)
    first_last = {r: (pts[min(len(pts) - 1, 49)][1], pts[-1][1], pts[-1][0]) for r, pts in series.items() if pts}
    return path, first_last


def figure(examples: dict[str, dict]) -> Path:
    from zoo.utils.images import grid, save_png, to_uint8

    rows = []
    some = next(iter(examples.values()))["novel view"]
    for i in range(some[0].shape[0]):
        row = [to_uint8(some[0][i]), to_uint8(some[1][i])]
        row += [to_uint8(ex["novel view"][2][i]) for ex in examples.values()]
        rows.append(row)
    return save_png(grid(rows), REPO / "docs" / "dinar_figure.png")


def evaluate(args) -> None:
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    reid = freeze(load_pretrained("reid-synthetic"))
    rows = [r for r in ROWS if (args.out / r / "ckpt" / "last.ckpt").is_file()]
    results, examples = {}, {}
    for row in rows:
        results[row], examples[row] = evaluate_row(row, args.out, reid)
    curve_path, first_last = curves(args.out, rows)
    fig = figure(examples)
    lines = ["# DINAR stage 1 on synthetic people (CPU size): texture rows of the paper's Table 2", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
             f"`python scripts/dinar_results.py evaluate` on {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} thread(s).", ""]
    for view in ("input view", "novel view"):
        lines += [f"### {view}", "", "| texture | PSNR | MS-SSIM (3 scales) | ReID cosine |", "|---|---|---|---|"]
        for row in rows:
            r = results[row]
            lines.append(f"| {ROWS[row]} | {r[(view, 'psnr')]:.2f} | {r[(view, 'ms_ssim')]:.4f} | "
                         f"{r[(view, 'reid_cos')]:.4f} |")
        lines.append("")
    lines += ["Training (train/l2, 50-step moving average, first vs last):", ""]
    lines += [f"- {ROWS[r]}: {a:.4f} -> {b:.4f} at step {s}" for r, (a, b, s) in first_last.items()]
    lines += ["", f"![renders]({fig.name})", "", f"![curves]({curve_path.name})", ""]
    (args.out / "results_tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--steps", type=int, default=2400, help="optimiser steps (G and D each count)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "dinar_results")
    parser.add_argument("--data", default=None, help="JSON of the config's data section to use instead")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
