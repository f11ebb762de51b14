"""Posterior-sample study of scripts/dinar_complete_results.py: is the diffusion's loss to mean fill
and the U-Net on unseen texels the sample-vs-mean effect of a per-texel metric, or a weak denoiser?

A sampler returns a draw of p(texture | view); per-texel L1 / L2 against the one true texture
favour the posterior mean: for a calibrated sampler one draw has twice the posterior mean's
expected squared error (`zoo.metrics.posterior_samples`). On the same evaluated inputs, with
`--samples` DDIM 200 (eta 1) draws per input (the Table 2 rows' cached draws are seeds 0, 1):
1. the mean of K draws (K = 1, 2, 4, ...), L1 and MSE on unseen texels, with the fit A + B / K
   (A: the error of the sampler's own mean, B: the variance that averaging removes) and the law
   of a calibrated sampler, s^2 (1 + 1 / K);
2. the colour distribution of the unseen RGB texels (per input: colour standard deviation and
   sliced W1 against the truth's / merged texture's), which does not reward blur;
3. calibration: the draws' spread s^2 against the truth's squared deviation from their mean.
A probe of the high-noise steps (not DINAR): the same DDIM 200 started at t = 800 or 600 from the
mean training latent noised to that step (SDEdit's start; the grid steps above are skipped), where
the denoising-gap table shows the denoiser's epsilon worse than that constant guess.
Targets: RGB vs the exact ground-truth texture (RGB clamped to [-1, 1] as `texture_metrics`), RGB
vs the merged multi-view texture (texels some view saw) and the 16 generated channels vs the merged
texture, each on the texels unseen in the input; RGB in [0, 1] units, generated channels raw.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from dinar_complete_eval import G, baselines, cached, inpaint_full, unseen  # scripts/, beside this file
from dinar_complete_results import latents

from zoo.metrics.distribution import random_directions, sliced_wasserstein
from zoo.metrics.posterior_samples import calibration, fit_inverse_k, k_mean_errors

log = logging.getLogger("dinar_complete")
TARGETS = {"rgb_truth": "RGB vs truth", "rgb_merged": "RGB vs merged", "gen_merged": "generated vs merged"}
PROJECTIONS = 128  # sliced-W1 directions (seeded: the same for every method and input)
STARTS = (800, 600)  # the probe: DDIM 200 from the noised mean training latent at these timesteps
PROBE_DRAWS = 4


def target_views(pred: torch.Tensor, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(prediction part, reference, mask) per target for 19-channel predictions (..., 19, H, W)."""
    m = unseen(batch)
    rgb = pred[..., G:G + 3, :, :]
    return {"rgb_truth": ((rgb.clamp(-1, 1) + 1) / 2, (batch["albedo"].clamp(-1, 1) + 1) / 2, m),
            "rgb_merged": ((rgb + 1) / 2, (batch["texture"][:, G:G + 3] + 1) / 2, m * batch["texture_mask"]),
            "gen_merged": (pred[..., :G, :, :], batch["texture"][:, :G], m)}


def paired(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean and standard error over inputs of a - b (per-input values)."""
    d = (a - b).double()
    d = d[~torch.isnan(d)]
    return {"mean": float(d.mean()), "se": float(d.std() / len(d) ** 0.5) if len(d) > 1 else float("nan")}


def ks_up_to(count: int) -> list[int]:
    return [2 ** i for i in range(int(np.log2(count)) + 1)]


def sample_stats(samples: torch.Tensor, refs: dict[str, torch.Tensor], batch: dict) -> dict:
    """Per target: errors of K-sample means, the A + B / K fit of the MSE, calibration, and the paired
    differences of the largest K's mean and of one draw against each reference method."""
    ks = ks_up_to(len(samples))
    out = {}
    for key in TARGETS:
        draws = torch.stack([target_views(s, batch)[key][0] for s in samples])
        _, ref, mask = target_views(samples[0], batch)[key]
        errors = k_mean_errors(draws, ref, mask, ks)
        cal = calibration(draws, ref, mask)
        mse = [float(errors[k]["mse"].nanmean()) for k in ks]
        a, b = fit_inverse_k(ks, mse)
        methods = {}
        for name, pred in refs.items():
            p, _, _ = target_views(pred, batch)[key]
            diff = p - ref
            count = mask.expand_as(diff).sum((1, 2, 3))
            l1 = (diff.abs() * mask).sum((1, 2, 3)) / count
            sq = (diff ** 2 * mask).sum((1, 2, 3)) / count
            methods[name] = {"l1": float(l1.nanmean()), "mse": float(sq.nanmean()), "l1_items": l1.tolist(),
                             "mse_items": sq.tolist(), **{f"{k}-mean minus it, {m}": paired(errors[k][m], v)
                                                          for k in (1, ks[-1]) for m, v in (("l1", l1), ("mse", sq))}}
        out[key] = {"ks": ks, "k_mean": {str(k): {m: float(v.nanmean()) for m, v in errors[k].items()} | {
                        f"{m}_items": v.tolist() for m, v in errors[k].items()} for k in ks},
                    "fit": {"A": a, "B": b}, "variance": float(cal["variance"].nanmean()),
                    "calibration": {m: float(v.nanmean()) for m, v in cal.items()} | {
                        "ratio_of_means": float(cal["deviation"].nanmean() / cal["variance"].nanmean()),
                        "ratio_items": cal["ratio"].tolist()},
                    "methods": methods}
    return out


def colour_distribution(preds: dict[str, torch.Tensor], batch: dict) -> dict:
    """Per method (a prediction (B, 19, H, W) or draws (K, B, 19, H, W), scored per draw and
    averaged): on each input's unseen RGB texels ([0, 1], clamped), the colour standard deviation
    (mean over R, G, B of the std over texels) and the sliced W1 (`PROJECTIONS` directions) to the
    truth's colours on the same texels and to the merged texture's on the texels some view saw.
    Reference rows: the truth itself and the merged texture (its W1 to the truth on its texels)."""
    directions = random_directions(PROJECTIONS, 3, torch.Generator().manual_seed(0), torch.float64)
    m_truth, m_merged = unseen(batch) > 0.5, (unseen(batch) * batch["texture_mask"]) > 0.5
    truth = (batch["albedo"].clamp(-1, 1) + 1) / 2
    merged = (batch["texture"][:, G:G + 3].clamp(-1, 1) + 1) / 2

    def colours(tex: torch.Tensor, b: int, mask: torch.Tensor) -> torch.Tensor:
        return tex[b].permute(1, 2, 0)[mask[b, 0]].double()  # (N, 3)

    def score(rgb: torch.Tensor) -> dict[str, list[float]]:
        out = {"std": [], "sw_truth": [], "std_merged_texels": [], "sw_merged": []}
        for b in range(len(rgb)):
            for mask, ref, name in ((m_truth, truth, "truth"), (m_merged, merged, "merged")):
                x = colours(rgb, b, mask)
                out["std" if name == "truth" else "std_merged_texels"].append(float(x.std(0).mean()))
                out[f"sw_{name}"].append(float(sliced_wasserstein(x, colours(ref, b, mask), directions=directions)))
        return out

    rows = {"truth (exact texture)": score(truth), "merged texture (texels some view saw)": score(merged)}
    for name, pred in preds.items():
        draws = pred if pred.ndim == 5 else pred[None]
        scores = [score((d[:, G:G + 3].clamp(-1, 1) + 1) / 2) for d in draws]
        rows[name] = {k: np.mean([s[k] for s in scores], 0).tolist() for k in scores[0]}
    truth_std = np.array(rows["truth (exact texture)"]["std"])
    merged_std = np.array(rows["merged texture (texels some view saw)"]["std_merged_texels"])
    return {name: {k: float(np.mean(v)) for k, v in r.items()} | {
                "std_ratio_truth": float(np.mean(np.array(r["std"]) / truth_std)),
                "std_ratio_merged": float(np.mean(np.array(r["std_merged_texels"]) / merged_std)), "items": r}
            for name, r in rows.items()}


@torch.no_grad()
def posterior_study(args, system, unet, batch: dict, texture21: torch.Tensor) -> dict:
    """The study on the evaluated inputs (`texture21`: their single-view 21-channel textures, occlusion
    detector on); DDIM 200 draws seeded 0..--samples-1, cached as the Table 2 rows' ddim200_occ_s<seed>."""
    draws, walls = [], []
    for seed in range(args.samples):
        out = cached(args, f"ddim200_occ_s{seed}", lambda: {
            "texture": inpaint_full(system, texture21, "ddim", 200, seed, batch["atlas"])})
        draws.append(out["texture"][:, :19])
        walls.append(out["cpu"])
    samples = torch.stack(draws)
    refs = {name: fn() for name, (_, fn) in baselines(system, unet, batch).items()}
    ks = ks_up_to(len(samples))
    mean_latent = latents(args, system, "train")["z0"].mean(0, keepdim=True)
    probes = {}
    for start in STARTS:
        probes[start] = torch.stack([cached(args, f"ddim200_from_mean_t{start}_s{seed}", lambda: {
            "texture": inpaint_full(system, texture21, "ddim", 200, seed, batch["atlas"], mean_latent, start)})["texture"][:, :19]
            for seed in range(PROBE_DRAWS)])
    study = {"samples": len(samples), "inputs": len(texture21), "cpu_per_draw_per_avatar": float(np.mean(walls)) / len(texture21),
             "targets": sample_stats(samples, refs, batch),
             "probes": {str(start): sample_stats(draws, refs, batch) for start, draws in probes.items()},
             "distribution": colour_distribution({
                 **refs, "diffusion ddim 200, one draw": samples, f"diffusion ddim 200, mean of {ks[-1]} draws": samples[:ks[-1]].mean(0),
                 **{f"probe: ddim 200 from the mean latent at t = {start}, one draw": d for start, d in probes.items()}}, batch)}
    for key, row in study["targets"].items():
        log.info("posterior %s: K-mean MSE %s fit %s variance %.5f calibration %s", key,
                 {k: round(v["mse"], 5) for k, v in row["k_mean"].items()}, row["fit"], row["variance"],
                 {k: v for k, v in row["calibration"].items() if not k.endswith("items")})
    return study
