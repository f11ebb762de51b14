"""RefineTex's Table 3 ablations at CPU size: train, test, tabulate, draw; writes
docs/refinetex_results.md and docs/refinetex_figure.png.

Every configs/refinetex/cpu/<name>.yaml is trained with the same budget (its max_steps, or
--steps, batch 8 on the "small" synthetic people) and tested on the synthetic test split (SV / NV
image metrics, texture metrics vs the ground truth on visible / invisible texels). The baseline is
trained a second time with another seed: the difference between its two runs is the noise floor
the other differences are judged against. The ReID losses need $ZOO_HOME/reid-synthetic
(ZOO_HOME defaults to ~/.cache/zoo): it is trained first from configs/reid/synthetic.yaml when the
cache lacks it (a few CPU minutes).

    python scripts/refinetex_ablations.py [--steps 64] [--threads 1] [--no-noise-run]
"""
from __future__ import annotations

import argparse
import datetime
import logging
import platform
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
NAMES = ["baseline", "conv_refine", "deformable_refine", "url", "cycle", "full"]
TITLES = {"baseline": "BL (baseline)", "conv_refine": "BL + Conv Refine", "deformable_refine": "BL + Deformable Refine",
          "url": "BL + URL", "cycle": "BL + Cycle", "full": "Full (Deform + URL + Cycle)",
          "baseline_seed1": "BL, seed 1 (noise floor)"}
IMAGE_METRICS = ["ssim", "psnr", "cossim"]
TEXTURE_METRICS = [(m, s) for m in ("l1", "psnr", "ssim") for s in ("visible", "invisible")]
HIGHER_IS_BETTER = {"ssim": True, "psnr": True, "cossim": True, "l1": False}


def ensure_reid() -> None:
    from zoo.cli import ZooCLI
    from zoo.pretrained import zoo_home

    if (zoo_home() / "reid-synthetic" / "config.yaml").is_file():
        return
    print(f"training reid-synthetic into {zoo_home()} (configs/reid/synthetic.yaml)", flush=True)
    start = time.perf_counter()
    ZooCLI(args=["fit", "--config", str(REPO / "configs/reid/synthetic.yaml"), "--trainer.logger=false",
                 f"--trainer.default_root_dir={REPO / 'outputs/reid_synthetic'}", "--trainer.enable_progress_bar=false"])
    print(f"reid-synthetic trained in {time.perf_counter() - start:.0f} s", flush=True)


def run(name: str, out: Path, steps: int | None, seed: int | None = None) -> dict:
    from zoo.cli import ZooCLI

    config = REPO / "configs/refinetex/cpu" / f"{name.split('_seed')[0]}.yaml"
    args = ["--config", str(config), "--trainer.logger=false", f"--trainer.default_root_dir={out / name}",
            "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--model.init_args.use_lpips=true"]
    args += [f"--trainer.max_steps={steps}"] if steps else []
    args += [f"--seed_everything={seed}"] if seed is not None else []
    cli = ZooCLI(args=args, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_s = time.perf_counter() - start
    cli.trainer.save_checkpoint(out / name / "last.ckpt")
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    results = dict(cli.model.test_results)
    unavailable = dict(cli.model.frozen("test_metrics").unavailable)
    print(f"{name}: {cli.trainer.global_step} steps in {fit_s:.0f} s; SV ssim {results.get('sv/ssim', float('nan')):.4f}, "
          f"texture psnr {results.get('texture/psnr/all', float('nan')):.2f}", flush=True)
    return {"results": results, "unavailable": unavailable, "fit_s": fit_s, "steps": cli.trainer.global_step,
            "model": cli.model.eval(), "datamodule": cli.datamodule}


def figure(runs: dict, path: Path, items=(0, 12)) -> None:
    """Rows: inputs + ground truth, then one row per model; per test sample the columns are
    (input | NV image | GT texture) in the first row and (texture | SV render | NV render) below."""
    from PIL import Image, ImageDraw
    from torch.utils.data import default_collate

    from zoo.render import render_over_image as render_view
    from zoo.utils.images import grid, to_uint8

    data = next(iter(runs.values()))["datamodule"].datasets["test"]
    batch = default_collate([data[i] for i in items])
    h = batch["image"].shape[-2]
    big = lambda t: F.interpolate(t, size=(h, h), mode="nearest")  # noqa: E731
    rows = [[p for i in range(len(items)) for p in (to_uint8(batch["image"][i]), to_uint8(batch["novel_image"][i]),
                                                    to_uint8(big(batch["texture"])[i]))]]
    labels = ["input | NV view | GT texture"]
    for name, r in runs.items():
        with torch.no_grad():
            texture = r["model"](batch["image"], batch["parts"]).texture
        sv = render_view(texture, batch["uv"], batch["mask"], batch["image"])
        nv = render_view(texture, batch["novel_uv"], batch["novel_mask"], batch["novel_image"])
        rows.append([p for i in range(len(items)) for p in (to_uint8(big(texture)[i]), to_uint8(sv[i]), to_uint8(nv[i]))])
        labels.append(TITLES[name])
    picture = Image.fromarray(grid(rows).numpy())
    margin = 190
    canvas = Image.new("RGB", (picture.width + margin, picture.height), "white")
    canvas.paste(picture, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    step = (picture.height - 2) / len(rows)
    for r, label in enumerate(labels):
        draw.text((4, int(r * step + step / 2) - 6), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def verdict(runs: dict, better: str, worse: str, keys: list[str], noise: dict) -> str:
    parts, signs = [], []
    for key in keys:
        a, b = runs[better]["results"].get(key), runs[worse]["results"].get(key)
        if a is None or b is None:
            continue
        delta = a - b
        good = delta > 0 if HIGHER_IS_BETTER[key.split("/")[-2 if key.startswith("texture") else -1]] else delta < 0
        floor = noise.get(key)
        resolved = floor is None or abs(delta) > floor
        signs.append((good, resolved))
        parts.append(f"{key} {delta:+.4f}" + ("" if floor is None else f" (noise {floor:.4f})"))
    if all(g and r for g, r in signs):
        word = "holds"
    elif all(not g and r for g, r in signs):
        word = "contradicted"
    elif not any(r for _, r in signs):
        word = "not resolved (every difference within the noise floor)"
    else:
        word = "mixed"
    return f"**{word}**: " + "; ".join(parts)


def write_results(runs: dict, path: Path, args) -> None:
    noise = {}
    if "baseline_seed1" in runs:
        a, b = runs["baseline"]["results"], runs["baseline_seed1"]["results"]
        noise = {k: abs(a[k] - b[k]) for k in a if k in b}
    unavailable = next(iter(runs.values()))["unavailable"]
    lines = [
        "# RefineTex ablations at CPU size (synthetic people)", "",
        f"Generated by `python scripts/refinetex_ablations.py` on {datetime.date.today()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s), a CPU shared with other jobs). Configs: "
        "`configs/refinetex/cpu/*.yaml` (Texformer width 16, UV 64x64, images 128x64, batch 8, Adam 1e-3, the paper's "
        f"loss weights, ReID = `reid-synthetic`). Budget: the same {runs['baseline']['steps']} optimiser steps for every "
        f"model (~{runs['baseline']['steps'] * 8 / 228:.1f} passes over the 228 training views); test = the 30 views of the "
        "5 held-out identities, NV = the dataset's fixed partner view.", "",
        "## Image metrics (standard variant: render composited over the real background vs the real image)", "",
        "| model | fit s | " + " | ".join(f"SV {m} | NV {m}" for m in IMAGE_METRICS) + " |",
        "|---" * (2 + 2 * len(IMAGE_METRICS)) + "|"]
    for name, r in runs.items():
        cells = [fmt(r["results"].get(f"{v}/{m}")) for m in IMAGE_METRICS for v in ("sv", "nv")]
        lines.append(f"| {TITLES[name]} | {r['fit_s']:.0f} | " + " | ".join(cells) + " |")
    if "lpips" in unavailable:
        lines += ["", f"LPIPS: {unavailable['lpips']}."]
    lines += ["", "## Texture metrics vs the ground-truth texture (visible = seen in the input view)", "",
              "| model | " + " | ".join(f"{m} {s}" for m, s in TEXTURE_METRICS) + " |", "|---" * (1 + len(TEXTURE_METRICS)) + "|"]
    for name, r in runs.items():
        lines.append(f"| {TITLES[name]} | " + " | ".join(fmt(r["results"].get(f"texture/{m}/{s}")) for m, s in TEXTURE_METRICS) + " |")
    lines += ["", "## Do the paper's directions hold here?", "",
              "Differences are judged against the noise floor = |baseline seed 0 - baseline seed 1| of the same metric "
              "(one extra run, so a rough floor).", "",
              "- Deformable refine > conv refine: " + verdict(runs, "deformable_refine", "conv_refine",
                                                              ["sv/ssim", "nv/ssim", "sv/cossim", "nv/cossim", "texture/psnr/all"], noise),
              "- URL raises same-view fidelity: " + verdict(runs, "url", "baseline",
                                                            ["sv/ssim", "sv/psnr", "texture/psnr/visible"], noise),
              "- Cycle loss helps invisible texels / novel views: " + verdict(runs, "cycle", "baseline",
                                                                              ["texture/psnr/invisible", "texture/l1/invisible",
                                                                               "nv/ssim", "nv/cossim"], noise),
              "", "## Caveats", "",
              f"- {runs['baseline']['steps']} steps at width 16 is a tiny fraction of the paper's training (200 epochs at "
              "width 128 on Market-1501); these numbers measure early training, not converged models, and one seed per model.",
              "- The standard image metrics include the background, which the render copies from the real image, so "
              "SV/NV SSIM and PSNR are inflated and compress the differences; the texture metrics are the sharper signal.",
              "- The ReID network is the zoo's small synthetic one (`reid-synthetic`), not PCB, so CosSim here is not the "
              "paper's CosSim.",
              "- Synthetic people have exact geometry (no fitting misalignment), which is what URL is designed to absorb.",
              "", "Figure: `docs/refinetex_figure.png` (two test people; first row input, NV target view and ground-truth "
              "texture; then per model the predicted texture, SV render and NV render).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per model (default: the configs')")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--no-noise-run", action="store_true", help="skip the second baseline seed")
    parser.add_argument("--only", nargs="*", default=None, help="subset of the configs (for a timing probe)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "refinetex_ablations"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ensure_reid()
    names = args.only or NAMES
    plan = [(n, None) for n in names] + ([] if args.no_noise_run or args.only else [("baseline_seed1", 1)])
    out, runs, start = Path(args.out), {}, time.perf_counter()
    for name, seed in plan:
        runs[name] = run(name, out, args.steps, seed)
    print(f"sweep: {time.perf_counter() - start:.0f} s", flush=True)
    if args.only:
        return
    write_results(runs, REPO / "docs" / "refinetex_results.md", args)
    figure({k: v for k, v in runs.items() if k != "baseline_seed1"}, REPO / "docs" / "refinetex_figure.png")
    print((REPO / "docs" / "refinetex_results.md").read_text())


if __name__ == "__main__":
    main()
