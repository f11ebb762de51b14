"""Market-1501 with Texformer's SMPL fits ("SMPLMarket"), and the paired-view base shared with DeepFashion.

Layout of `root` (Texformer's SMPLMarket data release plus the Market-1501 images it indexes):
    train_test_img_paths_pid.pkl   {"out_dict_train": {pid: [rel path, ...]}, "out_dict_test": {...}}
    eval_list.pkl                  [rel path, ...] Texformer's evaluation images
    <rel path>                     the 128x64 Market-1501 crop, e.g. bounding_box_train/0002_c1s1_000451_03.jpg
    SMPL_RSC/pkl/<name>.pkl        pickled [vertices (6890, 3), cam_t (3,)]
    SMPL_RSC/parts/<name>.png      the mesh's SMPL part labels 0..12 (mapped to 7 parts)
    part_seg_EANet/<rel path without extension>.png   2D parser labels 0..7
Path conventions, as Texformer's reader forms them: relative paths use "/" and are relative to
`root`; `<name>` is the file name of the image without its extension (SMPL_RSC is flat); the
parser file keeps the relative folders. Texformer cuts the parser path at the first "." and, when
that file is missing, appends ".png" twice, so `<rel path>.png.png`-style names are tried as well.
A person id (pid) is a dict key; an eval image's pid is looked up in both dicts, else read off the
Market-1501 file name (the number before the first "_").

The fitted mesh is in camera space as `vertices + cam_t` (OpenCV axes); the camera is Texformer's
(focal 5000 * 128 / 224 at the centre of a 128x128 render, centre 64 columns kept:
`zoo.render.texformer_intrinsics`). Each view is rasterised with the user's SMPL topology + UV.
"""
from __future__ import annotations

import abc
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from zoo.body import coarse_from_smpl12
from zoo.datamodules.datasets.photo_files import open_photo, safe_unpickle
from zoo.datamodules.datasets.smpl_uv import SMPLTopology, load_smpl_topology, render_fit, require_file, spin_intrinsics
from zoo.datamodules.resumable import split_index

log = logging.getLogger(__name__)

MARKET_HOWTO = ("Get Texformer's SMPLMarket data release (linked from https://github.com/xuxy09/Texformer: "
                "train_test_img_paths_pid.pkl, eval_list.pkl, SMPL_RSC/, part_seg_EANet/) and the Market-1501 images "
                "(Zheng et al., ICCV 2015; research use under the Market-1501 terms) at the relative paths the "
                "index lists.")
BACKGROUNDS_HOWTO = "Any folder of .jpg frames works (Texformer uses PRW and CUHK-SYSU frames)."
TEXTURES_HOWTO = ("Texformer uses the SURREAL textures (smpl_data/textures, SURREAL licence, research use); any "
                  "folder of SMPL-UV texture .jpg files works.")


# -- file readers ----------------------------------------------------------------------------
def read_rgb(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float in [-1, 1]; resized (bilinear) to `size` = (H, W) when it differs.

    Read by `photo_files.open_photo`: upright (EXIF), 16-bit grey scaled, errors name the file."""
    img = open_photo(path)
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def read_labels(path: Path, size: tuple[int, int], max_label: int, square_render: bool = False) -> torch.Tensor:
    """(H, W) int64 label image (first channel of RGB files), nearest-resized to `size`.

    `square_render`: a square file for a narrower H x W image is the uncropped square render:
    its centre columns (W / H of the side, Texformer's crop) are kept before any resize."""
    with Image.open(path) as img:
        array = np.asarray(img)
    if array.ndim == 3:
        array = array[..., 0]
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() > max_label:
        raise ValueError(f"{path}: labels must be in 0..{max_label}, got [{int(array.min())}, {int(array.max())}]")
    H, W = size
    side = array.shape[0]
    if square_render and array.shape[1] == side and W < H:
        width = round(side * W / H)
        left = (side - width) // 2
        array = array[:, left:left + width]
    if array.shape != (H, W):
        array = np.asarray(Image.fromarray(array.astype(np.uint8)).resize((W, H), Image.NEAREST)).astype(np.int64)
    return torch.from_numpy(array)


def read_pickle(path: Path):
    """Unpickle a data file (latin1 so that Python 2 pickles of numpy arrays load too); only plain data
    and numpy arrays are accepted, errors name the file (`photo_files.safe_unpickle`)."""
    return safe_unpickle(path)


class ImagePool:
    """The image files under a folder (recursive, sorted), read at a fixed size.

    Args:
        folder: where to look. size: (H, W) of what `get` returns.
        key: the config key that points here (for error messages). how: what to put there.
        name_contains: keep only files whose name contains this ("" keeps all).
        extensions: file name endings kept (case-insensitive).
    """

    def __init__(self, folder: str | Path, size: tuple[int, int], key: str, how: str, name_contains: str = "",
                 extensions: Sequence[str] = (".jpg", ".jpeg", ".png")) -> None:
        self.folder, self.size = Path(folder).expanduser(), tuple(size)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder not found: {self.folder}. {how} "
                                    f"Point `{key}` (YAML: init_args.{key}) at it.")
        self.files = sorted(p for p in self.folder.rglob("*")
                            if p.is_file() and p.suffix.lower() in extensions and name_contains in p.name)
        if not self.files:
            what = f" whose name contains {name_contains!r}" if name_contains else ""
            raise FileNotFoundError(f"no {'/'.join(extensions)} files{what} under {self.folder} (`{key}`). {how}")

    def __len__(self) -> int:
        return len(self.files)

    def get(self, index: int, flip: bool = False) -> torch.Tensor:
        image = read_rgb(self.files[index % len(self.files)], self.size)
        return image.flip(-1) if flip else image


# -- paired views of identities --------------------------------------------------------------
def pid_sort_key(pid: Hashable):
    """Numeric pids in numeric order first (Market-1501: 2 < 10), then the rest as strings."""
    try:
        return (0, int(pid), "")
    except (TypeError, ValueError):
        return (1, 0, str(pid))


class PairedViews(Dataset, abc.ABC):
    """Photos grouped by identity; an item is one view plus (optionally) another view of the same
    person under the `novel_` prefix. Subclasses implement `load_view(path) -> dict`.

    Item keys on top of `load_view`'s: view_id (index into `paths`), person_id (index into
    `identities`, contiguous from 0); with pairs the partner's keys prefixed `novel_` (and
    novel_person_id == person_id); `background` (3, H, W) with a background pool;
    `reference_texture` (3, T, T) with a texture pool.

    Args:
        groups: pid -> image paths of that person (the pool partners are drawn from).
        anchors: the paths items start from when `items_per="image"` (None: every path).
        items_per: "person" (one item per identity, Texformer's epoch) or "image".
        pairs: add a second view of the same person; identities with one image are left out.
        random: random views, partners, backgrounds (h-flipped half the time) and textures;
            False: deterministic ones (first two views of a person, the next view of an image,
            background / texture number `index`).
        backgrounds, textures: `ImagePool`s or None (one background per item: the pair shares it,
            as in Texformer, where both renders are composited over the same frame).
    """

    def __init__(self, groups: Mapping[Hashable, Sequence[str]], anchors: Sequence[str] | None = None,
                 items_per: str = "person", pairs: bool = True, random: bool = True,
                 backgrounds: ImagePool | None = None, textures: ImagePool | None = None) -> None:
        if items_per not in ("person", "image"):
            raise ValueError(f"items_per must be 'person' or 'image', got {items_per!r}")
        self.items_per, self.pairs, self.random = items_per, bool(pairs), bool(random)
        self.backgrounds, self.textures = backgrounds, textures
        self.identities = sorted(groups, key=pid_sort_key)
        self.paths: list[str] = []
        index: dict[str, int] = {}
        person_of, images_of = [], []
        for person, pid in enumerate(self.identities):
            own = []
            for path in groups[pid]:
                if path not in index:
                    index[path] = len(self.paths)
                    self.paths.append(path)
                    person_of.append(person)
                own.append(index[path])
            images_of.append(np.unique(np.asarray(own, dtype=np.int64)))
        self.person_of, self.images_of = np.asarray(person_of, dtype=np.int64), images_of
        need = 2 if self.pairs else 1
        if items_per == "person":
            self.items = [p for p, imgs in enumerate(images_of) if len(imgs) >= need]
        else:
            missing = [p for p in (anchors or []) if p not in index]
            if missing:
                raise ValueError(f"{len(missing)} anchor images belong to no identity, e.g. {missing[:3]}")
            order = [index[p] for p in anchors] if anchors is not None else range(len(self.paths))
            self.items = [i for i in order if len(images_of[self.person_of[i]]) >= need]
        dropped = (len(images_of) if items_per == "person" else len(anchors or self.paths)) - len(self.items)
        if dropped:
            log.warning("%d %ss without a second image of the same person left out (pairs=True)", dropped, items_per)
        if not self.items:
            raise ValueError(f"no {items_per} has {need} image(s) of one identity: nothing to load")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    @abc.abstractmethod
    def load_view(self, path: str) -> dict[str, torch.Tensor]:
        """One image's keys (image, parts, render_parts, mask, uv, K, vertices, ...)."""

    def _choose(self, index: int, g: torch.Generator | None) -> tuple[int, int | None]:
        if self.items_per == "person":
            imgs = self.images_of[self.items[index]]
            if self.random:
                pick = torch.randperm(len(imgs), generator=g)[:2].tolist()
                first, second = int(imgs[pick[0]]), (int(imgs[pick[1]]) if len(pick) > 1 else None)
            else:
                first, second = int(imgs[0]), (int(imgs[1]) if len(imgs) > 1 else None)
            return first, second
        first = self.items[index]
        others = self.images_of[self.person_of[first]]
        others = others[others != first]
        if not len(others):
            return first, None
        if self.random:
            return first, int(others[torch.randint(len(others), (), generator=g).item()])
        return first, int(others[np.searchsorted(others, first) % len(others)])

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        """`index`: an item number, or `(number, draw)` from `ResumableSampler(with_draws=True)`: the
        random choices then come from a generator seeded by the draw, not from the global RNG or a
        worker's, so a resumed run (any `num_workers`) reads the items the uninterrupted run read."""
        index, draw = split_index(index)
        g = torch.Generator().manual_seed(draw) if draw is not None else None
        first, second = self._choose(index, g)
        person = torch.tensor(int(self.person_of[first]), dtype=torch.int64)
        item = self.load_view(self.paths[first])
        item.update(view_id=torch.tensor(first, dtype=torch.int64), person_id=person)
        if self.pairs:
            novel = self.load_view(self.paths[second])
            novel.update(view_id=torch.tensor(second, dtype=torch.int64), person_id=person.clone())
            item.update({f"novel_{k}": v for k, v in novel.items()})
        for key, pool in (("background", self.backgrounds), ("reference_texture", self.textures)):
            if pool is not None:
                pick = int(torch.randint(len(pool), (), generator=g).item()) if self.random else index
                flip = key == "background" and self.random and bool(torch.rand((), generator=g) < 0.5)
                item[key] = pool.get(pick, flip=flip)
        return item


# -- SMPLMarket ------------------------------------------------------------------------------
INDEX_FILE, EVAL_FILE = "train_test_img_paths_pid.pkl", "eval_list.pkl"


def read_market_index(root: str | Path) -> dict[str, dict]:
    """{"out_dict_train": {pid: [paths]}, "out_dict_test": {...}} of an SMPLMarket root."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"SMPLMarket root folder not found: {root}. {MARKET_HOWTO} "
                                "Point `root` (YAML: init_args.root) at the folder holding " + INDEX_FILE + ".")
    data = read_pickle(require_file(root / INDEX_FILE, "SMPLMarket split index", MARKET_HOWTO, "root", inside=True))
    if not isinstance(data, Mapping) or not {"out_dict_train", "out_dict_test"} <= set(data):
        found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{root / INDEX_FILE} must be a dict with 'out_dict_train' and 'out_dict_test', found {found}")
    return {k: {pid: [str(p) for p in paths] for pid, paths in data[k].items()}
            for k in ("out_dict_train", "out_dict_test")}


def market_pid(path: str) -> int:
    """Market-1501 file names start with the person id: 0002_c1s1_000451_03.jpg -> 2 (-1: distractor)."""
    head = os.path.basename(path).split("_")[0]
    try:
        return int(head)
    except ValueError as err:
        raise ValueError(f"cannot read a Market-1501 person id off {path!r} and it is in neither split dict") from err


class SMPLMarket(PairedViews):
    """Market-1501 crops with Texformer's SMPL fits, parser labels and the mesh's UV render.

    View keys: image (3, H, W) in [-1, 1]; parts (H, W) int64 parser labels 0..7 (the network
    input); render_parts (H, W) int64 0..7 of the mesh; mask (1, H, W); uv (H, W, 2) grid in
    [-1, 1], -2 on background; K (3, 3); vertices (V, 3) camera space. See `PairedViews` for the
    rest (pairs, background, reference_texture).

    Args:
        root: the SMPLMarket folder (layout in the module doc).
        split: "train" / "test" (`out_dict_train` / `out_dict_test`) or "eval" (`eval_list.pkl`,
            one item per listed image, partners from the image's identity in either dict).
        topology: a loaded `SMPLTopology` (shared between splits); None loads one from
            `smpl_model_path` / `smpl_uv_path` (see `smpl_uv.load_smpl_topology`).
        identities: keep only these pids (the train / val split of `out_dict_train`).
        image_size: (H, W); Market-1501 crops and Texformer's input are 128x64.
        render_parts: "release" (SMPL_RSC/parts, what Texformer's part-style loss uses) or "mesh"
            (rasterised from the model's face labels; needs `smpl_model_path`).
        items_per, pairs, random, backgrounds, textures: see `PairedViews` ("eval" is per image).
        index: the parsed split index (`read_market_index`, read once by the DataModule); None
            reads it from `root`.
    """

    def __init__(self, root: str, split: str = "train", topology: SMPLTopology | None = None,
                 smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 identities: Sequence[Hashable] | None = None, image_size: Sequence[int] = (128, 64),
                 render_parts: str = "release", items_per: str = "person", pairs: bool = True, random: bool = True,
                 backgrounds: ImagePool | None = None, textures: ImagePool | None = None,
                 index: Mapping[str, Mapping] | None = None) -> None:
        if split not in ("train", "test", "eval"):
            raise ValueError(f"split must be 'train', 'test' or 'eval', got {split!r}")
        if render_parts not in ("release", "mesh"):
            raise ValueError(f"render_parts must be 'release' or 'mesh', got {render_parts!r}")
        self.root, self.split, self.image_size = Path(root).expanduser(), split, tuple(int(s) for s in image_size)
        index = index if index is not None else read_market_index(self.root)
        anchors = None
        if split == "eval":
            anchors = [str(p) for p in read_pickle(require_file(self.root / EVAL_FILE, "SMPLMarket eval list",
                                                                MARKET_HOWTO, "root", inside=True))]
            pid_of = {p: pid for d in (index["out_dict_test"], index["out_dict_train"])
                      for pid, ps in d.items() for p in ps}
            groups: dict = {}
            for path in anchors:
                groups.setdefault(pid_of[path] if path in pid_of else market_pid(path), []).append(path)
            for d in (index["out_dict_test"], index["out_dict_train"]):
                for pid, paths in d.items():
                    if pid in groups:
                        groups[pid].extend(paths)
            items_per = "image"
        else:
            groups = dict(index["out_dict_" + split])
            if identities is not None:
                unknown = [pid for pid in identities if pid not in groups]
                if unknown:
                    raise ValueError(f"identities {unknown[:5]} are not in out_dict_{split} of "
                                     f"{self.root / INDEX_FILE}")
                groups = {pid: groups[pid] for pid in identities}
        self.topology = topology if topology is not None else load_smpl_topology(smpl_model_path, smpl_uv_path)
        if render_parts == "mesh" and self.topology.face_parts is None:
            raise ValueError("render_parts='mesh' needs face part labels: set `smpl_model_path`")
        self.render_parts = render_parts
        self.K = spin_intrinsics(self.image_size)
        super().__init__(groups, anchors, items_per=items_per, pairs=pairs, random=random,
                         backgrounds=backgrounds, textures=textures)

    def _file(self, path: Path, what: str) -> Path:
        return require_file(path, what, MARKET_HOWTO, "root", inside=True)

    def _parser_file(self, rel: str) -> Path:
        stem = os.path.splitext(rel)[0]
        candidates = dict.fromkeys([stem + ".png", rel.split(".")[0] + ".png", stem + ".png.png", rel + ".png"])
        for name in candidates:
            if (self.root / "part_seg_EANet" / name).is_file():
                return self.root / "part_seg_EANet" / name
        return self._file(self.root / "part_seg_EANet" / (stem + ".png"), "EANet parser labels")

    def load_view(self, rel: str) -> dict[str, torch.Tensor]:
        name = os.path.splitext(os.path.basename(rel))[0]
        fit_path = self._file(self.root / "SMPL_RSC" / "pkl" / f"{name}.pkl", "SMPL fit")
        fit = read_pickle(fit_path)
        if not isinstance(fit, (list, tuple)) or len(fit) < 2:
            raise ValueError(f"{fit_path} must pickle [vertices (6890, 3), cam_t (3,)], got {type(fit).__name__}")
        vertices = torch.as_tensor(np.asarray(fit[0], dtype=np.float32)).reshape(-1, 3)
        cam_t = torch.as_tensor(np.asarray(fit[1], dtype=np.float32)).reshape(-1)
        if cam_t.numel() != 3:
            raise ValueError(f"{fit_path}: cam_t must hold 3 values, got {cam_t.numel()}")
        vertices = vertices + cam_t
        rendered = render_fit(self.topology, vertices, self.K, self.image_size, str(fit_path))
        if self.render_parts == "release":
            smpl12 = read_labels(self._file(self.root / "SMPL_RSC" / "parts" / f"{name}.png", "SMPL part labels"),
                                 self.image_size, 12, square_render=True)
            render_parts = coarse_from_smpl12(smpl12)
        else:
            render_parts = rendered["mesh_parts"]
        return {
            "image": read_rgb(self._file(self.root / rel, "Market-1501 image"), self.image_size),
            "parts": read_labels(self._parser_file(rel), self.image_size, 7),
            "render_parts": render_parts,
            "mask": rendered["mask"],
            "uv": rendered["uv"],
            "K": self.K.clone(),
            "vertices": vertices,
        }


__all__ = ["ImagePool", "PairedViews", "SMPLMarket", "read_labels", "read_market_index", "read_rgb", "market_pid"]
