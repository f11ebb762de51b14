"""Evaluation and figures of scripts/dinar_results.py: trained DINAR stage-1 runs on held-out synthetic people.

`evaluate_model` returns flat records, one per rendered image: {"method", "view" ("input" / "novel"),
"person", "source" (-1 for a merged texture), "target", "front" (the input seen from the front; None
when merged), "psnr", "ms_ssim", "reid_cos"}. Texture methods:
  SOURCE_METHODS  one input view -> one texture, rendered at every view of the person (the input view
                  itself and the novel ones). A stage-2 method (inpainting, fine-tuning) is a new
                  entry: fn(system, views, views_no_occlusion, s) -> (C, T, T) texture;
  MERGE_SETS      textures of several views merged by paper eq. 4, rendered at a view not among them.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

# MS-SSIM at 64 px: 5 scales need sides > 160 px, so 3 scales with the first three of the standard
# weights, renormalised; Gaussian window 11, sigma 1.5, data range 1.
MS_SSIM = {"betas": (0.0448, 0.2856, 0.3001), "kernel_size": 11, "sigma": 1.5}
METHOD_NAMES = {"single": "single view", "no_occlusion": "single view, detector off", "merge2": "merged 2 views",
                "merge_all": "merged all other views"}
# Held-out people evaluated: the first EVAL_PEOPLE test identities (by number), which bounds the CPU time
# of an evaluation (every ordered pair of their views, several texture methods) whatever the split size.
EVAL_PEOPLE = 12


def _single(system, views: dict, views_off: dict, s: int) -> torch.Tensor:
    return system.source_texture({k: v[s:s + 1] for k, v in views.items()})[0]


def _no_occlusion(system, views: dict, views_off: dict, s: int) -> torch.Tensor:
    return system.source_texture({k: v[s:s + 1] for k, v in views_off.items()})[0]


SOURCE_METHODS = {"single": _single, "no_occlusion": _no_occlusion}
MERGE_SETS = {"merge2": lambda t, n: [(t + 1) % n, (t + 2) % n],
              "merge_all": lambda t, n: [v for v in range(n) if v != t]}


def load_model(config: Path, ckpt: Path):
    """(system in eval mode, datamodule set up for test) of one run's checkpoint."""
    from zoo.cli import ZooCLI

    cli = ZooCLI(args=["--config", str(config), "--trainer.logger=false"], run=False)
    system, dm = cli.model, cli.datamodule
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    system.load_state_dict(state["state_dict"], strict=True)
    system.eval()
    dm.prepare_data()
    dm.setup("test")
    return system, dm


def test_people(dm, limit: int = EVAL_PEOPLE) -> tuple[list[int], object, object]:
    """The first `limit` held-out people's ids and the test views with / without the occlusion detector."""
    from zoo.datamodules.datasets.synthetic_avatars import SyntheticAvatarPairs

    on = dm.datasets["test"]
    off = SyntheticAvatarPairs(dm.folder, "test", pairs="fixed", erode=dm.erode, occlusion_detector=False)
    people = sorted({int(p) for p in on.views.view_person})[:limit]
    return people, on, off


def front_facing(views: dict, face_mask_uv: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the face texels' mean view cosine is > 0 (the person faces the camera)."""
    face = face_mask_uv.to(views["source_texel_cosines"].dtype)
    return (views["source_texel_cosines"] * face).sum((1, 2, 3)) / face.sum() > 0


def image_metrics(render: torch.Tensor, real: torch.Tensor, reid) -> dict[str, list[float]]:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    from zoo.metrics.image import reid_cosine_similarity, standard_psnr

    return {"psnr": standard_psnr(render, real).tolist(),
            "ms_ssim": ms_ssim((render + 1) / 2, (real + 1) / 2, data_range=1.0, reduction="none", normalize="relu",
                               **MS_SSIM).flatten().tolist(),
            "reid_cos": reid_cosine_similarity(reid, render, real).tolist()}


def render_at(system, textures: torch.Tensor, views: dict, targets: list[int]) -> torch.Tensor:
    from zoo.systems.neural_avatar import uv_body_mask

    uv = views["source_uv"][targets]
    return system.network.render(textures, uv, uv_body_mask(uv), system.hparams.background)["rgb"].clamp(-1, 1)


def reals(system, views: dict) -> torch.Tensor:
    from zoo.render import composite

    return composite(views["source_image"], views["source_mask"], system.hparams.background)


@torch.no_grad()
def evaluate_model(config: Path, ckpt: Path, reid) -> dict:
    """Every record of one run (see the module docstring) and the share of body pixels the occlusion
    detector keeps out of sampling."""
    from zoo.render.neural_texture import merge_textures

    system, dm = load_model(config, ckpt)
    people, on, off = test_people(dm)
    methods = SOURCE_METHODS if system.network.use_rgb_channels else {"single": _single}
    records, excluded, body = [], 0.0, 0.0
    for person in people:
        views, views_off = on.person_views(person), off.person_views(person)
        n, real = views["source_image"].shape[0], reals(system, views)
        front = front_facing(views, on.face_mask_uv).tolist()
        excluded += float((views["source_occlusion"] * views["source_uv_mask"]).sum())
        body += float(views["source_uv_mask"].sum())
        textures = {}
        for name, method in methods.items():
            torch.manual_seed(person)  # the encoder's noise channel: the same draw for every method
            textures[name] = torch.stack([method(system, views, views_off, s) for s in range(n)])
            for s in range(n):
                render = render_at(system, textures[name][s:s + 1].expand(n, -1, -1, -1), views, list(range(n)))
                values = image_metrics(render, real, reid)
                for t in range(n):
                    records.append({"method": name, "view": "input" if s == t else "novel", "person": person,
                                    "source": s, "target": t, "front": front[s],
                                    **{m: v[t] for m, v in values.items()}})
        cosines = views["source_texel_cosines"]
        for name, sources in MERGE_SETS.items():
            merged = torch.stack([merge_textures(textures["single"][sources(t, n)][:, None],
                                                 cosines[sources(t, n)][:, None])["texture"][0] for t in range(n)])
            values = image_metrics(render_at(system, merged, views, list(range(n))), real, reid)
            records += [{"method": name, "view": "novel", "person": person, "source": -1, "target": t, "front": None,
                         **{m: v[t] for m, v in values.items()}} for t in range(n)]
    return {"records": records, "occlusion_share": excluded / max(body, 1.0)}


@torch.no_grad()
def occlusion_texels(config: Path) -> dict:
    """What the occlusion detector removes, training-free: over the test inputs, the texels sampled
    with the detector off but not with it on ("removed") vs those sampled either way ("kept"), and the
    mean absolute difference of their sampled RGB to the person's ground-truth albedo ([-1, 1] units;
    shading darkens every texel, wrongly sampled ones also take another body part's colour)."""
    from zoo.cli import ZooCLI

    dm = ZooCLI(args=["--config", str(config), "--trainer.logger=false"], run=False).datamodule
    dm.prepare_data()
    dm.setup("test")
    people, on, off = test_people(dm)
    sums = {"removed": [0.0, 0.0], "kept": [0.0, 0.0]}
    for person in people:
        views, views_off = on.person_views(person), off.person_views(person)
        known_on, known_off = views["source_rgb_texture"][:, 3:4] > 0.5, views_off["source_rgb_texture"][:, 3:4] > 0.5
        error = (views_off["source_rgb_texture"][:, :3] - views["texture"]).abs().mean(1, keepdim=True)
        for name, where in (("removed", known_off & ~known_on), ("kept", known_off & known_on)):
            sums[name][0] += float(error[where].sum())
            sums[name][1] += float(where.sum())
    return {name: {"texels": n, "error": total / max(n, 1.0)} for name, (total, n) in sums.items()}


def _select(result: dict, method: str, view: str, front: bool | None = None) -> list[dict]:
    return [r for r in result["records"] if r["method"] == method and r["view"] == view
            and (front is None or r["front"] == front)]


def mean(result: dict, method: str, view: str, metric: str, front: bool | None = None, per_target: bool = False) -> float:
    """Mean of `metric` over the selected records (per_target: first averaged per (person, target))."""
    rows = _select(result, method, view, front)
    if per_target:
        groups = defaultdict(list)
        for r in rows:
            groups[(r["person"], r["target"])].append(r[metric])
        values = [sum(v) / len(v) for v in groups.values()]
    else:
        values = [r[metric] for r in rows]
    return sum(values) / len(values) if values else float("nan")


def count(result: dict, method: str, view: str, group_by: str) -> dict:
    out = defaultdict(int)
    for r in _select(result, method, view):
        out[r[group_by]] += 1
    return dict(out)


def paired(result: dict, method_a: str, method_b: str, metric: str, view: str, pairing: str) -> tuple[float, float]:
    """Mean and standard error of a - b over matched units: pairing "pair" = (person, source, target),
    "target" = (person, target) with each method first averaged over its sources."""
    def keyed(method):
        groups = defaultdict(list)
        for r in _select(result, method, view):
            key = (r["person"], r["target"]) if pairing == "target" else (r["person"], r["source"], r["target"])
            groups[key].append(r[metric])
        return {k: sum(v) / len(v) for k, v in groups.items()}

    a, b = keyed(method_a), keyed(method_b)
    d = torch.tensor([a[k] - b[k] for k in a if k in b], dtype=torch.float64)
    return float(d.mean()), float(d.std() / len(d) ** 0.5)


def moving_average(values: list[float], window: int) -> list[float]:
    return [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
            for i in range(len(values))]


PROBE_COLOURS = {"magenta": (1.0, -1.0, 1.0), "green": (-1.0, 1.0, -1.0), "white": (1.0, 1.0, 1.0), "black": (-1.0, -1.0, -1.0)}


@torch.no_grad()
def colour_probe(config: Path, ckpt: Path, people: int = 3) -> dict[str, list[float]]:
    """Does the input's colour reach the render? Each of the first `people` held-out people's single-view
    texture (its first view) with the image-sampled RGB channels painted one colour everywhere (known
    mask 1, gap-fill mask 0; the generated channels kept), drawn at that view: the mean RGB ([-1, 1]) of
    the render on the body pixels per painted colour, averaged over the people. A renderer that passes
    the sampled colours through draws each colour back; one that ignores them draws one colour for all.
    Empty for a network without image-sampled channels."""
    from zoo.modules.dinar import RGB_CHANNELS

    system, dm = load_model(config, ckpt)
    if not system.network.use_rgb_channels:
        return {}
    persons, on, off = test_people(dm, people)
    drawn = {name: [] for name in PROBE_COLOURS}
    for person in persons:
        views, views_off = on.person_views(person), off.person_views(person)
        torch.manual_seed(person)
        texture = _single(system, views, views_off, 0)[None]
        body = views["source_uv_mask"][0, 0] > 0.5
        first = texture.shape[1] - RGB_CHANNELS  # the image-sampled channels come last: RGB, known, gap-fill
        for name, colour in PROBE_COLOURS.items():
            painted = texture.clone()
            painted[:, first:first + 3] = torch.tensor(colour, dtype=texture.dtype)[None, :, None, None]
            painted[:, first + 3], painted[:, first + 4] = 1.0, 0.0
            render = render_at(system, painted, views, [0])[0]
            drawn[name].append(render[:, body].mean(1))
    return {name: torch.stack(v).mean(0).tolist() for name, v in drawn.items()}


def _upscale(picture: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(H, W, 3) uint8 enlarged by pixel repetition (64 px renders are small on a page)."""
    return picture.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


@torch.no_grad()
def figure(runs: dict[str, tuple[Path, Path]], path: Path) -> Path:
    """Held-out people: 2 inputs seen from the front, 2 from the back, each rendered at a view from the
    other side. Columns: input, real novel view, each row's render, the first row's merged-7 render."""
    from zoo.render.neural_texture import merge_textures
    from zoo.utils.images import grid, save_png, to_uint8

    lines, picks = None, None
    for name, (config, ckpt) in runs.items():
        system, dm = load_model(config, ckpt)
        people, on, off = test_people(dm)
        if picks is None:
            picks = []
            for want_front in (True, True, False, False):
                for person in people:
                    views = on.person_views(person)
                    front = front_facing(views, on.face_mask_uv).tolist()
                    if person in [p for p, _, _ in picks] or want_front not in front:
                        continue
                    s = front.index(want_front)
                    t = front.index(not want_front) if (not want_front) in front else (s + 1) % len(front)
                    picks.append((person, s, t))
                    break
            lines = [[] for _ in picks]
        for i, (person, s, t) in enumerate(picks):
            views = on.person_views(person)
            torch.manual_seed(person)
            textures = torch.stack([_single(system, views, views, v) for v in range(len(views["source_image"]))])
            if not lines[i]:
                lines[i] += [to_uint8(views["source_image"][s]), to_uint8(reals(system, views)[t])]
            lines[i].append(to_uint8(render_at(system, textures[s:s + 1], views, [t])[0]))
            if name == next(iter(runs)):
                others = [v for v in range(len(textures)) if v != t]
                merged = merge_textures(textures[others][:, None], views["source_texel_cosines"][others][:, None])
                lines[i].append(to_uint8(render_at(system, merged["texture"], views, [t])[0]))
    for line in lines:  # the merged render goes last
        line.append(line.pop(3))
    return save_png(grid([[_upscale(p) for p in line] for line in lines]), path)


@torch.no_grad()
def animation_strip(config: Path, ckpt: Path, path: Path, people: int = 3) -> Path:
    """Avatars of held-out people in new poses: turntable (4 yaws) + walk (4 phases), through
    zoo.callbacks.avatar_writer.render_avatar."""
    from zoo.body import AnnyBody
    from zoo.body.animation import turntable, walk_cycle
    from zoo.callbacks.avatar_writer import render_avatar
    from zoo.utils.images import grid, save_png, to_uint8

    system, dm = load_model(config, ckpt)
    persons, on, _ = test_people(dm)
    body, rows = AnnyBody(), []
    standing, yaws = turntable(body, 4)
    walking = walk_cycle(body, 4)
    size, bg = int(dm.settings.image_size[0]), system.hparams.background
    for person in persons[:people]:
        views = on.person_views(person)
        front = front_facing(views, on.face_mask_uv).tolist()
        s = front.index(True) if True in front else 0
        torch.manual_seed(person)
        texture = _single(system, views, views, s)
        frames = torch.cat([render_avatar(system.network, texture, standing, body.faces, body.corner_uvs, yaws, size,
                                          background=bg),
                            render_avatar(system.network, texture, walking, body.faces, body.corner_uvs, [30.0] * 4,
                                          size, background=bg)])
        rows.append([to_uint8(views["source_image"][s])] + [to_uint8(f) for f in frames])
    return save_png(grid([[_upscale(p) for p in row] for row in rows]), path)


def draw_curves(series: dict, keys: list[str], path: Path) -> Path:
    """One panel per logged key; a line per (row, seed) (moving average of 10 logged values)."""
    from PIL import Image, ImageDraw

    colours = {"both": (200, 30, 30), "neural": (30, 130, 30), "rgb": (30, 30, 200)}
    w, h, pad = 420, 260, 36
    img = Image.new("RGB", (w * 3, h * ((len(keys) + 2) // 3)), "white")
    draw = ImageDraw.Draw(img)
    for k, key in enumerate(keys):
        ox, oy = (k % 3) * w, (k // 3) * h
        lines = {(r, s): moving_average([v for _, v in pts], 10) for (r, s, kk), pts in series.items() if kk == key}
        steps = {(r, s): [st for st, _ in pts] for (r, s, kk), pts in series.items() if kk == key}
        if not lines:
            continue
        ys = sorted(v for vals in lines.values() for v in vals[len(vals) // 20:])  # skip the first 5% (scale)
        y0, y1 = ys[0], ys[-1]
        x1 = max(max(st) for st in steps.values())
        for (row, seed), vals in sorted(lines.items()):
            c = colours[row] if seed == min(s for _, s in lines) else tuple(int(0.5 * v + 127) for v in colours[row])
            xy = [(ox + pad + st / max(x1, 1) * (w - 2 * pad),
                   oy + h - pad - (min(max(v, y0), y1) - y0) / max(y1 - y0, 1e-9) * (h - 2 * pad))
                  for st, v in zip(steps[(row, seed)], vals)]
            draw.line(xy, fill=c, width=2)
        draw.text((ox + pad, oy + 6), f"{key}  y {y0:.3g}..{y1:.3g}, x: logged step (batch) 0..{x1}", fill="black")
        draw.rectangle([ox + pad, oy + pad - 12, ox + w - pad, oy + h - pad], outline=(180, 180, 180))
    draw.text((w * 2 + pad, h + 2 * pad), "both: red, neural: green, rgb: blue\nfirst seed dark, second light",
              fill="black")
    img.save(path)
    return path
