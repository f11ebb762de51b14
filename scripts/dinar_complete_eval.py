"""Evaluation half of scripts/dinar_complete_results.py (see its docstring): sampler table, denoising
loss, kept latent cells, Table 2 rows, figures, and the docs/dinar_results.md section."""
from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch
from dinar_complete_data import pairs_data, pairs_module, stage1_net
from dinar_complete_results import REPO, Timer, latents, load_diffusion, unet_baseline
from torch.utils.data import default_collate

log = logging.getLogger("dinar_complete")
START, END = "<!-- DINAR_COMPLETE:START -->", "<!-- DINAR_COMPLETE:END -->"
SAMPLERS = [("ddim", 200), ("ddim", 50), ("ddim", 20), ("dpm++", 20), ("dpm++", 10)]
MS_SSIM = {"betas": (0.0448, 0.2856, 0.3001), "kernel_size": 11, "sigma": 1.5}
G = 16  # generated channels


def eval_items(data, people: int) -> tuple[list[int], list[str]]:
    """Per test person (the first `people`): its most frontal view and its most back-facing view."""
    index, side = [], []
    facing = data.extras["facing"]
    for p in range(min(people, len(data.merged))):
        views = torch.nonzero(data.view_person == p).flatten()
        index += [int(views[facing[views].argmax()]), int(views[facing[views].argmin()])]
        side += ["front", "back"]
    return index, side


def unseen(batch: dict) -> torch.Tensor:
    """Atlas texels no pixel of the input landed on (gap-filled ones count as unseen, as before)."""
    return ((batch["atlas"] > 0.5) & (batch["known_mask"] < 0.5)).float()


def texel_errors(pred: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """Per item: RGB L1 ([0, 1] units) and PSNR vs the exact ground-truth texture, RGB L1 vs the merged
    texture (where some view saw the texel) and generated-channel L1 vs the merged texture, all on
    the unseen texels."""
    from zoo.metrics import texture_metrics

    m = unseen(batch)
    rgb = texture_metrics(pred[:, G:G + 3], batch["albedo"], batch["atlas"], batch["known_mask"])
    seen = m * batch["texture_mask"]
    l1_merged = ((pred[:, G:G + 3] - batch["texture"][:, G:G + 3]).abs() / 2 * seen).sum((1, 2, 3)) / (3 * seen.sum((1, 2, 3)))
    l1_gen = ((pred[:, :G] - batch["texture"][:, :G]).abs() * m).sum((1, 2, 3)) / (G * m.sum((1, 2, 3)))
    return {"rgb_l1_truth": rgb["l1/invisible"], "rgb_psnr_truth": rgb["psnr/invisible"],
            "rgb_l1_merged": l1_merged, "gen_l1_merged": l1_gen}


def mean_fill(batch: dict) -> torch.Tensor:
    k = ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()
    mean = (batch["partial"] * k).sum((2, 3), keepdim=True) / k.sum((2, 3), keepdim=True).clamp_min(1)
    return torch.where(k > 0.5, batch["partial"], mean.expand_as(batch["partial"]))


@torch.no_grad()
def inpaint_full(system, texture21: torch.Tensor, sampler: str, steps: int, seed: int, atlas: torch.Tensor,
                 init: torch.Tensor | None = None, init_timestep: int | None = None) -> torch.Tensor:
    """DINAR's inpainting of whole 21-channel textures: like `LatentInpaintingSystem.inpaint` (same
    sampling, same paste: the system's `known_paste`), but the decoded mask channels are kept too
    (eq. 6 pastes all 21 channels of the input on B_fill). `init`, `init_timestep`: a latent to
    start from at that timestep instead of noise (`GaussianDiffusion.sample`; not DINAR)."""
    from zoo.render.uv_space import soft_paste_mask

    partial, filled, gap = texture21[:, :-2], texture21[:, -2:-1], texture21[:, -1:]
    known = (filled - gap).clamp(0, 1)
    vq_input, b_fill = system.partial_input(partial, known, gap)
    z_partial, cond, resized = system._condition(vq_input, b_fill)
    eta = 1.0 if sampler == "ddim" else 0.0
    generator = torch.Generator().manual_seed(seed)
    with system.ema.swap_into(system.denoiser):
        z = system._sample(z_partial, cond, resized, sampler, steps, eta, generator, True,
                           None if init is None else init.expand_as(z_partial), init_timestep)
    decoded = system.decode(z)
    source = torch.cat([partial * b_fill, filled, gap], 1)
    if system.hparams.known_paste == "hard":
        return torch.where(b_fill > 0.5, source, decoded)
    weight = soft_paste_mask(b_fill, atlas.to(b_fill))
    return (1 - weight) * decoded + weight * source


def cached(args, name: str, fn, folder: str = "eval_cache") -> dict:
    """fn() -> dict of tensors / floats, saved under <work>/<folder>/<name>.pt (a restart reuses it;
    `folder`: eval_cache for diffusion.pt, eval_cache_d<steps> for a kept shorter model)."""
    path = args.work / folder / f"{name}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    with Timer() as t:
        out = fn()
    out = {**out, "wall": t.wall, "cpu": t.cpu}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def baselines(system, unet, batch: dict) -> dict[str, tuple[int | None, object]]:
    """The reference methods on unseen texels: {name: (steps, fn() -> 19-channel prediction)}."""
    b_fill = ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()

    def oracle():
        complete = system.complete_input(batch["texture"], batch["texture_mask"])
        decoded = system.decode(system.encode(complete))[:, :19]
        return torch.where(b_fill > 0.5, batch["partial"] * b_fill, decoded)
    return {"mean fill (per channel)": (None, lambda: mean_fill(batch)),
            "U-Net baseline": (1, lambda: unet(batch["partial"], b_fill)),
            "VQGAN oracle (merged texture encoded + decoded)": (None, oracle)}


def sampler_table(args, system, unet, batch: dict, ddim200: dict[int, dict]) -> list[dict]:
    """Every method on the same inputs; `ddim200` the cached DDIM 200 runs per seed (shared with the
    Table 2 row, the same computation)."""
    rows = []

    def record(name, steps, seed, pred, wall, cpu):
        errs = texel_errors(pred, batch)
        means = {k: float(v.nanmean()) for k, v in errs.items()}
        rows.append({"method": name, "steps": steps, "seed": seed, **means, "wall_per_avatar": wall / len(pred),
                     "cpu_per_avatar": cpu / len(pred), "per_item": {k: v.tolist() for k, v in errs.items()}})
        log.info("%s %s seed %d: %s (%.2f s / avatar)", name, steps, seed, means, wall / len(pred))

    def add(name, steps, fn, seed=0, key=None):
        out = cached(args, key, lambda: {"pred": fn()}) if key else None
        if out is None:
            with Timer() as t:
                pred = fn()
            out = {"pred": pred, "wall": t.wall, "cpu": t.cpu}
        record(name, steps, seed, out["pred"], out["wall"], out["cpu"])

    for name, (steps, fn) in baselines(system, unet, batch).items():
        add(name, steps, fn)
    for seed, out in ddim200.items():
        record("diffusion ddim", 200, seed, out["texture"][:, :19], out["wall"], out["cpu"])
    samplers = [s for s in SAMPLERS if s != ("ddim", 200)] + ([("ddpm", 1000)] if args.ddpm else [])
    for sampler, steps in samplers:
        for seed in range(args.seeds if (sampler, steps) == ("ddim", 50) else 1):
            add(f"diffusion {sampler}", steps, lambda: system.inpaint(
                batch["partial"], batch["known_mask"], batch["gap_mask"], sampler=sampler, steps=steps,
                generator=torch.Generator().manual_seed(seed), atlas=batch["atlas"]), seed, key=f"{sampler}{steps}_s{seed}")
    return rows


# --- Table 2 ----------------------------------------------------------------------------------
def encoder_noise(index: int, size: int) -> torch.Tensor:
    return torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(index))


@torch.no_grad()
def stage1_textures(nets, people, plain, occ, index: list[int], encoder_image: str) -> dict[str, torch.Tensor]:
    """Single-view textures of the stage-1 rows for each input view (float32, noise seeded by the
    view); the encoder sees the view as the stage-1 run fed it ("raw" or "on_black")."""
    from zoo.render.shading import composite

    image = torch.stack([people.view(v)["image"] for v in index])
    mask = torch.stack([people.view(v)["mask"] for v in index])
    if encoder_image == "on_black":
        image = composite(image, mask, -1.0)
    noise = torch.cat([encoder_noise(v, image.shape[-1]) for v in index])
    rgb_plain = torch.stack([plain.views[v][G:].float() for v in index])
    rgb_occ = torch.stack([occ.views[v][G:].float() for v in index])
    return {"RGB texture": nets["rgb"].make_texture(rgb_channels=rgb_plain),
            "Neural texture": nets["neural"].make_texture(image, mask, None, noise=noise, noise_mode="const"),
            "Both textures": nets["both"].make_texture(image, mask, rgb_plain, noise=noise, noise_mode="const"),
            "both_occ": nets["both"].make_texture(image, mask, rgb_occ, noise=noise, noise_mode="const")}


def finetuned(args, nets, avatar_pairs, occ, index, side, inpainted: torch.Tensor) -> torch.Tensor:
    """DINAR's RGB fine-tuning (`zoo.inference.dinar_finetune.finetune_rgb`, its defaults and schedule:
    64 steps, 128 with 64 rescale steps when the view shows the back: `back_visible`) of each inpainted texture on its
    input view, through the frozen stage-1 renderer and discriminator; perceptual term: the stage-1
    runs' stand-in (ReID features of reid-synthetic, LPIPS(vgg) weights are not on this machine) on
    32 px crops (256 of 512, as stage 1 at 64 px)."""
    from zoo.inference.dinar_finetune import back_visible, finetune_rgb, finetune_schedule
    from zoo.pretrained import load_pretrained
    from zoo.systems.neural_avatar import build_perceptual

    perceptual, _ = build_perceptual("reid", None, "reid-synthetic")
    disc = load_pretrained(str(args.work / "stage1" / "both" / "discriminator")).eval()
    out = []
    for i, v in enumerate(index):
        view, item = avatar_pairs.views.view(v), avatar_pairs[v]
        shows_back = bool(back_visible(item["source_texel_cosines"][None], avatar_pairs.face_mask_uv)[0])
        steps, rescale = finetune_schedule(shows_back)  # decided from the view, as the pipeline does
        result = finetune_rgb(inpainted[i:i + 1], nets["both"].renderer, view["image"][None], view["mask"][None],
                              view["uv"][None], item["source_texel_cosines"][None], discriminator=disc, perceptual=perceptual,
                              steps=steps, rescale_steps=rescale, crop_size=32, atlas_mask=occ[v]["atlas"][None],
                              generator=torch.Generator().manual_seed(v))
        out.append(result.texture[0].detach())
    return torch.stack(out)


def row_net(nets, row: str):
    return nets["rgb"] if row.startswith("RGB") else nets["neural"] if row.startswith("Neural") else nets["both"]


@torch.no_grad()
def table2(textures_by_seed: list[dict], nets, reid, people, batch, index) -> tuple[dict, dict]:
    """Per row and seed: per-input means over its novel views (the person's other views) of PSNR,
    MS-SSIM (3 scales), ReID cosine; and the RGB texel error on texels unseen in the input."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    from zoo.metrics import texture_metrics
    from zoo.metrics.image import reid_cosine_similarity, standard_psnr
    from zoo.systems.neural_avatar import uv_body_mask

    results, examples = {}, {}
    for seed, textures in enumerate(textures_by_seed):
        for row, tex in textures.items():
            net = row_net(nets, row)
            per = {"psnr": [], "ms_ssim": [], "reid_cos": []}
            renders = []
            for i, v in enumerate(index):
                person = int(people.view_person[v])
                novel = [int(u) for u in people.views_of[person] if int(u) != v]
                views = [people.view(u) for u in novel]
                uv = torch.stack([w["uv"] for w in views])
                m = torch.stack([w["mask"] for w in views])
                real = torch.stack([w["image"] for w in views]) * m + (1 - m)
                render = net.render(tex[i:i + 1].expand(len(novel), -1, -1, -1), uv, uv_body_mask(uv), 1.0)["rgb"].clamp(-1, 1)
                per["psnr"].append(float(standard_psnr(render, real).mean()))
                per["ms_ssim"].append(float(ms_ssim((render + 1) / 2, (real + 1) / 2, data_range=1.0, reduction="none",
                                                    normalize="relu", **MS_SSIM).mean()))
                per["reid_cos"].append(float(reid_cosine_similarity(reid, render, real).mean()))
                renders.append((novel, render))
            if row.startswith("Neural"):
                per["rgb_l1_unseen"] = [float("nan")] * len(index)
            else:
                rgb = tex[:, :3] if row.startswith("RGB") else tex[:, G:G + 3]
                per["rgb_l1_unseen"] = texture_metrics(rgb, batch["albedo"], batch["atlas"], batch["known_mask"])["l1/invisible"].tolist()
            results.setdefault(row, []).append(per)
            if seed == 0:
                examples[row] = {"texture": tex, "renders": renders}
    return results, examples


def split_means(per: dict, side: list[str], which: str) -> dict[str, float]:
    keep = [i for i, s in enumerate(side) if s == which]
    return {k: float(np.nanmean([v[i] for i in keep])) for k, v in per.items()}


# --- figures ----------------------------------------------------------------------------------
def figures(people, index, side, facing, examples, nets, path_fig: Path, path_anim: Path, persons: int = 2) -> None:
    from zoo.body import AnnyBody
    from zoo.body.animation import turntable, walk_cycle
    from zoo.callbacks.avatar_writer import render_avatar
    from zoo.utils.images import grid, save_png, to_uint8

    lines = []
    for row, ex in examples.items():
        line = []
        for i in range(min(persons * 2, len(index))):
            if side[i] != "front":
                continue
            novel, render = ex["renders"][i]
            f = facing[torch.tensor(novel)]
            front, back = int(f.argmax()), int(f.argmin())  # the person's most frontal / back novel views
            line += [to_uint8(people.view(index[i])["image"]), to_uint8(render[front]), to_uint8(render[back])]
        lines.append(line)
    save_png(grid(lines), path_fig)
    body = AnnyBody()
    standing, yaws = turntable(body, 4)
    walking = walk_cycle(body, 4)
    final = list(examples)[-1]
    rows = []
    for i in range(min(persons * 2, len(index))):
        if side[i] != "front":
            continue
        tex = examples[final]["texture"][i]
        net = row_net(nets, final)
        frames = torch.cat([render_avatar(net, tex, standing, body.faces, body.corner_uvs, yaws, 64),
                            render_avatar(net, tex, walking, body.faces, body.corner_uvs, [30.0] * 4, 64)])
        rows.append([to_uint8(people.view(index[i])["image"])] + [to_uint8(f) for f in frames])
    save_png(grid(rows), path_anim)


def machine() -> str:
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").is_file() else ["?"]
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
            f"{torch.__version__}, Python {platform.python_version()}; load average {' '.join(load)}")


def study_stage1(work: Path) -> str:
    """Which stage-1 "both" checkpoint a study's pairs came from."""
    source = json.loads((work / "stage1" / "both" / "source.json").read_text())
    return f"{source['checkpoint']} (step {source['step']})"


def evaluate(args) -> None:
    import yaml
    from dinar_complete_budget import budget_study  # scripts/, beside this file
    from dinar_complete_posterior import posterior_study
    from dinar_complete_studies import denoising_gap, kept_cells

    from zoo.datamodules.synthetic import PRESETS
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    started, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.perf_counter()
    ctx = {"machine_start": machine(), "args": {k: v if k == "stage1" else str(v) for k, v in vars(args).items()},
           "started": started, "note": args.note}
    studies = args.studies if args.studies is not None else [args.work / "vqgan_study.json"]
    ctx["vqgan_studies"] = [{"path": str(p), "stage1": study_stage1(p.parent), **json.loads(p.read_text())}
                            for p in studies if p.is_file()]
    if args.previous is not None:
        ctx["previous"] = {"path": str(args.previous), **json.loads(args.previous.read_text())}
    occ_dm, plain_dm = pairs_module(args, True), pairs_module(args, False, ["test"])
    occ_dm.setup()
    plain_dm.setup()
    occ, plain = occ_dm.datasets["test"], plain_dm.datasets["test"]
    avatar_pairs = occ_dm._synthetic_people().datasets["test"]
    people = avatar_pairs.views
    if not torch.equal(occ.view_person, torch.as_tensor(people.view_person)):
        raise RuntimeError("pair order differs from the views' order")
    index, side = eval_items(occ, args.items)
    batch = default_collate([occ[v] for v in index])
    ctx["items"] = {"people": len(index) // 2, "inputs": len(index), "facing": [float(occ.extras["facing"][v]) for v in index]}
    ctx["kept"] = kept_cells(batch)
    system, saved = load_diffusion(args)
    ctx["diffusion_info"] = saved["info"]
    losses = saved["losses"]
    ctx["diffusion_curve"] = [float(losses[:50].mean()), float(losses[-100:].mean())]
    unet = unet_baseline()
    u = torch.load(args.work / "unet.pt", weights_only=True)
    unet.load_state_dict(u["net"])
    unet.eval()
    ctx["unet_info"] = u["info"]
    ctx["unet_curve"] = [float(u["losses"][:50].mean()), float(u["losses"][-50:].mean())]
    vq_info = args.work / "vqgan_run" / "info.json"
    ctx["vqgan_info"] = json.loads(vq_info.read_text()) if vq_info.is_file() else {}
    ctx["stage1"] = {r: json.loads((args.work / "stage1" / r / "source.json").read_text()) for r in ("both", "neural", "rgb")}
    stage1_data = yaml.safe_load((Path(ctx["stage1"]["both"]["checkpoint"]).parent.parent / "row_config.yaml").read_text())
    preset = stage1_data["data"]["init_args"].get("preset", "dinar")
    ctx["stage1_identities"] = stage1_data["data"]["init_args"].get("overrides", {}).get(
        "num_identities", PRESETS[preset].num_identities)
    nets = {r: stage1_net(args, r) for r in ("both", "neural", "rgb")}
    textures = stage1_textures(nets, people, plain, occ, index, pairs_data(args)["encoder_image"])
    both_occ = textures.pop("both_occ")
    batch["partial"] = both_occ[:, :19]  # float32 single-view textures (the pairs store float16)
    with torch.no_grad():
        ctx["gap"] = denoising_gap(system, latents(args, system, "train"), latents(args, system, "test"))
        log.info("denoising gap %s", ctx["gap"])
        ddim_occ = {s: cached(args, f"ddim200_occ_s{s}", lambda: {
            "texture": inpaint_full(system, both_occ, "ddim", 200, s, batch["atlas"])}) for s in range(args.seeds)}
        ctx["samplers"] = sampler_table(args, system, unet, batch, ddim_occ)
        ctx["posterior"] = posterior_study(args, system, unet, batch, both_occ)
        ctx["budget"] = budget_study(args, unet, batch, both_occ)
        ddim_plain = {s: cached(args, f"ddim200_plain_s{s}", lambda: {
            "texture": inpaint_full(system, textures["Both textures"], "ddim", 200, s, batch["atlas"])}) for s in range(args.seeds)}
    by_seed = []
    for s in range(args.seeds):
        rows = dict(textures) if s == 0 else {}
        rows["Both + inpainting"] = ddim_plain[s]["texture"]
        rows["Both + inpainting + occlusion detector"] = ddim_occ[s]["texture"]
        if args.finetune and s == 0:
            tuned = cached(args, "finetune_s0", lambda: {"texture": finetuned(
                args, nets, avatar_pairs, occ, index, side, ddim_occ[0]["texture"])})
            rows["Both + inpainting + occlusion detector + RGB fine-tuning"] = tuned["texture"]
            ctx["finetune_wall_per_avatar"] = tuned["wall"] / len(index)
        by_seed.append(rows)
    reid = freeze(load_pretrained("reid-synthetic"))
    results, examples = table2(by_seed, nets, reid, people, batch, index)
    ctx["table2"] = {row: [{"front": split_means(p, side, "front"), "back": split_means(p, side, "back"), "per_item": p}
                           for p in per] for row, per in results.items()}
    ctx["side"] = side
    if len(args.train_seeds) > 1:  # the stage-2 rows with the diffusion of every other training seed
        from dinar_complete_seeds import train_seed_study

        def tune(texture, folder):
            return cached(args, "finetune_s0", lambda: {"texture": finetuned(
                args, nets, avatar_pairs, occ, index, side, texture)}, folder) if args.finetune and args.seed_finetune else None
        ctx["train_seeds"] = train_seed_study(args, nets, reid, people, batch, index, side, textures, both_occ, tune)
    figures(people, index, side, occ.extras["facing"], examples, nets, REPO / "docs" / "dinar_complete_figure.png",
            REPO / "docs" / "dinar_complete_animation.png")
    ctx["machine_end"], ctx["wall"] = machine(), time.perf_counter() - t0
    (args.work / "results.json").write_text(json.dumps(ctx, indent=1))
    from dinar_complete_doc import write_section

    write_section(ctx, REPO / "docs" / "dinar_results.md")
