"""DINAR complete at CPU size: stage-2 inpainting of 21-channel neural textures and the paper's
Table 2 rows on held-out synthetic people. Writes its own section of docs/dinar_results.md
(between DINAR_COMPLETE markers) and docs/dinar_complete_figure.png / _animation.png.

    ZOO_HOME=<cache> python scripts/dinar_complete_results.py train    # every training stage, resumable
    ZOO_HOME=<cache> python scripts/dinar_complete_results.py evaluate

Stages (each skipped when its output exists under --work; interrupted ones resume):
1. export: the stage-1 rows of scripts/dinar_results.py (--stage1, its --out: both / neural /
   rgb checkpoints) saved as `DinarAvatarNet` folders (`train` needs only "both"; `evaluate` exports
   the other two when they are not there yet);
2. pairs: `NeuralTexturePairsDataModule` with the frozen "both" network on the synthetic people
   the stage-1 rows trained on ("small" preset at 64 x 64, here with 400 identities), with the
   occlusion detector (all splits) and without it (test split, for the rows before "+ occlusion");
3. vqgan: configs/dinar/vqgan_cpu.yaml on those pairs (`python -m zoo fit`, checkpoints every 50);
4. diffusion: configs/dinar/diffusion_cpu.yaml; the frozen VQGAN encodes the training pairs once
   and the optimiser steps run on those latents (the computation of the system's training_step);
5. baseline: the zoo's `TextureUNet` trained on the same pairs (single view -> merged, L1 on the
   texels some view saw), the one-pass reference the diffusion must beat.
Evaluation: sampler table (DDIM 200 / 50 / 20, DPM-Solver++ 20 / 10, optional DDPM 1000) against
mean fill, the U-Net and the VQGAN oracle on the texels unseen in the input (RGB vs the exact
ground-truth texture, generated channels vs the merged texture), seconds per avatar; held-out vs
training denoising loss; kept latent cells after the 3x3 erosion at 32 and 16 px latents; Table 2
rows (front and back input, novel views) with PSNR, MS-SSIM (3 scales), ReID cosine and the RGB
texel error; sampler-seed spread of the inpainting rows; a figure and an animation strip; the
posterior-sample study (scripts/dinar_complete_posterior.py); the diffusion budget study of the kept
shorter models diffusion_d<steps>.pt (scripts/dinar_complete_budget.py); with --train_seeds 0 1 ...
(train and evaluate) the diffusion trained with each seed (diffusion_seed<s>.pt beside diffusion.pt)
and the stage-2 rows' training-seed spread (scripts/dinar_complete_seeds.py). Diagnostics (scripts/
dinar_complete_studies.py): x0_check, gap_check, lr_probe.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from dinar_complete_data import build_pairs, data_args, export_stage1, pairs_module  # scripts/, beside this file
from latent_diffusion_loop import train_on_latents

from zoo.utils.runs import Timer

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("dinar_complete")


# --- 3. VQGAN ---------------------------------------------------------------------------------
def vqgan_config(args, overrides: dict | None = None) -> dict:
    """configs/dinar/vqgan_cpu.yaml with model.init_args `overrides` (the study's recipes)."""
    config = yaml.safe_load((REPO / "configs" / "dinar" / "vqgan_cpu.yaml").read_text())
    config["model"]["init_args"].update(overrides or {})
    return config


def train_vqgan(args, run: Path | None = None, export: Path | None = None, steps: int | None = None,
                overrides: dict | None = None) -> None:
    """`python -m zoo fit` of the VQGAN config on the pairs, resumable; every --vqgan_every steps a
    kept checkpoint `vq-step=N.ckpt` (the oracle study reads them)."""
    export, run, steps = export or args.work / "vqgan", run or args.work / "vqgan_run", steps or args.vqgan_steps
    if (export / "model.safetensors").is_file():
        return
    config = vqgan_config(args, overrides)
    config["model"]["init_args"]["export_path"] = str(export)
    config["data"] = data_args(args)
    config["data"]["init_args"]["batch_size"] = config["data"]["init_args"].get("batch_size", 4)
    config["trainer"].update(max_steps=steps, enable_progress_bar=False, enable_checkpointing=True,
                             default_root_dir=str(run), check_val_every_n_epoch=None, limit_val_batches=0,
                             logger={"class_path": "pytorch_lightning.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(run), "name": "csv", "version": 0}},
                             callbacks=[{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": str(run / "ckpt"), "save_last": True,
                                                       "every_n_train_steps": 50, "save_top_k": 0}},
                                        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": str(run / "ckpt"), "filename": "vq-{step}",
                                                       "every_n_train_steps": args.vqgan_every, "save_top_k": -1}}])
    run.mkdir(parents=True, exist_ok=True)
    path = run / "run_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "zoo", "fit", "--config", str(path)]
    lasts = sorted((run / "ckpt").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if lasts:
        command.append(f"--ckpt_path={lasts[-1]}")
        logs = run / "csv" / "version_0" / "metrics.csv"
        if logs.is_file():  # a resumed run rewrites metrics.csv
            logs.rename(logs.with_name(f"metrics_part{len(list(logs.parent.glob('metrics_part*.csv'))) + 1}.csv"))
    log.info("%s", " ".join(command))
    with Timer() as t:
        subprocess.run(command, check=True, cwd=run)
    info = run / "info.json"
    earlier = json.loads(info.read_text())["wall"] if info.is_file() else 0.0
    info.write_text(json.dumps({"wall": earlier + t.wall, "steps": steps, "overrides": overrides or {}}))


def vqgan_recipes(args) -> dict[str, dict]:
    """The study's recipes (model.init_args overrides of configs/dinar/vqgan_cpu.yaml)."""
    config = vqgan_config(args)["model"]["init_args"]
    channels = config["vqgan"]["init_args"]["out_channels"]
    rgb = list(config["perceptual_channels"])
    weights = [args.rgb_weight if c in rgb else 1.0 for c in range(channels)]
    return {"reference": {"reconstruction_channel_weights": None},
            f"rgb_x{args.rgb_weight:g}": {"reconstruction_channel_weights": weights}}


def vqgan_study(args) -> None:
    """Train each recipe for --study_steps (kept checkpoints every --vqgan_every), then measure the
    oracle (merged texture encoded + decoded, B_fill pasted) at each checkpoint."""
    recipes = vqgan_recipes(args)
    if args.recipes:
        unknown = set(args.recipes) - set(recipes)
        if unknown:
            raise SystemExit(f"--recipes: unknown {sorted(unknown)}; known: {sorted(recipes)}")
        recipes = {name: recipes[name] for name in args.recipes}
    for name, overrides in recipes.items():
        folder = args.work / "vqgan_study" / name.replace(" ", "_")
        train_vqgan(args, folder / "run", folder / "export", args.study_steps, overrides)
    from dinar_complete_studies import vqgan_oracle_table  # scripts/ is on sys.path when run as a script

    vqgan_oracle_table(args, recipes)


# --- 4. diffusion -----------------------------------------------------------------------------
def diffusion_system(args, seed: int | None = None):
    """The diffusion system of configs/dinar/diffusion_cpu.yaml on --work's VQGAN; `seed`: its
    seed_everything (the denoiser's initial weights; None: the config's, 0)."""
    from zoo.cli import ZooCLI

    extra = [] if seed is None else [f"--seed_everything={seed}"]
    cli = ZooCLI(args=["--config", str(REPO / "configs" / "dinar" / "diffusion_cpu.yaml"), "--trainer.logger=false",
                       f"--model.init_args.vqgan={args.work / 'vqgan'}", *extra], run=False)
    system = cli.model
    system.vqgan  # load the frozen first stage
    return system, int(cli.trainer.max_steps), int(cli.datamodule.batch_size)


@torch.no_grad()
def encode_pairs(system, dataset, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Latents of the merged textures (z0) and the conditions (single-view latent | resized mask)."""
    from torch.utils.data import DataLoader

    z0, cond = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        complete, partial, known = system.vqgan_inputs(batch)
        z0.append(system.encode(complete))
        cond.append(system._condition(partial, known)[1])
    return {"z0": torch.cat(z0), "cond": torch.cat(cond)}


def latents(args, system, split: str) -> dict[str, torch.Tensor]:
    path = args.work / f"latents_{split}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    dm = pairs_module(args, True)
    dm.setup()
    with Timer() as t:
        out = encode_pairs(system, dm.datasets[split])
    out["wall"] = torch.tensor(t.wall)
    torch.save(out, path)
    return out


def diffusion_file(work: Path, seed: int, resume: bool = False) -> Path:
    """Training seed 0: diffusion.pt / diffusion_resume.pt (the run's model); seed s > 0: diffusion_seed<s>.pt
    / diffusion_resume_seed<s>.pt beside it (same config, latents and steps)."""
    stem = "diffusion_resume" if resume else "diffusion"
    return work / (f"{stem}.pt" if seed == 0 else f"{stem}_seed{seed}.pt")


def train_diffusion(args, seed: int = 0) -> None:
    """Train the diffusion with training seed `seed`: the denoiser's initial weights (seed_everything),
    the epoch order and the timesteps / noise of every step; seed 0 is the config's seed_everything."""
    final = diffusion_file(args.work, seed)
    if final.is_file():
        return
    system, _, batch_size = diffusion_system(args, seed)
    steps = args.diffusion_steps
    data = latents(args, system, "train")
    z0, cond = data["z0"], data["cond"]
    history, wall, _ = train_on_latents(system, z0, cond, steps=steps, batch_size=batch_size, seed=seed,
                                        resume=diffusion_file(args.work, seed, resume=True), loss_type="l2",
                                        save_every=50, log_every=50)
    info = {"steps": steps, "batch_size": batch_size, "items": len(z0), "wall": wall, "seed": seed,
            "encode_wall": float(data["wall"]), "latent_std": float(z0.std()),
            "prediction_type": system.diffusion.prediction_type}
    torch.save({"state_dict": system.state_dict(), "losses": torch.tensor(history), "info": info}, final)


def load_diffusion(args, seed: int = 0):
    system, _, _ = diffusion_system(args)
    saved = torch.load(diffusion_file(args.work, seed), map_location="cpu", weights_only=True)
    system.load_state_dict(saved["state_dict"])
    return system.eval(), saved


# --- 5. U-Net baseline ------------------------------------------------------------------------
def unet_baseline():
    from zoo.modules.texture_unet import TextureUNet

    torch.manual_seed(0)
    return TextureUNet(in_channels=19, out_channels=19, base_channels=16, depth=3, paste_known=True)


def baseline_mask(batch: dict) -> torch.Tensor:
    """DINAR's B_fill: texels a pixel landed on or the gap fill filled."""
    return ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()


def train_baseline(args) -> None:
    final = args.work / "unet.pt"
    if final.is_file():
        return
    from torch.utils.data import DataLoader

    dm = pairs_module(args, True, batch_size=16)
    dm.setup()
    net = unet_baseline()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    resume = args.work / "unet_resume.pt"
    history, elapsed = [], 0.0
    if resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        history, elapsed = state["losses"].tolist(), float(state["elapsed"])
    start = time.perf_counter()
    epoch = len(history) // len(dm.train_dataloader())
    while len(history) < args.unet_steps:
        loader = DataLoader(dm.datasets["train"], batch_size=16, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(epoch))
        for i, batch in enumerate(loader):
            if i < len(history) - epoch * len(loader):
                continue  # resumed mid-epoch
            known = baseline_mask(batch)
            pred = net(batch["partial"], known)
            seen = batch["texture_mask"].expand_as(pred)
            loss = ((pred - batch["texture"]).abs() * seen).sum() / seen.sum().clamp_min(1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            history.append(loss.item())
            if len(history) % 50 == 0:
                log.info("unet step %d/%d loss %.4f", len(history), args.unet_steps, np.mean(history[-50:]))
                torch.save({"net": net.state_dict(), "optimiser": optimiser.state_dict(),
                            "losses": torch.tensor(history), "elapsed": elapsed + time.perf_counter() - start}, resume)
            if len(history) >= args.unet_steps:
                break
        epoch += 1
    torch.save({"net": net.state_dict(), "losses": torch.tensor(history),
                "info": {"steps": args.unet_steps, "batch_size": 16, "wall": elapsed + time.perf_counter() - start}}, final)


def train(args) -> None:
    export_stage1(args, ("both",))  # stage 2 trains on the "both" network's pairs only
    build_pairs(args)
    study = args.work / "vqgan_study" / args.vqgan_recipe.replace(" ", "_")
    info = study / "run" / "info.json"
    if not (args.work / "vqgan").exists() and info.is_file() and json.loads(info.read_text())["steps"] == args.vqgan_steps:
        (args.work / "vqgan").symlink_to(study / "export")  # the study trained this very recipe and budget
        (args.work / "vqgan_run").symlink_to(study / "run")
        log.info("VQGAN: the study's %r run (%d steps)", args.vqgan_recipe, args.vqgan_steps)
    train_vqgan(args, overrides=vqgan_recipes(args)[args.vqgan_recipe])
    for seed in args.train_seeds:
        train_diffusion(args, seed)
    train_baseline(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate", "pairs", "vqgan_study", "x0_check", "gap_check", "lr_probe"])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("ZOO_HOME", "~/.cache/zoo")).expanduser() / "dinar_complete")
    parser.add_argument("--stage1", nargs="+", required=True, metavar="ROW=PATH",
                        help="the stage-1 networks: both=PATH neural=PATH rgb=PATH, each PATH a run folder "
                             "(row_config.yaml + ckpt/; its highest-step checkpoint) or a checkpoint in "
                             "<run>/ckpt/; or one folder with a run folder per row (scripts/dinar_results.py --out); "
                             "train / pairs / vqgan_study need only both=PATH, evaluate all three")
    parser.add_argument("--identities", type=int, default=400, help="synthetic people of the stage-2 pairs")
    parser.add_argument("--views", type=int, default=6, help="views per person of the stage-2 pairs")
    parser.add_argument("--vqgan_steps", type=int, default=300)
    parser.add_argument("--vqgan_every", type=int, default=100, help="kept VQGAN checkpoint period (steps)")
    parser.add_argument("--vqgan_recipe", default="reference", help="the VQGAN recipe of `train` (see vqgan_recipes)")
    parser.add_argument("--recipes", nargs="*", default=None, help="vqgan_study: only these recipes (default all)")
    parser.add_argument("--studies", nargs="*", type=Path, default=None,
                        help="evaluate: vqgan_study.json files for the doc (default: this --work's own)")
    parser.add_argument("--study_steps", type=int, default=1000, help="VQGAN steps of each recipe in vqgan_study")
    parser.add_argument("--rgb_weight", type=float, default=6.0,
                        help="the study's RGB channel weight of the VQGAN reconstruction loss (others 1)")
    parser.add_argument("--diffusion_steps", type=int, default=1000)
    parser.add_argument("--train_seeds", type=int, nargs="+", default=[0],
                        help="training seeds of the diffusion (0: diffusion.pt; s: diffusion_seed<s>.pt); evaluate: "
                             "the stage-2 rows of Table 2 with each")
    parser.add_argument("--unet_steps", type=int, default=400)
    parser.add_argument("--probe_lr", type=float, default=1e-4, help="lr_probe: the learning rate past diffusion.pt")
    parser.add_argument("--probe_steps", type=int, default=600, help="lr_probe: steps past diffusion.pt")
    parser.add_argument("--items", type=int, default=12, help="test people evaluated (front + back input each)")
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds of the inpainting rows")
    parser.add_argument("--samples", type=int, default=8,
                        help="DDIM 200 samples per input of the posterior study (means of K = 1, 2, 4, ... of them)")
    parser.add_argument("--ddpm", action="store_true", help="also sample with DDPM 1000 steps")
    parser.add_argument("--note", default="", help="a line for the doc's Setup (e.g. which stage-1 networks and why)")
    parser.add_argument("--previous", type=Path, default=None, help="an earlier run's results.json to compare with")
    parser.add_argument("--no_finetune", dest="finetune", action="store_false", help="skip the RGB fine-tuning row")
    parser.add_argument("--no_seed_finetune", dest="seed_finetune", action="store_false",
                        help="skip the RGB fine-tuning row of the training seeds other than 0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command in ("pairs", "vqgan_study"):
        export_stage1(args, ("both",))
        build_pairs(args)
        if args.command == "vqgan_study":
            vqgan_study(args)
    elif args.command == "train":
        train(args)
    elif args.command in ("x0_check", "gap_check", "lr_probe"):  # diagnostics of the trained diffusion
        import dinar_complete_studies

        getattr(dinar_complete_studies, args.command)(args)
    else:
        from dinar_complete_eval import evaluate  # scripts/ is on sys.path when run as a script
        export_stage1(args)  # Table 2 needs every row; rows exported by `train` are checked, not redone
        evaluate(args)


if __name__ == "__main__":
    main()
