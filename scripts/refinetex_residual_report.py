"""Compare the refiners' residual head (our departure) with the reference head, from two run folders.

The rows with `residual_head: true` (configs/refinetex/cpu/*_residual.yaml) are trained by
scripts/refinetex_ablations.py into their own folder (one folder = one code version), with the same
budget and seeds as the reference rows of an earlier folder. This prints a markdown section: texture
metrics per row and per seed, every direction against the seed-to-seed spread, learning curves, and
the BL control trained in the residual folder (same config and seed as the earlier BL: how far the
two code versions alone move a row). It also writes a small figure of the seed-0 textures.

    python scripts/refinetex_residual_report.py --base /work/cache-refinetex-fid/ablations_v3 \
        --residual /work/cache-refinetex-fid/ablations_residual --figure docs/refinetex_residual_figure.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from refinetex_ablations import FIGURE_ITEMS, TITLES, _cli, cell, direction, figure_batch, load_runs, row_configs, stats

KEYS = ["texture/l1/visible", "texture/l1/invisible", "texture/psnr/invisible", "nv/ssim", "nv/cossim"]
DIRECTION_KEYS = ["texture/l1/visible", "texture/l1/invisible", "nv/ssim", "nv/cossim"]
PAIRS = [("conv_refine", "conv_refine_residual"), ("deformable_refine", "deformable_refine_residual"),
         ("full", "full_residual")]


def commit(folder: Path) -> str:
    path = folder / "code.json"
    return json.loads(path.read_text())["commit"][:7] if path.is_file() else "not recorded"


def rows(base: dict, residual: dict) -> list[tuple[str, str, dict]]:
    """(label, folder tag, runs of one row) in the order of the tables."""
    out = [(TITLES["quickstart"], "base", base.get("quickstart")), (TITLES["baseline"], "base", base.get("baseline")),
           (TITLES["baseline"] + ", control", "residual", residual.get("baseline"))]
    for ref, res in PAIRS:
        out += [(TITLES[ref], "base", base.get(ref)), (TITLES[res], "residual", residual.get(res))]
    return [r for r in out if r[2]]


def compare(runs: dict, better: str, worse: str, keys: list[str]) -> str:
    """`direction` of the two rows, only when both have two or more seeds (else there is no spread)."""
    few = [n for n in (better, worse) if len(runs.get(n, {})) < 2]
    return f"fewer than two seeds for {', '.join(few)}: no spread to judge against" if few else \
        direction(runs, better, worse, keys)


def curve_cells(runs: dict) -> list[str]:
    steps = sorted({row["step"] for r in runs.values() for row in r.get("curve", [])})
    cells = []
    for k in steps:
        hits = [row for r in runs.values() for row in r.get("curve", []) if row["step"] == k]
        cells.append(f"{k}: {sum(h['l1/visible'] for h in hits) / len(hits):.4f} / "
                     f"{sum(h['l1/invisible'] for h in hits) / len(hits):.4f}")
    return cells


def section(base_dir: Path, residual_dir: Path) -> list[str]:
    base, residual = load_runs(base_dir), load_runs(residual_dir)
    tags = {"base": f"{base_dir.name} ({commit(base_dir)})", "residual": f"{residual_dir.name} ({commit(residual_dir)})"}
    table = rows(base, residual)
    lines = ["| model | run folder (commit) | seeds | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 3) + "|"]
    for label, tag, runs in table:
        lines.append(f"| {label} | {tags[tag]} | {' '.join(map(str, sorted(runs)))} | "
                     + " | ".join(cell(runs, k) for k in KEYS) + " |")
    lines += ["", "Per seed (texture L1 visible / unseen texels; finished):", "",
              "| model | folder | seed 0 | seed 1 |", "|---|---|---|---|"]
    for label, tag, runs in table:
        seeds = [runs.get(s) for s in (0, 1)]
        lines.append(f"| {label} | {tags[tag].split(' ')[0]} | " + " | ".join(
            "-" if r is None else f"{r['results']['texture/l1/visible']:.4f} / {r['results']['texture/l1/invisible']:.4f}"
            f" ({r['finished'][11:]})" for r in seeds) + " |")
    merged = {**{k: v for k, v in base.items()}, **{k: v for k, v in residual.items() if k != "baseline"}}
    lines += ["", "Directions (difference of the seed means; \"holds\" / \"contradicted\" only when the two rows' "
              "seed ranges are disjoint, else \"within spread\"):", ""]
    for ref, res in PAIRS:
        lines.append(f"- {TITLES[res]} better than {TITLES[ref]}: {compare(merged, res, ref, DIRECTION_KEYS)}")
        lines.append(f"- {TITLES[res]} better than BL: {compare(merged, res, 'baseline', DIRECTION_KEYS)}")
    lines.append(f"- {TITLES['full_residual']} beats the quick-start U-Net on unseen texels: "
                 f"{compare(merged, 'full_residual', 'quickstart', ['texture/l1/invisible', 'texture/psnr/invisible'])}")
    lines += ["", "Learning curves (test-split texture L1 visible / unseen, mean over seeds, at each step):", ""]
    for label, tag, runs in table[1:]:
        lines.append(f"- {label} [{tags[tag].split(' ')[0]}]: " + "; ".join(curve_cells(runs)))
    if "baseline" in residual and 0 in residual["baseline"] and 0 in base.get("baseline", {}):
        a, b = base["baseline"][0]["results"], residual["baseline"][0]["results"]
        lines += ["", "Control, BL seed 0 trained in both folders: " + "; ".join(
            f"{k} {a[k]:.4f} ({commit(base_dir)}) vs {b[k]:.4f} ({commit(residual_dir)})" for k in KEYS) + "."]
    bl = stats(base.get("baseline", {}), "texture/l1/invisible")
    if bl:
        lines.append(f"BL seed range on unseen-texel L1 ({commit(base_dir)}): {bl[1]:.4f}-{bl[2]:.4f}.")
    return lines


def refiner_gain(base_dir: Path, residual_dir: Path) -> list[str]:
    """For each refiner row and seed, its last checkpoint (resume/last.ckpt) on the test split: texture L1
    (visible / unseen texels) of the refined output vs the same network's backbone texture, and the mean
    |refined - backbone| over texels: does the refiner improve on its own backbone?"""
    from torch.utils.data import DataLoader

    from zoo.metrics import texture_metrics

    lines = ["| model | seed | checkpoint step | backbone L1 vis / unseen | refined L1 vis / unseen | mean abs(refined - backbone) |",
             "|---|---|---|---|---|---|"]
    for ref, res in PAIRS:
        for folder, name in ((base_dir, ref), (residual_dir, res)):
            for seed in (0, 1):
                ckpt = folder / name / f"seed{seed}" / "resume" / "last.ckpt"
                if not ckpt.is_file() or not (folder / name / f"seed{seed}" / "result.json").is_file():
                    continue
                cli = _cli(row_configs(name), folder / name / f"seed{seed}", seed, ["--trainer.logger=false"])
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
                cli.model.load_state_dict(state["state_dict"])
                net = cli.model.network.eval()
                cli.datamodule.setup("test")
                data = cli.datamodule.datasets["test"]
                values: dict[str, list[torch.Tensor]] = {}
                with torch.no_grad():
                    for b in DataLoader(data, batch_size=15):
                        out = net(b["image"], b["parts"])
                        for tag, tex in (("backbone", out.backbone_texture), ("refined", out.texture)):
                            for k, v in texture_metrics(tex, b["texture"], b["texture_mask"], b["known_mask"]).items():
                                values.setdefault(f"{tag}/{k}", []).append(v)
                        values.setdefault("change", []).append((out.texture - out.backbone_texture).abs().mean(dim=(1, 2, 3)))
                m = {k: float(torch.cat(v).nanmean()) for k, v in values.items()}
                lines.append(f"| {TITLES[name]} | {seed} | {state['global_step']} | {m['backbone/l1/visible']:.4f} / "
                             f"{m['backbone/l1/invisible']:.4f} | {m['refined/l1/visible']:.4f} / {m['refined/l1/invisible']:.4f}"
                             f" | {m['change']:.4f} |")
    return lines


def figure(base_dir: Path, residual_dir: Path, path: Path) -> None:
    """Seed-0 texture of each row for the two figure people (ground truth first), one column per row."""
    from PIL import Image, ImageDraw

    from zoo.datamodules import SyntheticPeopleDataModule
    from zoo.utils.images import grid, to_uint8

    batch = figure_batch(SyntheticPeopleDataModule(preset="small", batch_size=8, pairs="random", progress=False))
    columns, labels = [batch["texture"]], ["GT"]
    names = [("base", "quickstart", "U-Net"), ("base", "baseline", "BL")]
    for ref, res in PAIRS:
        short = {"conv_refine": "Conv", "deformable_refine": "Deform", "full": "Full"}[ref]
        names += [("base", ref, short), ("residual", res, short + " res")]
    for where, name, label in names:
        file = (base_dir if where == "base" else residual_dir) / name / "seed0" / "figure.pt"
        if file.is_file():
            columns.append(torch.load(file, map_location="cpu", weights_only=True))
            labels.append(label)
    size = 128
    up = [F.interpolate(t, size=(size, size), mode="nearest") for t in columns]
    picture = Image.fromarray(grid([[to_uint8(t[i]) for t in up] for i in range(len(FIGURE_ITEMS))]).numpy())
    canvas = Image.new("RGB", (picture.width, picture.height + 16), "white")
    canvas.paste(picture, (0, 16))
    draw = ImageDraw.Draw(canvas)
    step = picture.width / len(labels)
    for c, label in enumerate(labels):
        draw.text((int(c * step) + 4, 2), label, fill="black")
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="run folder of the reference rows (scripts/refinetex_ablations.py)")
    parser.add_argument("--residual", required=True, help="run folder of the *_residual rows")
    parser.add_argument("--figure", default=None, help="write the texture figure here (png)")
    parser.add_argument("--refiner-gain", action="store_true",
                        help="also test each refiner row's last checkpoint: refined vs its own backbone texture")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("\n".join(section(Path(args.base), Path(args.residual))))
    if args.refiner_gain:
        print("\n" + "\n".join(refiner_gain(Path(args.base), Path(args.residual))))
    if args.figure:
        figure(Path(args.base), Path(args.residual), Path(args.figure))


if __name__ == "__main__":
    main()
