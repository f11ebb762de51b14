"""DeepFashion In-shop Clothes with one SMPL fit per image (the RefineTex / HPBTT DeepFashion setting).

RefineTex follows HPBTT's split of the in-shop images (20,185 train / 6,639 test after dropping
images that show only a small part of the body); neither paper publishes the fits, so this layout
is the zoo's, kept close to HPBTT's files and to SMPLMarket's:

    <root>/train_test_list.pkl     {"train_list": [...], "test_list": [...]} (HPBTT's file; keys
                                   "train" / "test" work too; a .json with the same content as well)
    <root>/img/<key>.jpg           the in-shop images, e.g. img/WOMEN/Dresses/id_00000002/02_1_front.jpg
    <root>/smpl/<key>.pkl          the body fit of that image (formats below)
    <root>/parts/<key>.png         2D parser labels 0..7 (the 7 EANet classes of SMPLMarket)
    <root>/smpl_parts/<key>.png    optional: the mesh's SMPL part labels 0..12 (render_parts="png")

A list entry is the image path relative to `root` ("img/WOMEN/...jpg", as in HPBTT's list) or to
`img/`; `<key>` is that path below `img/` without its extension. Identities: a list entry's person is
its folder plus the outfit number before the first "_" of the file name (WOMEN/Dresses/id_00000002/02:
the same clothes item worn in one shoot, HPBTT's identity); a split may instead be a dict
{pid: [entries]} to set identities explicitly.

Body fit formats (one pickle per image):
- [vertices (6890, 3), cam_t (3,)]: SMPLMarket's; camera space is vertices + cam_t.
- {"vertices": (6890, 3), "cam_t": (3,) optional}: the same as a dict.
- {"betas": (<=10,), "global_orient": (3,), "body_pose": (69,), "transl": (3,) optional, "cam_t": (3,)
  optional}: SMPL parameters (axis-angle, camera frame) as `smplx.SMPL` takes them; needs
  `smpl_model_path`. Camera space is the smplx output + transl + cam_t.
Camera: dicts may carry "focal" (f or (fx, fy)) and "centre" / "center" ((cx, cy)) in pixels of the
image as stored (pixel centres at integers), scaled to `image_size`; otherwise the SPIN / Texformer
convention: focal 5000 px per 224 px of the (square) image, principal point at its centre.
"""
from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zoo.body import coarse_from_smpl12
from zoo.datamodules.datasets.smpl_market import ImagePool, PairedViews, read_labels, read_pickle, read_rgb
from zoo.datamodules.datasets.smpl_uv import (
    SMPLTopology,
    load_smpl_topology,
    render_fit,
    require_file,
    scale_intrinsics,
    spin_intrinsics,
    vertices_from_params,
)

DEEPFASHION_HOWTO = ("Get the DeepFashion In-shop Clothes Retrieval images (Liu et al., CVPR 2016; non-commercial "
                     "research licence, access on request from the DeepFashion authors) into <root>/img, HPBTT's split "
                     "(cachedir/deepfashion/data/train_test_list.pkl of https://github.com/zhaofang0627/HPBTT) as "
                     "<root>/train_test_list.pkl, and one SMPL fit + parser label map per image (smpl/, parts/) from "
                     "your own fitter and human parser (see zoo.datamodules.datasets.deepfashion).")
SPLIT_FILES = ("train_test_list.pkl", "train_test_list.json")
_SPLIT_KEYS = {"train": ("train_list", "train"), "test": ("test_list", "test")}


def entry_key(entry: str) -> str:
    """'img/WOMEN/Dresses/id_00000002/02_1_front.jpg' or 'WOMEN/...jpg' -> 'WOMEN/.../02_1_front'."""
    entry = entry.replace("\\", "/").lstrip("/")
    if entry.startswith("img/"):
        entry = entry[4:]
    return os.path.splitext(entry)[0]


def default_identity(key: str) -> str:
    """The clothes item + outfit number: 'WOMEN/Dresses/id_00000002/02_1_front' -> '.../id_00000002/02'."""
    folder, name = os.path.split(key)
    return f"{folder}/{name.split('_')[0]}" if folder else name.split("_")[0]


def read_deepfashion_split(root: str | Path) -> dict[str, dict[Hashable, list[str]]]:
    """{"train": {pid: [keys]}, "test": {...}} from the split file of a DeepFashion root."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"DeepFashion root folder not found: {root}. {DEEPFASHION_HOWTO} "
                                "Point `root` (YAML: init_args.root) at it.")
    found = [root / name for name in SPLIT_FILES if (root / name).is_file()]
    if found:
        path = found[0]
    else:
        path = require_file(root / SPLIT_FILES[0], "DeepFashion split file", DEEPFASHION_HOWTO, "root", inside=True)
    data = json.loads(path.read_text()) if path.suffix == ".json" else read_pickle(path)
    out = {}
    for split, names in _SPLIT_KEYS.items():
        key = next((k for k in names if isinstance(data, Mapping) and k in data), None)
        if key is None:
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{path} needs a '{names[0]}' (or '{names[1]}') entry, found {keys}")
        value = data[key]
        if isinstance(value, Mapping):
            out[split] = {pid: [entry_key(str(e)) for e in entries] for pid, entries in value.items()}
        else:
            groups: dict[Hashable, list[str]] = {}
            for entry in value:
                k = entry_key(str(entry))
                groups.setdefault(default_identity(k), []).append(k)
            out[split] = groups
    return out


def _camera(fit: Mapping, stored_size: tuple[int, int], image_size: tuple[int, int], source: str) -> torch.Tensor:
    """(3, 3) K for `image_size`: the fit's focal / centre (stored-image pixels) scaled, else SPIN's."""
    if "focal" not in fit and not ("centre" in fit or "center" in fit):
        return spin_intrinsics(image_size)
    if "focal" not in fit:
        raise ValueError(f"{source}: a camera 'centre' needs a 'focal' too")
    focal = np.asarray(fit["focal"], dtype=np.float64).reshape(-1)
    if focal.size not in (1, 2):
        raise ValueError(f"{source}: focal must be f or (fx, fy), got {focal.size} values")
    centre = fit.get("centre", fit.get("center"))
    H, W = stored_size
    centre = np.asarray(centre if centre is not None else ((W - 1) / 2, (H - 1) / 2), dtype=np.float64).reshape(-1)
    if centre.size != 2:
        raise ValueError(f"{source}: centre must be (cx, cy), got {centre.size} values")
    fx, fy = (focal[0], focal[0]) if focal.size == 1 else focal
    K = torch.tensor([[fx, 0.0, centre[0]], [0.0, fy, centre[1]], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return scale_intrinsics(K, stored_size, image_size)


class DeepFashionInShop(PairedViews):
    """DeepFashion in-shop images with SMPL fits: the same view keys as `SMPLMarket`.

    View keys: image (3, H, W) in [-1, 1]; parts (H, W) int64 parser labels 0..7; render_parts
    (H, W) int64 0..7 of the mesh; mask (1, H, W); uv (H, W, 2) grid (-2 on background); K (3, 3);
    vertices (V, 3) camera space. Pairs, background and reference_texture: see `PairedViews`.

    Args:
        root: the DeepFashion folder (layout in the module doc).
        split: "train" or "test" of the split file.
        topology: a loaded `SMPLTopology`; None loads one from `smpl_model_path` / `smpl_uv_path`.
        identities: keep only these pids (train / val split).
        image_size: (H, W) everything is resized to; 256x256 is the in-shop images' own size and
            HPBTT's DeepFashion input (the papers do not state RefineTex's).
        render_parts: "mesh" (from the model's face labels; needs `smpl_model_path`) or "png"
            (smpl_parts/<key>.png, SMPL labels 0..12 mapped to the 7 parts).
        items_per, pairs, random, backgrounds, textures: see `PairedViews`.
        index: the parsed split (`read_deepfashion_split`, read once by the DataModule); None
            reads it from `root`.
    """

    def __init__(self, root: str, split: str = "train", topology: SMPLTopology | None = None,
                 smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 identities: Sequence[Hashable] | None = None, image_size: Sequence[int] = (256, 256),
                 render_parts: str = "mesh", items_per: str = "image", pairs: bool = True, random: bool = True,
                 backgrounds: ImagePool | None = None, textures: ImagePool | None = None,
                 index: Mapping[str, Mapping] | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if render_parts not in ("mesh", "png"):
            raise ValueError(f"render_parts must be 'mesh' or 'png', got {render_parts!r}")
        self.root, self.split, self.image_size = Path(root).expanduser(), split, tuple(int(s) for s in image_size)
        groups = dict((index if index is not None else read_deepfashion_split(self.root))[split])
        if identities is not None:
            unknown = [pid for pid in identities if pid not in groups]
            if unknown:
                raise ValueError(f"identities {unknown[:5]} are not in the {split} split of {self.root}")
            groups = {pid: groups[pid] for pid in identities}
        self.topology = topology if topology is not None else load_smpl_topology(smpl_model_path, smpl_uv_path)
        if render_parts == "mesh" and self.topology.face_parts is None:
            raise ValueError("render_parts='mesh' needs face part labels: set `smpl_model_path`, or use "
                             "render_parts='png' with smpl_parts/<key>.png label images")
        self.render_parts = render_parts
        super().__init__(groups, None, items_per=items_per, pairs=pairs, random=random,
                         backgrounds=backgrounds, textures=textures)

    def _file(self, path: Path, what: str) -> Path:
        return require_file(path, what, DEEPFASHION_HOWTO, "root", inside=True)

    def _image_file(self, key: str) -> Path:
        for ext in (".jpg", ".jpeg", ".png", ".JPG"):
            if (self.root / "img" / (key + ext)).is_file():
                return self.root / "img" / (key + ext)
        return self._file(self.root / "img" / (key + ".jpg"), "DeepFashion image")

    def _fit(self, key: str, stored_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        path = self._file(self.root / "smpl" / f"{key}.pkl", "SMPL fit")
        return read_fit(path, self.topology, stored_size, self.image_size)

    def load_view(self, key: str) -> dict[str, torch.Tensor]:
        image_path = self._image_file(key)
        with Image.open(image_path) as img:
            stored_size = (img.height, img.width)
        vertices, K = self._fit(key, stored_size)
        rendered = render_fit(self.topology, vertices, K, self.image_size, str(self.root / "smpl" / f"{key}.pkl"))
        if self.render_parts == "png":
            smpl12 = read_labels(self._file(self.root / "smpl_parts" / f"{key}.png", "SMPL part labels"),
                                 self.image_size, 12)
            render_parts = coarse_from_smpl12(smpl12)
        else:
            render_parts = rendered["mesh_parts"]
        return {
            "image": read_rgb(image_path, self.image_size),
            "parts": read_labels(self._file(self.root / "parts" / f"{key}.png", "parser labels"), self.image_size, 7),
            "render_parts": render_parts,
            "mask": rendered["mask"],
            "uv": rendered["uv"],
            "K": K,
            "vertices": vertices,
        }


__all__ = ["DeepFashionInShop", "default_identity", "entry_key", "read_deepfashion_split"]


def read_fit(path, topology: SMPLTopology, stored_size: tuple[int, int],
             image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space vertices (V, 3) and intrinsics (3, 3) of one body-fit pickle.

    Accepted fits: `[vertices, cam_t]`, `{vertices, cam_t?}` or SMPL parameters
    `{betas, global_orient, body_pose, transl?, cam_t?}` (needs the SMPL model in `topology`);
    optional `focal` / `centre` in pixels of the stored image (`stored_size`), rescaled to
    `image_size`, else the SPIN / Texformer camera.
    """
    path = Path(path)
    fit = read_pickle(path)
    if isinstance(fit, (list, tuple)):
        if len(fit) < 2:
            raise ValueError(f"{path}: a list fit must be [vertices (6890, 3), cam_t (3,)]")
        fit = {"vertices": fit[0], "cam_t": fit[1]}
    if not isinstance(fit, Mapping):
        raise ValueError(f"{path} must pickle [vertices, cam_t] or a dict, got {type(fit).__name__}")
    if "vertices" in fit:
        vertices = torch.as_tensor(np.asarray(fit["vertices"], dtype=np.float32)).reshape(-1, 3)
    elif "betas" in fit or "body_pose" in fit or "global_orient" in fit:
        vertices = vertices_from_params(topology.body, fit, str(path))
    else:
        raise ValueError(f"{path}: a fit needs 'vertices' or SMPL parameters (betas, global_orient, body_pose), "
                         f"found {sorted(fit)}")
    for name in ("cam_t", "camera_translation"):
        if fit.get(name) is not None:
            shift = torch.as_tensor(np.asarray(fit[name], dtype=np.float32)).reshape(-1)
            if shift.numel() != 3:
                raise ValueError(f"{path}: {name} must hold 3 values, got {shift.numel()}")
            vertices = vertices + shift
    return vertices, _camera(fit, stored_size, image_size, str(path))
