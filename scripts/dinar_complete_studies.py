"""Diagnostics of scripts/dinar_complete_results.py (see its docstring): held-out vs training denoising
loss, kept latent cells, the VQGAN oracle study and the x0 check."""
from __future__ import annotations

import json
import logging

import numpy as np
import torch
from dinar_complete_data import pairs_module  # scripts/, beside this file
from dinar_complete_eval import eval_items, mean_fill, texel_errors
from dinar_complete_results import load_diffusion
from torch.utils.data import default_collate

log = logging.getLogger("dinar_complete")


def implied_noise(diffusion, result) -> torch.Tensor:
    """The epsilon a denoiser output implies, whatever the parametrisation (for epsilon prediction the
    output itself): eps = (x_t - sqrt(abar) x0_hat) / sqrt(1 - abar), x0_hat = diffusion.predict_x0."""
    if diffusion.prediction_type == "epsilon":
        return result.prediction
    abar = diffusion.alphas_cumprod[result.t].float().view(-1, 1, 1, 1)
    x0 = diffusion.predict_x0(result.prediction, result.x_t, result.t)
    return (result.x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


@torch.no_grad()
def denoising_gap(system, train: dict, test: dict, timesteps=(10, 100, 300, 600, 800, 900, 999), limit: int = 480) -> list[dict]:
    """EMA denoising loss as epsilon MSE (the epsilon the output implies, `implied_noise`, so that
    epsilon- and v-prediction models compare) on training and held-out pairs at fixed and uniform
    timesteps, and on the held-out pairs the loss of a constant guess: the epsilon implied by x0 = the
    mean training latent, (x_t - sqrt(abar) mean) / sqrt(1 - abar), which ignores the condition (a
    denoiser worse than it at some t has not learnt what the mean latent tells at that t). Also the
    held-out latent x0 MSE of the denoiser ("test_x0") and of the mean-latent guess ("test_x0_mean_latent")."""
    out = []
    mean_latent = train["z0"].mean(0, keepdim=True)
    with system.ema.swap_into(system.denoiser):
        system.denoiser.eval()
        for t in [*timesteps, "all"]:
            row = {"t": t}
            for name, data in (("train", train), ("test", test)):
                z0, cond = data["z0"][:limit], data["cond"][:limit]
                g = torch.Generator().manual_seed(1)
                noise = torch.randn(z0.shape, generator=g)
                tt = torch.randint(0, 1000, (len(z0),), generator=g) if t == "all" else torch.full((len(z0),), t)
                losses, x0_errors = [], []
                for s in range(0, len(z0), 64):
                    r = system.diffusion.training_loss(system.denoiser, z0[s:s + 64], cond=cond[s:s + 64],
                                                       t=tt[s:s + 64], noise=noise[s:s + 64])
                    losses.append(((implied_noise(system.diffusion, r) - r.noise) ** 2).mean((1, 2, 3)))
                    x0 = system.diffusion.predict_x0(r.prediction, r.x_t, r.t)
                    x0_errors.append(((x0 - z0[s:s + 64]) ** 2).mean((1, 2, 3)))
                row[name] = float(torch.cat(losses).mean())
                if name == "test":
                    row["test_x0"] = float(torch.cat(x0_errors).mean())
                    row["test_x0_mean_latent"] = float(((mean_latent - z0) ** 2).mean())
                    abar = system.diffusion.alphas_cumprod[tt].float().view(-1, 1, 1, 1)
                    x_t = system.diffusion.add_noise(z0, noise, tt)
                    guess = (x_t - abar.sqrt() * mean_latent) / (1 - abar).sqrt()
                    row["test_mean_latent"] = float(((guess - noise) ** 2).mean())
            out.append(row)
    return out


def kept_cells(batch: dict) -> dict[str, float]:
    """Fraction of the atlas latent cells the nearest-resized B_fill marks known, and kept by the 3x3
    erosion (the replaced region), at 64 x 64 (no downsampling), 32 x 32 (this VQGAN) and 16 x 16
    latents (two downsamplings, DINAR's factor)."""
    import torch.nn.functional as F

    from zoo.diffusion import GaussianDiffusion

    b_fill = ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()
    out = {"texels known (B_fill) / atlas": float((b_fill * batch["atlas"]).sum() / batch["atlas"].sum())}
    for side in (64, 32, 16):
        mask = F.interpolate(b_fill, size=(side, side), mode="nearest")
        atlas = F.interpolate(batch["atlas"], size=(side, side), mode="nearest")
        kept = GaussianDiffusion.replacement_mask(mask, erode=True).float()
        out[f"{side}x{side}: known cells"] = float((mask * atlas).sum() / atlas.sum())
        out[f"{side}x{side}: kept after 3x3 erosion"] = float((kept * atlas).sum() / atlas.sum())
    return out


@torch.no_grad()
def vqgan_oracle_table(args, recipes: dict[str, dict]) -> dict:
    """The VQGAN oracle (the person's merged texture encoded and decoded as the pipeline does:
    pre-quantisation latent, decoded through the codebook, B_fill of the input pasted) at each kept
    checkpoint of each recipe, on every test input and on the evaluated ones: RGB L1 vs the exact
    ground-truth texture and vs the merged texture (`texel_errors`) on the texels unseen in the
    input, next to mean fill and the merged texture itself (the oracle's floor: a VQGAN that
    reproduced its target exactly)."""
    import re

    import yaml

    from zoo.modules.vqgan import VQGAN
    from zoo.render import complete_texture_layout

    dm = pairs_module(args, True, ["test"])
    dm.setup()
    data = dm.datasets["test"]
    batch = default_collate([data[v] for v in range(len(data))])
    index, _ = eval_items(data, args.items)
    b_fill = ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()
    complete = complete_texture_layout(batch["texture"], batch["texture_mask"])

    def errors(pred: torch.Tensor) -> dict[str, float]:
        per = texel_errors(pred, batch)
        out = {}
        for key in ("rgb_l1_truth", "rgb_l1_merged", "gen_l1_merged"):
            out[f"{key}/all"], out[f"{key}/evaluated"] = float(per[key].nanmean()), float(per[key][index].nanmean())
        return out

    out = {"inputs": len(data), "evaluated": len(index), "mean fill": errors(mean_fill(batch)),
           "merged texture (floor)": errors(torch.where(b_fill > 0.5, batch["partial"] * b_fill, batch["texture"])),
           "recipes": {}}
    for name, overrides in recipes.items():
        folder = args.work / "vqgan_study" / name.replace(" ", "_") / "run"
        config = yaml.safe_load((folder / "run_config.yaml").read_text())["model"]["init_args"]["vqgan"]
        rows = []
        for path in sorted(folder.glob("ckpt/vq-step=*.ckpt"), key=lambda p: int(re.search(r"step=(\d+)", p.name).group(1))):
            vqgan = VQGAN(**config["init_args"]).eval()
            state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
            vqgan.load_state_dict({k[len("vqgan."):]: v for k, v in state.items() if k.startswith("vqgan.")})
            decoded = torch.cat([vqgan.decode(vqgan.encode(complete[s:s + 60], quantize=False), quantize=True)
                                 for s in range(0, len(complete), 60)])[:, :19]
            step = int(re.search(r"step=(\d+)", path.name).group(1))
            rows.append({"step": step, **errors(torch.where(b_fill > 0.5, batch["partial"] * b_fill, decoded))})
            log.info("vqgan study %s step %d: %s", name, step, rows[-1])
        info = json.loads((folder / "info.json").read_text()) if (folder / "info.json").is_file() else {}
        out["recipes"][name] = {"overrides": overrides, "rows": rows, "wall": info.get("wall")}
    (args.work / "vqgan_study.json").write_text(json.dumps(out, indent=1))
    return out


@torch.no_grad()
def x0_check(args, timesteps=(10, 50, 200, 500, 999)) -> dict:
    """Where the diffusion loses its oracle: the EMA denoiser's x0 prediction from the oracle latent
    (the merged texture's) noised to t, conditioned on the input view, decoded and pasted as the
    pipeline does, on the evaluated inputs: RGB vs merged and generated-channel L1 on unseen texels.
    Near the oracle at small t = the denoiser and decoding work locally; the loss is then in the
    high-noise steps, where the unseen content is decided from the condition."""
    system, _ = load_diffusion(args)
    dm = pairs_module(args, True, ["test"])
    dm.setup()
    data = dm.datasets["test"]
    index, _ = eval_items(data, args.items)
    batch = default_collate([data[v] for v in index])
    complete, partial, known = system.vqgan_inputs(batch)
    z0 = system.encode(complete)
    cond = system._condition(partial, known)[1]

    def score(z: torch.Tensor) -> dict[str, float]:
        decoded = system.decode(z)[:, :19]
        errs = texel_errors(torch.where(known > 0.5, batch["partial"] * known, decoded), batch)
        return {k: float(errs[k].nanmean()) for k in ("rgb_l1_merged", "gen_l1_merged")}

    out = {"oracle": score(z0), "steps": []}
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    with system.ema.swap_into(system.denoiser):
        system.denoiser.eval()
        for t in timesteps:
            tt = torch.full((len(z0),), t)
            pred = system.diffusion.training_loss(system.denoiser, z0, cond=cond, t=tt, noise=noise).prediction
            x0 = system.diffusion.predict_x0(pred, system.diffusion.add_noise(z0, noise, tt), tt)
            out["steps"].append({"t": t, **score(x0), "latent_l1": float((x0 - z0).abs().mean())})
            log.info("x0 check t=%d: %s", t, out["steps"][-1])
    (args.work / "x0_check.json").write_text(json.dumps(out, indent=1))
    return out


@torch.no_grad()
def gap_check(args) -> dict:
    """`denoising_gap` (held-out pairs) of every saved diffusion under --work (diffusion.pt and earlier
    ones kept as diffusion_d<steps>.pt), EMA and raw weights: does the high-noise epsilon floor fall
    with training steps (budget) or stay (a floor of the parametrisation)? Writes gap_check.json."""
    from dinar_complete_results import diffusion_system, latents

    system, _, _ = diffusion_system(args)
    train, test = latents(args, system, "train"), latents(args, system, "test")
    out = []
    for path in sorted(args.work.glob("diffusion*.pt")):
        if "resume" in path.name:
            continue
        saved = torch.load(path, map_location="cpu", weights_only=True)
        system.load_state_dict(saved["state_dict"])
        system.eval()
        rows = denoising_gap(system, train, test, timesteps=(300, 600, 800, 900, 999))
        z0, cond = test["z0"][:480], test["cond"][:480]
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
        for row in rows:
            if row["t"] != "all":  # the raw (non-EMA) weights on the same draw
                r = system.diffusion.training_loss(system.denoiser, z0, cond=cond, t=torch.full((len(z0),), row["t"]), noise=noise)
                row["test_raw"] = float(((implied_noise(system.diffusion, r) - r.noise) ** 2).mean())
        out.append({"file": path.name, "steps": saved["info"]["steps"], "gap": rows})
        log.info("gap check %s (%d steps): %s", path.name, saved["info"]["steps"], rows)
    (args.work / "gap_check.json").write_text(json.dumps(out, indent=1))
    return out


def lr_probe(args) -> dict:
    """Is the high-noise epsilon floor the optimiser's noise at the constant learning rate (a recipe
    limit that more steps at that rate would not remove) or what the steps have not learnt yet? A
    copy of the current run's last resume state (diffusion_resume.pt) continues for --probe_steps
    past diffusion.pt at --probe_lr (same loop, data and seed; not a model of the doc's tables), then
    `denoising_gap` of its EMA and raw weights. Writes lr_probe.json; diffusion.pt is not touched."""
    import shutil

    from dinar_complete_results import diffusion_system, latents
    from latent_diffusion_loop import train_on_latents

    system, _, batch_size = diffusion_system(args)
    train, test = latents(args, system, "train"), latents(args, system, "test")
    base = int(torch.load(args.work / "diffusion.pt", map_location="cpu", weights_only=True)["info"]["steps"])
    resume = args.work / f"lrprobe_resume_lr{args.probe_lr:g}.pt"
    if not resume.is_file():
        shutil.copy(args.work / "diffusion_resume.pt", resume)
    start = int(torch.load(args.work / "diffusion_resume.pt", map_location="cpu", weights_only=True)["losses"].numel())
    history, wall, _ = train_on_latents(system, train["z0"], train["cond"], steps=base + args.probe_steps, batch_size=batch_size,
                                        seed=0, resume=resume, loss_type="l2", save_every=50, log_every=50, lr=args.probe_lr)
    system.eval()
    rows = denoising_gap(system, train, test, timesteps=(300, 600, 800, 900, 999))
    z0, cond = test["z0"][:480], test["cond"][:480]
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for row in rows:
            if row["t"] != "all":
                r = system.diffusion.training_loss(system.denoiser, z0, cond=cond, t=torch.full((len(z0),), row["t"]), noise=noise)
                row["test_raw"] = float(((implied_noise(system.diffusion, r) - r.noise) ** 2).mean())
    out = {"lr": args.probe_lr, "from_step": start, "to_step": len(history), "wall": wall,
           "loss_last100": float(np.mean(history[-100:])), "gap": rows}
    log.info("lr probe: %s", out)
    (args.work / "lr_probe.json").write_text(json.dumps(out, indent=1))
    return out
