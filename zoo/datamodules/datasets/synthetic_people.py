"""Synthetic multi-view people rendered from a parametric body with exact UV textures.

Generation (once, cached on disk): each identity gets a body shape, a procedural texture
(`procedural.paint_texture`) and `views_per_identity` views, each with its own pose (standing
to walking) and camera (yaw 0-360, small pitch, distance jitter) over a procedural background.
A view stores what the real datasets give plus what they cannot: image, person mask, 2D part
labels, the UV render (exact per-pixel UV), camera-space vertices and K. By default the texture
*is* the ground truth of every pixel: image = grid_sample(texture, uv) over the background.

Avatar options (`shading`, `clothing_offset`; off by default) add what a per-texel RGB texture
cannot explain and a neural renderer can learn: Lambertian shading from a light fixed in the
world per identity (so it changes with the pose, not with the camera alone), and clothes standing
off the body surface (the person's silhouette and pixels come from a displaced "clothed" mesh,
while `uv`, `vertices` and `parts` stay those of the body, as a body fit would give them). With
them on, `masks` is the clothed silhouette and the image is no longer grid_sample(texture, uv).

Layout of a cache folder (arrays are memory-mapped .npy, one row per view or identity):
    meta.json                         generation settings + split sizes
    <split>/images.npy      (N, H, W, 3) uint8
    <split>/masks.npy       (N, H, W)    uint8 (0/1)
    <split>/parts.npy       (N, H, W)    uint8 coarse parts 0..7
    <split>/uv.npy          (N, H, W, 2) float16 grid in [-1, 1] (-2 on background)
    <split>/K.npy           (N, 3, 3)    float32
    <split>/vertices.npy    (N, V, 3)    float32 camera space (only with store_vertices)
    <split>/view_person.npy (N,)         int64 index into the split's identities
    <split>/textures.npy    (P, T, T, 3) uint8 ground-truth textures
    <split>/person_ids.npy  (P,)         int64 global identity ids
    texture_mask.npy, face_hands_mask.npy, uv_position_code.npy   UV maps of the body
    face_mask_uv.npy, limb_colours_uv.npy, mesh_faces.npy, mesh_corner_uvs.npy   (newer caches, or
        written by SyntheticAvatarDataModule: see `avatar_uv_maps`)
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from zoo.datamodules.datasets.procedural import background, paint_texture
from zoo.datamodules.resumable import random_choice, split_index
from zoo.render import (
    composite,
    dilate_texture,
    fill_texture_gaps,
    look_at_body,
    rasterize,
    render_labels,
    render_uv,
    sample_texture,
    scatter_to_uv,
    to_camera,
)
from zoo.render.body_maps import body_uv_maps
from zoo.render.occlusion import limb_colour_texture, smooth_iterations_for
from zoo.render.shading import render_normals, vertex_normals
from zoo.utils.files import build_once

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: renders sample a seam-padded texture
SPLITS = ("train", "val", "test")
BACKGROUND_SEED = 7_000_000_007  # item backgrounds: far from the generation seeds (seed * 1_000_003 + pid)


@dataclass(frozen=True)
class GenerationSettings:
    """What a synthetic people dataset is made of (its hash names the cache folder).

    Args:
        num_identities: people in all splits together.
        views_per_identity: rendered views of each person.
        image_size: (H, W) of the views; (128, 64) is a Market-1501-like pedestrian crop,
            (256, 256) / (512, 512) square avatar crops.
        texture_size: side of the square ground-truth UV texture.
        fill: fraction of the image height the person's posed height occupies.
        max_stride_deg: walking hip-swing amplitude is uniform in [0, max] (0 = standing).
        max_pitch_deg: camera pitch is uniform in [-max/2, max].
        distance: mean camera distance in metres (jittered by +-15%).
        split_fractions: (train, val, test) fractions of the identities (each split >= 1).
        store_vertices: also store camera-space vertices of each view (large).
        seed: the whole dataset is a function of this seed.
        shading: strength in [0, 1] of Lambertian shading from a light fixed in the world per
            identity (0 = flat albedo, the original data).
        clothing_offset: largest distance in metres (e.g. 0.02) that clothes stand off the body
            surface along its normals (0 = skin-tight, the original data).
    """

    num_identities: int = 64
    views_per_identity: int = 8
    image_size: tuple[int, int] = (128, 64)
    texture_size: int = 128
    fill: float = 0.85
    max_stride_deg: float = 30.0
    max_pitch_deg: float = 12.0
    distance: float = 6.0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    store_vertices: bool = True
    seed: int = 0
    shading: float = 0.0
    clothing_offset: float = 0.0

    def __post_init__(self):
        if self.num_identities < 3:
            raise ValueError(f"num_identities must be >= 3 (one per split), got {self.num_identities}")
        if self.views_per_identity < 2:
            raise ValueError(f"views_per_identity must be >= 2 (pairs of views), got {self.views_per_identity}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"image_size must be (H, W) >= 8, got {self.image_size}")
        if self.texture_size < 8:
            raise ValueError(f"texture_size must be >= 8, got {self.texture_size}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError(f"split_fractions must be 3 numbers summing to 1, got {self.split_fractions}")
        if not 0.0 <= self.shading <= 1.0:
            raise ValueError(f"shading must be in [0, 1], got {self.shading}")
        if not 0.0 <= self.clothing_offset <= 0.2:
            raise ValueError(f"clothing_offset must be in [0, 0.2] metres, got {self.clothing_offset}")

    @property
    def avatar_effects(self) -> bool:
        return self.shading > 0 or self.clothing_offset > 0

    def key(self, body_name: str) -> str:
        fields = asdict(self)
        for name, default in _LATER_FIELDS.items():  # absent at their defaults: older caches keep their names
            if fields[name] == default:
                del fields[name]
        payload = json.dumps({**fields, "body": body_name, "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def split_identities(self) -> dict[str, range]:
        n = self.num_identities
        n_val = max(1, round(n * self.split_fractions[1]))
        n_test = max(1, round(n * self.split_fractions[2]))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise ValueError(f"{n} identities leave no training identity with fractions {self.split_fractions}")
        return {"train": range(0, n_train), "val": range(n_train, n_train + n_val), "test": range(n_train + n_val, n)}


_LATER_FIELDS = {"shading": 0.0, "clothing_offset": 0.0}


def _outward(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) +1 / -1: the sign that turns `vertex_normals` of the mesh outwards (its winding)."""
    tri = (vertices - vertices.mean(1, keepdim=True))[:, faces]
    volume = (torch.linalg.cross(tri[:, :, 0], tri[:, :, 1], dim=-1) * tri[:, :, 2]).sum(dim=(1, 2))
    return torch.where(volume < 0, -1.0, 1.0)[:, None, None]


def _avatar_identity(body, settings: GenerationSettings, pid: int) -> dict[str, torch.Tensor]:
    """One identity's world light and per-vertex clothing offsets, from a generator of its own
    (so the draws of the original data are unchanged)."""
    g = torch.Generator().manual_seed(settings.seed * 1_000_003 + pid + 500_000_000)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=g).item()  # noqa: E731
    light = torch.tensor([u(-1.0, 1.0), u(0.3, 1.2), u(-0.4, 1.0)])
    light = light / light.norm()
    rest = body.template_vertices.float()
    faces = body.faces
    parts = torch.zeros(rest.shape[0], dtype=torch.long).scatter_reduce_(
        0, faces.reshape(-1), body.face_parts.repeat_interleave(3), "amax", include_self=False)
    y = rest[:, 1]
    height = (y - y.min()) / (y.max() - y.min())
    covered = (parts == 2) & (height < u(0.78, 0.82))  # top, to the neckline
    covered |= parts == 5  # thighs
    if torch.rand((), generator=g) < 0.5:
        covered |= parts == 3  # sleeves
    if torch.rand((), generator=g) < 0.6:
        covered |= (parts == 6) & (height > 0.06)  # trousers
    theta = torch.atan2(rest[:, 0], rest[:, 2])
    folds = torch.sin(2 * torch.pi * u(6.0, 14.0) * height + u(0.0, 6.3)) * torch.cos(u(1.0, 4.0) * theta)
    looseness = u(0.4, 1.0)
    offsets = settings.clothing_offset * looseness * (0.7 + 0.3 * folds) * covered
    return {"light": light, "offsets": offsets, "ambient": torch.tensor(u(0.3, 0.55))}


def _pose_views(body, betas, n: int, g: torch.Generator, settings: GenerationSettings) -> torch.Tensor:
    """(n, V, 3) body-frame vertices of one identity in n random poses (one batched forward)."""
    u = lambda: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    stride = settings.max_stride_deg * u()
    pose = body.pose_from_controls(
        n, walk_phase_deg=360 * u(), stride_deg=stride, arm_swing_deg=stride * (0.6 + 0.6 * u()),
        arm_abduction_deg=8 + 14 * u(), torso_twist_deg=8 * (u() - 0.5), head_turn_deg=30 * (u() - 0.5))
    with torch.no_grad():
        return body(betas=betas.expand(n, -1), pose=pose).vertices


def _render_view(body, verts, texture, g, settings: GenerationSettings, avatar: dict | None = None):
    """Camera and render of one posed body (1, V, 3); returns numpy arrays. With `avatar`
    (`_avatar_identity`), the person is drawn from the clothed mesh under the identity's light."""
    H, W = settings.image_size
    yaw = 360 * torch.rand(1, generator=g)
    pitch = settings.max_pitch_deg * (1.5 * torch.rand(1, generator=g) - 0.5)
    distance = settings.distance * (0.85 + 0.3 * torch.rand(1, generator=g))
    y = verts[0, :, 1]
    centre = torch.tensor([[0.0, float(y.max() + y.min()) / 2, 0.0]])
    R, t = look_at_body(yaw, pitch, distance, target=centre)
    cam = to_camera(verts, R, t)
    focal = settings.fill * H * float(distance) / float(y.max() - y.min())
    K = torch.tensor([[[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1.0]]])
    frags = rasterize(cam, body.faces, K, (H, W))
    uv, mask = render_uv(frags, body.corner_uvs)
    person_mask = mask
    if avatar is None:
        person = sample_texture(texture[None], uv, mask)
    else:
        outward = _outward(verts, body.faces)
        clothed = verts + avatar["offsets"][None, :, None] * vertex_normals(verts, body.faces) * outward
        clothed_cam = to_camera(clothed, R, t)
        clothed_frags = rasterize(clothed_cam, body.faces, K, (H, W))
        clothed_uv, person_mask = render_uv(clothed_frags, body.corner_uvs)
        person = sample_texture(texture[None], clothed_uv, person_mask)
        if settings.shading > 0:
            normals = render_normals(clothed_frags, clothed_cam, body.faces) * outward[..., None]
            light = (R[0] @ avatar["light"])[None, :, None, None]
            ambient = avatar["ambient"]
            lambert = ambient + (1 - ambient) * (normals * light).sum(1, keepdim=True).clamp(min=0)
            person = person * (1 - settings.shading + settings.shading * lambert)
    image = composite(person, person_mask, background(g, (H, W))[None])
    parts = render_labels(frags, body.face_parts)
    return {
        "images": (image[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy(),
        "masks": person_mask[0, 0].byte().numpy(),
        "parts": parts[0].byte().numpy(),
        "uv": uv[0].half().numpy(),
        "K": K[0].numpy(),
        "vertices": cam[0].float().numpy(),
    }


def is_generated(folder: Path) -> bool:
    """True when `folder` holds a finished dataset (meta.json is the last file written)."""
    return (Path(folder) / "meta.json").is_file()


def generate(body, settings: GenerationSettings, folder: Path, progress: bool = True) -> Path:
    """Render the dataset into `folder` unless it already holds it; safe with concurrent callers.

    `body` is a `zoo.body.BodyModel` or a function returning one (built only if generation is
    needed). The folder is written by `zoo.utils.files.build_once`: one process generates under a
    file lock into its own partial folder, renamed into place when complete; the others wait and
    reuse it; leftovers of a killed generation are removed first.

    Runs on one torch thread: generation is many small tensor ops, where thread hand-offs cost
    more than they give (and, on a busy machine, 20x more); the caller's setting is restored.
    """
    def build(tmp: Path) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _generate(body() if callable(body) and not isinstance(body, torch.nn.Module) else body,
                      settings, tmp, progress)
        finally:
            torch.set_num_threads(threads)

    return build_once(folder, build, is_generated, what="synthetic people dataset",
                      how="Set $ZOO_HOME or the datamodule's data_dir (YAML: data.init_args.data_dir) to a "
                          "writable folder.")


def _generate(body, settings: GenerationSettings, tmp: Path, progress: bool) -> None:
    """Write the whole dataset into the (empty) folder `tmp`; meta.json last."""
    maps = body_uv_maps(body, settings.texture_size)
    start, n_views = time.perf_counter(), 0
    bar = tqdm(total=settings.num_identities * settings.views_per_identity, desc="synthetic people",
               unit="view", disable=not progress)
    sizes = {}
    for split, ids in settings.split_identities().items():
        arrays: dict[str, list] = {k: [] for k in ("images", "masks", "parts", "uv", "K", "vertices", "view_person")}
        textures, descriptions = [], []
        for local, pid in enumerate(ids):
            g = torch.Generator().manual_seed(settings.seed * 1_000_003 + pid)
            texture, desc = paint_texture(maps, g)
            padded = dilate_texture(texture, maps["mask"])  # no dark seams in the renders
            sliders = {name: 0.5 + 0.35 * (torch.rand((), generator=g).item() - 0.5) * 2
                       for name in getattr(body, "phenotype_labels", [])}
            betas = body.betas_from_phenotype(**sliders) if sliders else torch.zeros(1, body.num_betas)
            textures.append((texture.permute(1, 2, 0) * 255).round().byte().numpy())
            descriptions.append(desc)
            posed = _pose_views(body, betas, settings.views_per_identity, g, settings)
            avatar = _avatar_identity(body, settings, pid) if settings.avatar_effects else None
            for v in range(settings.views_per_identity):
                view = _render_view(body, posed[v:v + 1], padded, g, settings, avatar)
                for k, v in view.items():
                    arrays[k].append(v)
                arrays["view_person"].append(local)
                bar.update(1)
                n_views += 1
        out = tmp / split
        out.mkdir()
        for k, v in arrays.items():
            if k == "vertices" and not settings.store_vertices:
                continue
            np.save(out / f"{k}.npy", np.stack(v))
        np.save(out / "textures.npy", np.stack(textures))
        np.save(out / "person_ids.npy", np.asarray(list(ids), dtype=np.int64))
        (out / "identities.json").write_text(json.dumps(descriptions, indent=1))
        sizes[split] = {"identities": len(ids), "views": len(arrays["images"])}
    bar.close()
    elapsed = time.perf_counter() - start
    meta = {"settings": asdict(settings), "splits": sizes, "format": FORMAT_VERSION,
            "generation_seconds": elapsed, "views_per_second": n_views / max(elapsed, 1e-9)}
    np.save(tmp / "texture_mask.npy", maps["mask"][0].numpy().astype(np.uint8))
    np.save(tmp / "face_hands_mask.npy", maps["face_hands"].numpy().astype(np.uint8))
    np.save(tmp / "uv_position_code.npy", maps["position_code"].numpy().astype(np.float32))
    for name, value in avatar_uv_maps(body, settings.texture_size, settings.image_size[0]).items():
        np.save(tmp / f"{name}.npy", value)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # last: marks the folder complete
    log.info("generated %d views in %.1f s (%.1f views/s)", n_views, elapsed, n_views / max(elapsed, 1e-9))


def avatar_uv_maps(body, size: int, image_height: int) -> dict[str, np.ndarray]:
    """UV maps the avatar data needs: `face_mask_uv` (T, T) uint8, the face region (DINAR counts
    it again in the losses), `limb_colours_uv` (3, T, T) float32, the occlusion detector's
    limb-colour texture (`zoo.render.occlusion.limb_colour_texture`, blended for views
    `image_height` tall), and the mesh's `mesh_faces` (F, 3) and `mesh_corner_uvs` (F, 3, 2)
    (per-texel view cosines for merging need them)."""
    face = body.uv_region_mask("face", size)
    colours = limb_colour_texture(body.template_vertices, body.faces, body.face_parts, body.corner_uvs, size,
                                  smooth_iterations_for(image_height))
    return {"face_mask_uv": face.numpy().astype(np.uint8), "limb_colours_uv": colours.numpy().astype(np.float32),
            "mesh_faces": body.faces.numpy().astype(np.int64), "mesh_corner_uvs": body.corner_uvs.numpy().astype(np.float32)}


def _to_image(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 127.5 - 1.0


class SyntheticPeople(Dataset):
    """One split of a generated dataset; items are pairs of views of one person.

    Item keys (first view, then the second view with the `novel_` prefix):
        image (3, H, W) in [-1, 1]; mask (1, H, W); parts (H, W) int64; uv (H, W, 2);
        K (3, 3); vertices (V, 3) when stored; view_id, person_id (global identity) int64;
        texture (3, T, T) in [-1, 1] ground truth; texture_mask (1, T, T);
        partial (3, T, T) the first view scattered into UV; known_mask (1, T, T) texels a pixel
        landed on; gap_mask (1, T, T) texels filled by the gap fill (zeros without `fill_gaps`);
        background (3, H, W) in [-1, 1], a procedural background that is NOT the image's own (the
        backdrop Texformer's protocol composites renders over for the ReID / style losses and the
        texformer-variant metrics; the pair shares it): a fresh random one per call with
        pairs="random", else a fixed one per item index.

    Args:
        folder: a cache folder written by `generate`.
        split: "train", "val" or "test".
        pairs: "random" (a new partner view every epoch), "fixed" (deterministic partner:
            the next view of the same person) or "none" (no novel_ keys).
        partial_erode: odd erosion of the mask before scattering the partial texture (0: none).
        fill_gaps: fill the one-texel gaps of the partial texture inside the atlas (DINAR's B_fill,
            `zoo.render.fill_texture_gaps`) and mark them in gap_mask.
    """

    def __init__(self, folder: str | Path, split: str = "train", pairs: str = "random", partial_erode: int = 0,
                 fill_gaps: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if pairs not in ("random", "fixed", "none"):
            raise ValueError(f"pairs must be 'random', 'fixed' or 'none', got {pairs!r}")
        root = Path(folder)
        if not (root / "meta.json").is_file():
            raise FileNotFoundError(f"{root} is not a generated synthetic people folder (no meta.json)")
        self.folder, self.split, self.pairs, self.partial_erode = root / split, split, pairs, partial_erode
        self.random = pairs == "random"
        self.fill_gaps = fill_gaps
        self.meta = json.loads((root / "meta.json").read_text())
        load = lambda name: np.load(self.folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
        self.images, self.masks, self.parts, self.uv, self.K = (load(k) for k in ("images", "masks", "parts", "uv", "K"))
        self.vertices = load("vertices") if (self.folder / "vertices.npy").is_file() else None
        self.view_person = np.load(self.folder / "view_person.npy")
        self.textures = load("textures")
        self.person_ids = np.load(self.folder / "person_ids.npy")
        self.texture_mask = torch.from_numpy(np.load(root / "texture_mask.npy")).float()[None]
        self.views_of = [np.flatnonzero(self.view_person == p) for p in range(len(self.person_ids))]

    def __len__(self) -> int:
        return len(self.view_person)

    @property
    def num_identities(self) -> int:
        return len(self.person_ids)

    def view(self, index: int) -> dict[str, torch.Tensor]:
        item = {
            "image": _to_image(self.images[index]),
            "mask": torch.from_numpy(np.array(self.masks[index])).float()[None],
            "parts": torch.from_numpy(np.array(self.parts[index])).long(),
            "uv": torch.from_numpy(np.array(self.uv[index])).float(),
            "K": torch.from_numpy(np.array(self.K[index])),
            "view_id": torch.tensor(index, dtype=torch.int64),
        }
        if self.vertices is not None:
            item["vertices"] = torch.from_numpy(np.array(self.vertices[index]))
        return item

    def background(self, index: int, size: tuple[int, int], draw: int | None = None) -> torch.Tensor:
        """(3, H, W) in [-1, 1]: random when `random` (from the sampler's `draw` when given, so a
        resumed run sees the same backgrounds, else the global torch RNG), else seeded by `index`
        from a stream disjoint from the generation seeds."""
        if self.random:
            seed = draw * 4 + 1 if draw is not None else int(torch.randint(2**62, ()))
        else:
            seed = BACKGROUND_SEED + index
        return background(torch.Generator().manual_seed(seed), size) * 2 - 1

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """One item; `index` may be `(index, draw)` (`zoo.datamodules.resumable.ResumableSampler`):
        with "random" pairs the partner is then `draw`'s choice, so a resumed run picks the same
        partners; a plain index draws the partner from the global torch RNG."""
        index, draw = split_index(index)
        person = int(self.view_person[index])
        item = self.view(index)
        item["person_id"] = torch.tensor(int(self.person_ids[person]), dtype=torch.int64)
        item["person_index"] = torch.tensor(person, dtype=torch.int64)
        item["texture"] = _to_image(self.textures[person])
        item["texture_mask"] = self.texture_mask
        scattered = scatter_to_uv(item["image"][None], item["uv"][None], item["mask"][None],
                                  self.texture_mask.shape[-1], erode=self.partial_erode, fill_gaps=False)
        known = scattered["known_mask"] * self.texture_mask[None]
        partial, gap = scattered["texture"] * known, torch.zeros_like(known)
        if self.fill_gaps:
            filled = fill_texture_gaps(partial, known, self.texture_mask[None])
            partial, gap = filled["texture"], filled["filled_mask"]
        item["known_mask"], item["gap_mask"], item["partial"] = known[0], gap[0], partial[0]
        item["background"] = self.background(index, tuple(item["image"].shape[-2:]), draw)
        if self.pairs != "none":
            others = self.views_of[person]
            others = others[others != index]
            if self.pairs == "random":
                partner = int(others[random_choice(len(others), draw)])
            else:
                partner = int(others[np.searchsorted(others, index) % len(others)])
            item.update({f"novel_{k}": v for k, v in self.view(partner).items()})
        return item
