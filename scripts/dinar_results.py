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
import shutil
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
                                                     "every_n_train_steps": 50, "save_top_k": -1}}]
    run.mkdir(parents=True, exist_ok=True)
    path = run / "row_config.yaml"  # the fit writes its resolved config.yaml beside it
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(args) -> None:
    data = json.loads(args.data) if args.data else None
    for row in args.rows:
        path = row_config(row, args.out, args.steps, data)
        # the newest "last" checkpoint (Lightning writes last-v1.ckpt when a resumed run finds last.ckpt)
        lasts = sorted((args.out / row / "ckpt").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        command = [sys.executable, "-m", "zoo", "fit", "--config", str(path)]
        if lasts:
            command.append(f"--ckpt_path={lasts[-1]}")
            logs = args.out / row / "csv" / "version_0"
            if (logs / "metrics.csv").is_file():  # a resumed run rewrites metrics.csv: keep the earlier part
                part = len(list(logs.glob("metrics_part*.csv"))) + 1
                shutil.copy(logs / "metrics.csv", logs / f"metrics_part{part}.csv")
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=args.out)


@torch.no_grad()
def checkpoint_of(row: str, out: Path, step: int | None) -> Path:
    """The row's checkpoint at optimiser step `step` when saved, else its last one."""
    if step is not None:
        found = sorted((out / row / "ckpt").glob(f"*step={step}.ckpt"))
        if found:
            return found[0]
    lasts = sorted((out / row / "ckpt").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return lasts[-1] if lasts else out / row / "ckpt" / "last.ckpt"


def evaluate_row(row: str, out: Path, reid, step: int | None = None) -> tuple[dict, dict]:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    from zoo.cli import ZooCLI
    from zoo.metrics.image import reid_cosine_similarity, standard_psnr
    from zoo.systems.neural_avatar import uv_body_mask

    cli = ZooCLI(args=["--config", str(out / row / "row_config.yaml"), "--trainer.logger=false"], run=False)
    system, dm = cli.model, cli.datamodule
    state = torch.load(checkpoint_of(row, out, step), map_location="cpu", weights_only=False)
    system.load_state_dict(state["state_dict"], strict=True)
    system.eval()
    dm.prepare_data()
    dm.setup("test")
    hp, count, per_pair, examples = system.hparams, 0, {}, {"source": [], "real": [], "render": []}
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
                per_pair.setdefault((view, name), []).extend(v.flatten().tolist())
            if view == "novel view":  # the figure: one test pair per person, the first four people
                people = batch.get("person_index", torch.arange(len(image)))
                for i, person in enumerate(people.tolist()):
                    if len(examples["source"]) < 4 and person not in examples.setdefault("people", []):
                        examples["people"].append(person)
                        examples["source"].append(batch[hp.source_prefix + "image"][i])
                        examples["real"].append(real[i])
                        examples["render"].append(render[i])
        count += texture.shape[0]
    results = {k: sum(v) / len(v) for k, v in per_pair.items()}
    results[("checkpoint", "global_step")] = float(state["global_step"])
    results[("test", "pairs")] = count
    results["per_pair"] = per_pair
    return results, examples


def curves(out: Path, rows: list[str], key: str = "train/l2") -> tuple[Path, dict]:
    """Training curves of `key` (moving average of 50 logged steps) drawn with PIL."""
    from PIL import Image, ImageDraw

    series = {}
    for row in rows:
        paths = sorted((out / row / "csv" / "version_0").glob("metrics*.csv"))  # metrics_part<k>.csv: runs cut short
        points = sorted({int(r["step"]): float(r[key]) for p in paths for r in csv.DictReader(p.open())
                         if r.get(key)}.items())
        if not points:
            continue
        window = 5
        series[row] = [(s, sum(v for _, v in points[max(0, i - window + 1): i + 1]) / len(points[max(0, i - window + 1): i + 1]))
                       for i, (s, _) in enumerate(points)]
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
        draw.text((pad, 8), f"{key} (moving average of 5 logged values) vs logged step; y {y0:.3f}..{y1:.3f}",
                  fill="black")
    path = REPO / "docs" / "dinar_curves.png"
    img.save(path)
    first_last = {r: (pts[min(len(pts) - 1, 4)][1], pts[-1][1], pts[-1][0]) for r, pts in series.items() if pts}
    return path, first_last


def figure(examples: dict[str, dict]) -> Path:
    """One row per test person: source view, real target view, then each texture row's render."""
    from zoo.utils.images import grid, save_png, to_uint8

    first = next(iter(examples.values()))
    rows = []
    for i in range(len(first["source"])):
        rows.append([to_uint8(first["source"][i]), to_uint8(first["real"][i])]
                    + [to_uint8(ex["render"][i]) for ex in examples.values()])
    return save_png(grid(rows), REPO / "docs" / "dinar_figure.png")


@torch.no_grad()
def animation_strip(out: Path, row: str, step: int | None, people: int = 2) -> Path:
    """Avatars of held-out people (test split) in new poses: turntable (4 yaws) + walk (4 phases),
    drawn by the `row` network through zoo.callbacks.avatar_writer.render_avatar."""
    from zoo.body import AnnyBody
    from zoo.body.animation import turntable, walk_cycle
    from zoo.callbacks.avatar_writer import render_avatar
    from zoo.cli import ZooCLI
    from zoo.utils.images import grid, save_png, to_uint8

    cli = ZooCLI(args=["--config", str(out / row / "row_config.yaml"), "--trainer.logger=false"], run=False)
    system, dm = cli.model, cli.datamodule
    state = torch.load(checkpoint_of(row, out, step), map_location="cpu", weights_only=False)
    system.load_state_dict(state["state_dict"], strict=True)
    system.eval()
    dm.prepare_data()
    dm.setup("test")
    body, rows, seen = AnnyBody(), [], set()
    standing, yaws = turntable(body, 4)
    walking = walk_cycle(body, 4)
    size = int(dm.settings.image_size[0])
    for batch in dm.test_dataloader():
        textures = system.source_texture(batch)
        for i, person in enumerate(batch["person_index"].tolist()):
            if person in seen or len(rows) >= people:
                continue
            seen.add(person)
            frames = torch.cat([render_avatar(system.network, textures[i], standing, body.faces, body.corner_uvs, yaws,
                                              size, background=system.hparams.background),
                                render_avatar(system.network, textures[i], walking, body.faces, body.corner_uvs,
                                              [30.0] * 4, size, background=system.hparams.background)])
            rows.append([to_uint8(batch[system.hparams.source_prefix + "image"][i])] + [to_uint8(f) for f in frames])
    return save_png(grid(rows), REPO / "docs" / "dinar_animation.png")


def paired(results: dict, a: str, b: str, view: str, metric: str) -> tuple[float, float]:
    """Mean and standard error of the per-pair difference a - b (same test pairs, same order)."""
    x, y = results[a]["per_pair"][(view, metric)], results[b]["per_pair"][(view, metric)]
    d = torch.tensor(x) - torch.tensor(y)
    return float(d.mean()), float(d.std() / len(d) ** 0.5)


def evaluate(args) -> None:
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    reid = freeze(load_pretrained("reid-synthetic"))
    rows = [r for r in ROWS if checkpoint_of(r, args.out, args.step).is_file()]
    results, examples = {}, {}
    for row in rows:
        results[row], examples[row] = evaluate_row(row, args.out, reid, args.step)
    curve_path, first_last = curves(args.out, rows)
    fig = figure(examples)
    strip = animation_strip(args.out, "both", args.step) if "both" in rows else None
    lines = ["# DINAR stage 1 on synthetic people (CPU size): texture rows of the paper's Table 2", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
             f"`python scripts/dinar_results.py evaluate` on {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} thread(s).", ""]
    lines += ["| texture | optimiser steps (G + D) | test pairs |", "|---|---|---|"]
    lines += [f"| {ROWS[r]} | {int(results[r][('checkpoint', 'global_step')])} | {results[r][('test', 'pairs')]} |"
              for r in rows]
    lines.append("")
    for view in ("input view", "novel view"):
        lines += [f"### {view}", "", "| texture | PSNR | MS-SSIM (3 scales) | ReID cosine |", "|---|---|---|---|"]
        for row in rows:
            r = results[row]
            lines.append(f"| {ROWS[row]} | {r[(view, 'psnr')]:.2f} | {r[(view, 'ms_ssim')]:.4f} | "
                         f"{r[(view, 'reid_cos')]:.4f} |")
        lines.append("")
    if "both" in results:
        lines += ["Paired differences on the same test pairs (mean +- standard error over pairs; this is the",
                  "test-sampling spread, not the seed-to-seed spread, which was not measured):", ""]
        for other in [r for r in rows if r != "both"]:
            for view in ("input view", "novel view"):
                cells = [f"{m} {mean:+.3f} +- {se:.3f}" for m in ("psnr", "ms_ssim", "reid_cos")
                         for mean, se in [paired(results, "both", other, view, m)]]
                lines.append(f"- both - {other}, {view}: " + ", ".join(cells))
        lines.append("")
    lines += ["Training (train/l2, moving average of 5 logged values, early vs last):", ""]
    lines += [f"- {ROWS[r]}: {a:.4f} -> {b:.4f} at step {s}" for r, (a, b, s) in first_last.items()]
    lines += ["", f"![renders]({fig.name})", "", f"![curves]({curve_path.name})", ""]
    if strip is not None:
        lines += [f"![animation]({strip.name})", ""]
    (args.out / "results_tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--steps", type=int, default=2400, help="optimiser steps (G and D each count)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "dinar_results")
    parser.add_argument("--step", type=int, default=None, help="evaluate the checkpoints of this step (else last)")
    parser.add_argument("--data", default=None, help="JSON of the config's data section to use instead")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
