"""Why the CPU-size RefineTex does not beat the quick-start U-Net on unseen texels: budget or defect?

Two checks, written to <out>/diagnostics.json, which scripts/refinetex_ablations.py reports:

1. Does the objective prefer the true texture? On the test views, the unweighted ReID / part-style
   terms (SV and NV renders over the data module's background, as in training), the face term, the
   weighted base loss (5000 reid + 0.4 style per view + 0.01 face) and the texture L1, for: the
   ground-truth texture, the partial texture with each texture's mean known colour in the unseen
   texels, the quick-start U-Net's output (seed 0 of the ablation run), the trained BL and full
   models (seed 0, their last resumable checkpoint) and a grey texture. If the trained models'
   loss is far above the ground truth's, training stopped far from the objective's optimum (budget);
   if the ground truth scored no better than the models, the objective itself would be the limit.
2. Can the network fit at all (overfit one batch)? The BL network (configs/refinetex/cpu/baseline.yaml)
   trained on one fixed batch of 8 training views (8 identities) for --steps Adam steps, once with
   the paper objective of that config and once with an L1 to the ground-truth texture instead (the
   U-Net's supervision); texture L1 on that batch's visible / unseen texels every 20 steps.

    nice -n 10 python scripts/refinetex_diagnostics.py --out <the ablation run folder> [--steps 120]
        [--checks objective overfit]

Check 2 does not read the ablation run's models (it trains from scratch), so it can run while the
ablation run is still training (--checks overfit).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refinetex_ablations as ablations  # noqa: E402

from zoo.losses.refinetex import RefineTexLoss, batch_view, render_over_background  # noqa: E402
from zoo.metrics import texture_metrics  # noqa: E402

REPO = ablations.REPO


def mean_fill(batch: dict) -> torch.Tensor:
    known = batch["known_mask"] * batch["texture_mask"]
    mean = (batch["partial"] * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp(min=1)
    return batch["partial"] * known + mean * (1 - known)


def refinetex_model(name: str, out: Path):
    """The seed-0 run of a row, from its last resumable checkpoint. Runs written before the
    RefineTexNet refactor keep the network's weights without the `network.` prefix: mapped here."""
    cli = ablations._cli(ablations.row_configs(name), out / "_diagnostics_tmp", 0, [])
    ckpt = torch.load(out / name / "seed0" / "resume" / "last.ckpt", map_location="cpu", weights_only=True)
    state = {(f"network.{k}" if k.split(".")[0] in ("backbone", "refiner", "fusion") else k): v
             for k, v in ckpt["state_dict"].items()}
    cli.model.load_state_dict(state)
    return cli.model.eval(), int(ckpt["global_step"])


def quickstart_model(out: Path):
    """The quick-start U-Net of seed 0, restored the way the ablation script evaluates it (a fit that
    resumes its finished checkpoint), in a scratch copy of its run folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "seed0"
        shutil.copytree(out / "quickstart" / "seed0" / "resume", folder / "resume")
        cli = ablations._cli([REPO / "configs/quickstart.yaml"], folder, 0, ["--model.init_args.log_images_every_n_steps=0"])
        ablations._fit(cli, folder, every=50)
    return cli.model.eval()


@torch.no_grad()
def objective_check(out: Path) -> dict:
    from zoo.pretrained import load_pretrained
    from zoo.utils.frozen import freeze

    unet = quickstart_model(out)
    models = {name: refinetex_model(name, out) for name in ("baseline", "full")}
    cli = ablations._cli(ablations.row_configs("full"), out / "_diagnostics_tmp", 0, [])
    cli.datamodule.setup("test")
    data = cli.datamodule.datasets["test"]
    batch = default_collate([data[i] for i in range(len(data))])
    reid = freeze(load_pretrained("reid-synthetic"))
    loss = RefineTexLoss()  # the paper's weights
    loss.set_uv_masks(cli.datamodule.uv_maps(), tuple(batch["texture"].shape[-2:]))
    textures = {"ground truth": batch["texture"], "partial + mean colour fill": mean_fill(batch),
                "quick-start U-Net (seed 0)": unet(batch["partial"], batch["known_mask"])}
    for name, (model, step) in models.items():
        textures[f"{ablations.TITLES[name].split(' (')[0]} (seed 0, step {step})"] = model(batch["image"], batch["parts"]).texture
    textures["grey"] = torch.zeros_like(batch["texture"])
    views = {"sv": batch_view(batch), "nv": batch_view(batch, "novel_")}
    targets = {k: reid.features(v["image"]) for k, v in views.items()}
    rows = []
    for name, texture in textures.items():
        m = texture_metrics(texture, batch["texture"], batch["texture_mask"], batch["known_mask"])
        row = {"texture": name, "l1/visible": float(m["l1/visible"].nanmean()), "l1/invisible": float(m["l1/invisible"].nanmean())}
        for view_name, view in views.items():
            render = render_over_background(texture, view, "the objective check")
            for term, value in loss._view_terms(reid, render, view, targets[view_name]).items():
                row[f"{view_name}/{term}"] = float(value)
        row["face"] = float(loss._texture_terms(texture, batch)["face"])
        w = loss.weights
        row["base loss"] = (sum(w["reid"] * row[f"{v}/reid"] + w["style"] * row[f"{v}/style"] for v in views)
                            + w["face"] * row["face"])
        rows.append(row)
    return {"views": len(data), "rows": rows}


def overfit(steps: int) -> dict:
    from zoo.pretrained import load_pretrained
    from zoo.utils.frozen import freeze

    curves = {}
    for variant in ("paper objective", "ground-truth texture L1"):
        cli = ablations._cli(ablations.row_configs("baseline"), Path(tempfile.gettempdir()) / "rtx_overfit", 0, [])
        cli.datamodule.setup("fit")
        data = cli.datamodule.datasets["train"]
        views = cli.datamodule.settings.views_per_identity
        batch = default_collate([data[i * views] for i in range(8)])  # one view of each of 8 identities
        system = cli.model
        system.configure_data(cli.datamodule.uv_maps())
        net = system.network.train()
        if variant == "paper objective":
            loss, reid = system.loss, freeze(load_pretrained(system.hparams.reid))
        else:
            loss = RefineTexLoss(reid_weight=0.0, style_weight=0.0, face_weight=0.0, novel_view_weight=0.0,
                                 cycle_weight=0.0, url_weight=0.0, texture_l1_weight=1.0)
            reid = None
        optimiser = torch.optim.Adam(net.parameters(), lr=system.hparams.lr, betas=tuple(system.hparams.betas))
        rows, start = [], time.perf_counter()
        for step in range(steps + 1):
            if step % 20 == 0:
                net.eval()
                with torch.no_grad():
                    m = texture_metrics(net(batch["image"], batch["parts"]).texture, batch["texture"],
                                        batch["texture_mask"], batch["known_mask"])
                net.train()
                rows.append({"step": step, "l1/visible": float(m["l1/visible"].nanmean()),
                             "l1/invisible": float(m["l1/invisible"].nanmean())})
                print(variant, rows[-1], f"{time.perf_counter() - start:.0f} s", flush=True)
            if step == steps:
                break
            total, _, _ = loss(net, batch, step, reid, None)
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
        curves[variant] = rows
    return {"steps": steps, "curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the folder of a scripts/refinetex_ablations.py run")
    parser.add_argument("--steps", type=int, default=120, help="optimiser steps of the one-batch overfit")
    parser.add_argument("--checks", nargs="+", choices=["objective", "overfit"], default=["objective", "overfit"],
                        help="which checks to run (a check already in diagnostics.json is not re-run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    path = out / "diagnostics.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    if "objective" in args.checks and "objective" not in result:
        result["objective"] = objective_check(out)
        path.write_text(json.dumps(result, indent=1))
    if "overfit" in args.checks and "overfit" not in result:
        torch.manual_seed(0)
        result["overfit"] = overfit(args.steps)
        path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
