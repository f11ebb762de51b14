"""No-network references for scripts/dinar_results.py: what the image-sampled RGB channels alone give on
the held-out people, drawn without any renderer, scored by the same metrics as the trained rows.

For every input view s of a test person and every view t (t = s: input view; t != s: novel view):
  copy, body silhouette    the 5 RGB channels of view s looked up at view t's body UV (`sample_texture`);
                           texels no pixel of s landed on take the person's mean sampled colour; drawn
                           inside the body render only (what a renderer that copies perfectly but draws no
                           clothes past the body would give);
  copy, person silhouette  the same colours inside the real person mask of view t (clothes included);
  mean colour, body        the person's mean sampled colour everywhere in view t's body render.
Records have the layout of `dinar_eval.evaluate_model` ("method" = one of `REFERENCES`).
"""
from __future__ import annotations

from pathlib import Path

import torch

REFERENCES = {"copy_body": "copy of the input's RGB, body silhouette",
              "copy_person": "copy of the input's RGB, real person silhouette",
              "mean_body": "person's mean colour, body silhouette"}


def reference_images(views: dict, s: int) -> dict[str, torch.Tensor]:
    """(N, 3, H, W) images over white of each reference built from view s, drawn at all N views."""
    from zoo.render import composite, sample_texture
    from zoo.systems.neural_avatar import uv_body_mask

    channels = views["source_rgb_texture"][s]  # RGB, known-or-filled, gap-fill
    known = channels[3:4] > 0.5
    colour = (channels[:3] * known).sum((1, 2)) / known.sum().clamp(min=1)
    filled = torch.where(known, channels[:3], colour[:, None, None])
    n = views["source_uv"].shape[0]
    uv = views["source_uv"]
    body = uv_body_mask(uv)
    drawn = sample_texture(filled[None].expand(n, -1, -1, -1), uv, body, mode="nearest")
    flat = colour[None, :, None, None].expand_as(drawn)
    return {"copy_body": composite(drawn, body, 1.0), "copy_person": composite(drawn, views["source_mask"], 1.0),
            "mean_body": composite(flat, body, 1.0)}


@torch.no_grad()
def evaluate_references(config: Path, reid) -> dict:
    """Records of every reference over the test people of `config`'s data (see the module docstring)."""
    import dinar_eval as ev

    from zoo.cli import ZooCLI
    from zoo.render import composite

    dm = ZooCLI(args=["--config", str(config), "--trainer.logger=false"], run=False).datamodule
    dm.prepare_data()
    dm.setup("test")
    people, on, _ = ev.test_people(dm)
    records = []
    for person in people:
        views = on.person_views(person)
        n = views["source_image"].shape[0]
        real = composite(views["source_image"], views["source_mask"], 1.0)
        front = ev.front_facing(views, on.face_mask_uv).tolist()
        for s in range(n):
            for name, images in reference_images(views, s).items():
                values = ev.image_metrics(images, real, reid)
                records += [{"method": name, "view": "input" if s == t else "novel", "person": person, "source": s,
                             "target": t, "front": front[s], **{m: v[t] for m, v in values.items()}} for t in range(n)]
    return {"records": records}


REGIONS = {"body": "body render (person on it)", "clothes": "person past the body render (clothes)",
           "background": "background"}


@torch.no_grad()
def error_regions(config: Path, ckpt: Path) -> dict:
    """Where a trained run's input-view error lies: per region of the held-out input views (see `REGIONS`; the
    body render always lies inside the person mask here), its share of the pixels, the mean squared error of the
    render against the real view over white ([-1, 1] units, mean over RGB) and its share of the image MSE; and
    the renderer's mean predicted person mask on the clothes pixels (1 = drawn)."""
    import dinar_eval as ev

    from zoo.render import composite
    from zoo.systems.neural_avatar import uv_body_mask

    system, dm = ev.load_model(config, ckpt)
    people, on, _ = ev.test_people(dm)
    sums = {k: [0.0, 0.0] for k in (*REGIONS, "all", "clothes_mask")}
    for person in people:
        views = on.person_views(person)
        n = views["source_image"].shape[0]
        real = composite(views["source_image"], views["source_mask"], 1.0)
        torch.manual_seed(person)  # as dinar_eval.evaluate_model
        textures = torch.stack([ev._single(system, views, views, s) for s in range(n)])
        uv = views["source_uv"]
        body, person_mask = uv_body_mask(uv), views["source_mask"]
        out = system.network.render(textures, uv, body, system.hparams.background)
        error = (out["rgb"].clamp(-1, 1) - real).pow(2).mean(1, keepdim=True)
        masks = {"body": body * person_mask, "clothes": person_mask * (1 - body), "background": (1 - person_mask) * (1 - body)}
        for name, m in masks.items():
            sums[name][0] += float((error * m).sum())
            sums[name][1] += float(m.sum())
        sums["all"][0] += float(error.sum())
        sums["all"][1] += float(error.numel())
        sums["clothes_mask"][0] += float((out["mask"][:, :1] * masks["clothes"]).sum())
        sums["clothes_mask"][1] += float(masks["clothes"].sum())
    total_error, total_pixels = sums["all"]
    return {"regions": {name: {"pixels": sums[name][1] / total_pixels, "mse": sums[name][0] / max(sums[name][1], 1.0),
                               "share": sums[name][0] / total_error} for name in REGIONS},
            "mse": total_error / total_pixels, "clothes_mask": sums["clothes_mask"][0] / max(sums["clothes_mask"][1], 1.0)}
