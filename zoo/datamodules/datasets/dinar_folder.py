"""DINAR's input folder: `rgb/<id>.png`, `segm/<id>.png` (person mask), `smplx/<id>.pkl` (fit).

Each frame becomes one avatar source, prepared as DINAR does (implementation notes, section 4):
the SMPL-X fit is posed in camera space (5000 px focal length at the image centre), the image is
cropped to a square around the person -- the union of the projected mesh's box (made square) and
the mask's box, each enlarged 1.2x -- and resized to 512 x 512; the camera follows the crop.
Ours where DINAR's code differs: the union box is made square around its centre (DINAR takes
its width as the side, from its top-left corner), pixel centres sit at integer coordinates (the
principal point of a W-wide image is (W - 1) / 2, DINAR's W // 2), and the resize is bilinear
with antialiasing (DINAR: PIL's default filter).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from zoo.body.smplx_params import read_smplx_params, smplx_camera_vertices
from zoo.render import composite, intrinsics, rasterize, rasterize_uv_atlas, render_uv, rgb_texture_channels, texel_view_cosines
from zoo.render.occlusion import dilations_for, occlusion_from_uv

SUBFOLDERS = ("rgb", "segm", "smplx")


def _scaled(box: tuple[float, float, float, float], scale: float) -> tuple[float, float, float, float]:
    left, top, right, bottom = box
    cx, cy, w, h = (left + right) / 2, (top + bottom) / 2, (right - left) * scale, (bottom - top) * scale
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def square_crop_box(points: torch.Tensor, mask: torch.Tensor, scale: float = 1.2) -> tuple[int, int, int]:
    """(left, top, side) in pixels of DINAR's square person crop.

    Args:
        points: (V, 2) projected mesh vertices (pixel coordinates, centres at integers).
        mask: (H, W) person mask.
        scale: enlargement of both boxes (DINAR: 1.2).
    """
    H, W = mask.shape
    x0, y0 = points.min(0).values.tolist()
    x1, y1 = points.max(0).values.tolist()
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    boxes = [_scaled((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), scale)]
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(rows):
        left, top, right, bottom = _scaled((float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())), scale)
        boxes.append((max(left, 0.0), max(top, 0.0), min(right, W - 1.0), min(bottom, H - 1.0)))
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    side = max(right - left, bottom - top, 1.0)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    side_px = int(math.ceil(side)) + 1  # covers pixel centres from the box's first to its last
    return int(math.floor(cx - side_px / 2 + 0.5)), int(math.floor(cy - side_px / 2 + 0.5)), side_px


def crop_matrix(left: int, top: int, side: int, size: int) -> torch.Tensor:
    """(3, 3) map of pixel coordinates into the crop resized to `size`: x' = (x - left + 1/2) s - 1/2
    with s = size / side (pixel centres at integers, as `F.interpolate(align_corners=False)`)."""
    s = size / side
    return torch.tensor([[s, 0.0, (0.5 - left) * s - 0.5], [0.0, s, (0.5 - top) * s - 0.5], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def crop_and_resize(image: torch.Tensor, left: int, top: int, side: int, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size): the square [left, left + side) x [top, top + side), zero
    outside the image, resized bilinearly with antialiasing."""
    C, H, W = image.shape
    canvas = image.new_zeros(C, side, side)
    r0, r1, c0, c1 = max(top, 0), min(top + side, H), max(left, 0), min(left + side, W)
    if r1 > r0 and c1 > c0:
        canvas[:, r0 - top:r1 - top, c0 - left:c1 - left] = image[:, r0:r1, c0:c1]
    return F.interpolate(canvas[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=side > size)[0]


def _read(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert(mode))


class DinarFolder(Dataset):
    """The frames of a DINAR input folder as avatar sources.

    Item keys (S = image_size, T = texture_size, V = SMPL-X vertices; images in [-1, 1]):
        source_image (3, S, S) the person on black; source_mask (1, S, S);
        source_uv (S, S, 2) UV render of the fit (background -2); source_uv_mask (1, S, S);
        source_rgb_texture (5, T, T) RGB + known-or-filled + gap-fill masks; source_occlusion (1, S, S);
        source_K (3, 3) camera of the crop; source_vertices (V, 3) camera space;
        source_texel_cosines (1, T, T) `texel_view_cosines` of the view (merging weights' input);
        crop_box (3,) int64 left, top, side of the crop in the original image; frame (str) the id;
        face_mask_uv (1, T, T) the body's UV face region (front / back of the view: the fine-tuning's schedule).

    Args:
        root: folder with rgb/, segm/, smplx/.
        body: an `SMPLXBody` (its UV layout gives the texture atlas).
        image_size: side of the square crop (DINAR: 512).
        texture_size: side of the texture (DINAR: 256).
        scale_bbox: enlargement of the person boxes (DINAR: 1.2).
        focal: focal length in pixels of the original image (DINAR: 5000).
        erode: odd erosion of the person mask before scattering (DINAR: 5).
        limb_colours: (3, T', T') limb-colour texture of `body` for the occlusion detector
            (`zoo.render.occlusion.limb_colour_texture`); None: no detector.
    """

    def __init__(self, root: str | Path, body, image_size: int = 512, texture_size: int = 256, scale_bbox: float = 1.2,
                 focal: float = 5000.0, erode: int = 5, limb_colours: torch.Tensor | None = None) -> None:
        self.root = Path(root)
        missing = [name for name in SUBFOLDERS if not (self.root / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.root} is not a DINAR folder: missing {missing} (expected rgb/<id>.png, "
                                    "segm/<id>.png, smplx/<id>.pkl)")
        self.frames = sorted(p.stem for p in (self.root / "rgb").glob("*.png"))
        if not self.frames:
            raise FileNotFoundError(f"no images in {self.root / 'rgb'} (expected <id>.png)")
        for frame in self.frames:
            for name, ext in (("segm", "png"), ("smplx", "pkl")):
                if not (self.root / name / f"{frame}.{ext}").is_file():
                    raise FileNotFoundError(f"{self.root / name / f'{frame}.{ext}'} is missing (every rgb/<id>.png "
                                            f"needs segm/<id>.png and smplx/<id>.pkl)")
        if image_size < 8 or texture_size < 8 or scale_bbox < 1.0 or focal <= 0:
            raise ValueError(f"bad sizes: image_size={image_size}, texture_size={texture_size}, "
                             f"scale_bbox={scale_bbox}, focal={focal}")
        self.body, self.image_size, self.texture_size = body, image_size, texture_size
        self.scale_bbox, self.focal, self.erode, self.limb_colours = scale_bbox, focal, erode, limb_colours
        self.atlas = rasterize_uv_atlas(body.corner_uvs, texture_size)
        self.face_mask_uv = body.uv_region_mask("face", texture_size).float()[None]

    def __len__(self) -> int:
        return len(self.frames)

    @torch.no_grad()
    def __getitem__(self, index: int) -> dict:
        frame = self.frames[index]
        params = read_smplx_params(self.root / "smplx" / f"{frame}.pkl")
        rgb = torch.from_numpy(_read(self.root / "rgb" / f"{frame}.png", "RGB").copy()).permute(2, 0, 1).float() / 255
        segm = torch.from_numpy(_read(self.root / "segm" / f"{frame}.png", "RGB")[..., 0].copy())
        if segm.shape != rgb.shape[1:]:
            raise ValueError(f"{frame}: segm is {tuple(segm.shape)}, rgb {tuple(rgb.shape[1:])}")
        mask = (segm > 0).float()
        if params["ltrb"] is not None:  # the fit was made on this crop of the image
            rgb = self._crop_rect(rgb, params["ltrb"])
            mask = self._crop_rect(mask[None], params["ltrb"])[0]
        H, W = mask.shape
        vertices = smplx_camera_vertices(self.body, params)[0].double()
        K0 = intrinsics(self.focal, (H, W), dtype=torch.float64)[0]
        projected = vertices @ K0.T
        if (projected[:, 2] <= 0).any():
            raise ValueError(f"{frame}: the fit has vertices behind the camera (transl {params['transl'].tolist()})")
        points = projected[:, :2] / projected[:, 2:]
        left, top, side = square_crop_box(points, mask, self.scale_bbox)
        S = self.image_size
        K = crop_matrix(left, top, side, S) @ K0
        image = crop_and_resize(rgb, left, top, side, S)
        person = (crop_and_resize(mask[None], left, top, side, S) > 0.2).float()
        frags = rasterize(vertices[None].float(), self.body.faces, K[None].float(), (S, S))
        uv, uv_mask = render_uv(frags, self.body.corner_uvs)
        if self.limb_colours is not None:
            occlusion = occlusion_from_uv(self.limb_colours, uv, uv_mask, dilations=dilations_for(S))
        else:
            occlusion = torch.zeros_like(uv_mask)
        image = image * 2 - 1
        channels = rgb_texture_channels(image[None], uv, person[None], self.texture_size, erode=self.erode,
                                        exclude=occlusion)
        cosines = texel_view_cosines(vertices[None].float(), self.body.faces, self.body.corner_uvs, self.texture_size,
                                     self.atlas)
        return {
            "source_texel_cosines": cosines[0], "source_image": composite(image, person, -1.0), "source_mask": person, "source_uv": uv[0],
            "source_uv_mask": uv_mask[0], "source_rgb_texture": channels[0], "source_occlusion": occlusion[0],
            "source_K": K.float(), "source_vertices": vertices.float(),
            "crop_box": torch.tensor([left, top, side], dtype=torch.int64), "frame": frame,
            "face_mask_uv": self.face_mask_uv,
        }

    @staticmethod
    def _crop_rect(image: torch.Tensor, ltrb: tuple[int, int, int, int]) -> torch.Tensor:
        """The (unresized) rectangle ltrb of (C, H, W), zero outside the image (DINAR's pre-crop)."""
        left, top, right, bottom = ltrb
        C, H, W = image.shape
        out = image.new_zeros(C, bottom - top, right - left)
        r0, r1, c0, c1 = max(top, 0), min(bottom, H), max(left, 0), min(right, W)
        if r1 > r0 and c1 > c0:
            out[:, r0 - top:r1 - top, c0 - left:c1 - left] = image[:, r0:r1, c0:c1]
        return out
