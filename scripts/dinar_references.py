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
