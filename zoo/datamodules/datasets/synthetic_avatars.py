"""(source, target) view pairs of one synthetic person, as DINAR's stage 1 trains on them.

Built on a generated synthetic people folder (`synthetic_people.generate`); the avatar options
of its settings (`shading`, `clothing_offset`) make the pairs worth a neural renderer. The RGB
channels of the neural texture are scattered from the source view here, with DINAR's 5x5
erosion, gap fill and (optionally) occlusion detector, so the system only runs networks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.datamodules.datasets.synthetic_people import SyntheticPeople
from zoo.datamodules.resumable import random_choice, split_index
from zoo.render import composite, rasterize_uv_atlas, rgb_texture_channels, sample_texture, texel_view_cosines
from zoo.render.occlusion import dilations_for, occlusion_from_uv

AVATAR_UV_FILES = ("face_mask_uv", "limb_colours_uv", "mesh_faces", "mesh_corner_uvs")


class SyntheticAvatarPairs(Dataset):
    """Pairs of views of one person with different pose and camera (source -> target).

    Item keys (images in [-1, 1], H x W the view size, T the texture size, V vertices):
        source_image (3, H, W): the source person on black (DINAR's encoder input: RGB x mask).
        source_mask (1, H, W): the person's silhouette (clothed when the data has clothes).
        source_uv (H, W, 2): UV render of the body fit (grid in [-1, 1], background -2).
        source_uv_mask (1, H, W): where the body fit covers the image.
        source_rgb_texture (5, T, T): `zoo.render.rgb_texture_channels` of the source view:
            RGB (0 off the sampled texels), known-or-filled mask, gap-fill mask.
        source_occlusion (1, H, W): pixels the occlusion detector kept out of the texture
            (all 0 when it is off).
        source_K (3, 3), source_vertices (V, 3): camera and camera-space body vertices.
        source_texel_cosines (1, T, T): `zoo.render.texel_view_cosines` of the source view, the
            weights' input of multi-view merging (`zoo.render.merge_textures`).
        target_image (3, H, W): the target person over white (DINAR's real_rgb).
        target_mask (1, H, W), target_uv (H, W, 2), target_uv_mask (1, H, W): as for the source.
        target_face_mask (1, H, W): pixels of the body's face region (counted again in the losses).
        target_K (3, 3), target_vertices (V, 3): for crops centred on a projected vertex.
        texture (3, T, T): the person's ground-truth albedo texture; texture_mask (1, T, T): atlas.
        face_mask_uv (1, T, T): the body's UV face region (whether the source view shows the back).
        person_id, person_index, source_view, target_view: int64.
    `*_vertices` and `source_texel_cosines` need the data generated with `store_vertices=True`.
    `person_views(p)` gives every view of person p as one batch of source_* keys (merging).

    Args:
        folder: a generated synthetic people folder (with `face_mask_uv.npy` and
            `limb_colours_uv.npy`, see `synthetic_people.avatar_uv_maps`).
        split: "train", "val" or "test".
        pairs: "random" (a new target view each time) or "fixed" (the next view of the person).
        erode: odd erosion of the source person mask before scattering (DINAR: 5).
        occlusion_detector: keep self-occlusion outlines out of the RGB texture (DINAR 3.5),
            dilated as much as DINAR's at 512 px relative to the body (`dilations_for`).
    """

    def __init__(self, folder: str | Path, split: str = "train", pairs: str = "random", erode: int = 5,
                 occlusion_detector: bool = True) -> None:
        if pairs not in ("random", "fixed"):
            raise ValueError(f"pairs must be 'random' or 'fixed', got {pairs!r}")
        if erode < 0 or (erode and erode % 2 == 0):
            raise ValueError(f"erode must be 0 or odd, got {erode}")
        root = Path(folder)
        missing = [name for name in AVATAR_UV_FILES if not (root / f"{name}.npy").is_file()]
        if missing:
            raise FileNotFoundError(f"{root} lacks {missing}: write them with synthetic_people.avatar_uv_maps "
                                    "(SyntheticAvatarDataModule.prepare_data does)")
        self.views = SyntheticPeople(root, split, pairs="none")
        self.pairs, self.erode, self.occlusion_detector = pairs, erode, occlusion_detector
        self.face_mask_uv = torch.from_numpy(np.load(root / "face_mask_uv.npy")).float()[None, None]
        self.limb_colours = torch.from_numpy(np.load(root / "limb_colours_uv.npy")).float()
        self.settings = json.loads((root / "meta.json").read_text())["settings"]
        self.faces = torch.from_numpy(np.load(root / "mesh_faces.npy"))
        self.corner_uvs = torch.from_numpy(np.load(root / "mesh_corner_uvs.npy"))
        self.atlas = rasterize_uv_atlas(self.corner_uvs, int(self.settings["texture_size"]))

    def __len__(self) -> int:
        return len(self.views)

    def _partner(self, index: int, draw: int | None = None) -> int:
        person = int(self.views.view_person[index])
        others = self.views.views_of[person]
        others = others[others != index]
        if self.pairs == "random":
            return int(others[random_choice(len(others), draw)])
        return int(others[np.searchsorted(others, index) % len(others)])

    def _geometry(self, view: dict, prefix: str) -> dict[str, torch.Tensor]:
        uv = view["uv"]
        out = {f"{prefix}_mask": view["mask"], f"{prefix}_uv": uv,
               f"{prefix}_uv_mask": (uv[..., 0] > -1.5).float()[None], f"{prefix}_K": view["K"]}
        if "vertices" in view:
            out[f"{prefix}_vertices"] = view["vertices"]
        return out

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, draw = split_index(index)  # (index, draw) from the resumable training sampler
        target_index = self._partner(index, draw)
        source, target = self.views[index], self.views.view(target_index)
        item = self._geometry(source, "source")
        item.update(self._geometry(target, "target"))
        item["source_image"] = composite(source["image"], source["mask"], -1.0)
        item["target_image"] = composite(target["image"], target["mask"], 1.0)
        uv, uv_mask = item["source_uv"][None], item["source_uv_mask"][None]
        if self.occlusion_detector:
            occlusion = occlusion_from_uv(self.limb_colours, uv, uv_mask, dilations=dilations_for(uv.shape[1]))
        else:
            occlusion = torch.zeros_like(uv_mask)
        item["source_occlusion"] = occlusion[0]
        texture_size = source["texture"].shape[-1]
        if "vertices" in source:
            item["source_texel_cosines"] = texel_view_cosines(source["vertices"][None], self.faces, self.corner_uvs,
                                                              texture_size, self.atlas)[0]
        item["source_rgb_texture"] = rgb_texture_channels(
            source["image"][None], uv, source["mask"][None], texture_size, erode=self.erode,
            exclude=occlusion, atlas_mask=source["texture_mask"][None])[0]
        face = sample_texture(self.face_mask_uv, item["target_uv"][None], item["target_uv_mask"][None], mode="nearest")
        item["target_face_mask"] = (face[0] > 0.5).float()
        item["face_mask_uv"] = self.face_mask_uv[0]  # the UV face region: front / back of the source view
        item["texture"], item["texture_mask"] = source["texture"], source["texture_mask"]
        item["person_id"], item["person_index"] = source["person_id"], source["person_index"]
        item["source_view"] = torch.tensor(index, dtype=torch.int64)
        item["target_view"] = torch.tensor(target_index, dtype=torch.int64)
        return item

    def person_views(self, person_index: int) -> dict[str, torch.Tensor]:
        """Every view of one person as a batch (N views) of the item's source_* keys, plus
        texture / texture_mask / person_id / source_view: the input of multi-view merging."""
        views = [int(v) for v in self.views.views_of[person_index]]
        if not views:
            raise ValueError(f"person_index {person_index} has no views in the {self.views.split} split")
        items = [self[v] for v in views]
        keys = [k for k in items[0] if k.startswith("source_")] + ["texture", "texture_mask", "person_id"]
        return {k: torch.stack([item[k] for item in items]) for k in keys}
