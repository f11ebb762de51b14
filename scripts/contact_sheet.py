"""Write a contact sheet of synthetic people.

    python scripts/contact_sheet.py --preset small --out docs/synthetic_people.png
    python scripts/contact_sheet.py --preset dinar --avatar --out docs/synthetic_avatars.png

Default columns: image, mask, parts, UV render, another view, GT texture, partial texture.
With --avatar (DINAR's stage-1 pairs, `SyntheticAvatarDataModule`): source image, person mask
over the body fit's mask (white: both, red: clothes past the body), occlusion outline kept out
of the texture (red), RGB channels scattered from the source, target image (another pose and
camera), the GT albedo rendered flat through the target's body UV (what an RGB texture alone
explains: no shading, no clothes off the body), GT albedo texture.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from zoo.datamodules import SyntheticAvatarDataModule, SyntheticPeopleDataModule
from zoo.render import composite, dilate_texture, sample_texture
from zoo.utils.images import grid, labels_to_uint8, save_png, to_uint8, uv_to_uint8


def upscale(pic: torch.Tensor, factor: int) -> torch.Tensor:
    return pic.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


def square(texture: torch.Tensor, H: int, mode: str = "bilinear") -> torch.Tensor:
    return F.interpolate(texture[None], size=(H, H), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))[0]


def people_row(item: dict) -> list[torch.Tensor]:
    H = item["image"].shape[-2]
    return [to_uint8(item["image"]), to_uint8(item["mask"], (0, 1)), labels_to_uint8(item["parts"]),
            uv_to_uint8(item["uv"]), to_uint8(item["novel_image"]), to_uint8(square(item["texture"], H)),
            to_uint8(square(item["partial"], H, "nearest"))]


def avatar_row(item: dict) -> list[torch.Tensor]:
    H = item["source_image"].shape[-2]
    person, body = item["source_mask"], item["source_uv_mask"]
    masks = torch.cat([person, person * body, person * body]) * 2 - 1  # red where only the person is
    red = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    occlusion = composite(red.expand(3, H, H), item["source_occlusion"], item["source_image"])
    rgb = item["source_rgb_texture"]
    scattered = composite(rgb[:3], rgb[3:4], 1.0)
    padded = dilate_texture(item["texture"], item["texture_mask"])
    flat = sample_texture(padded[None], item["target_uv"][None], item["target_uv_mask"][None])[0]
    flat = composite(flat, item["target_uv_mask"], 1.0)
    return [to_uint8(item["source_image"]), to_uint8(masks), to_uint8(occlusion), to_uint8(square(scattered, H, "nearest")),
            to_uint8(item["target_image"]), to_uint8(flat), to_uint8(square(item["texture"], H))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--avatar", action="store_true", help="DINAR stage-1 pairs (SyntheticAvatarDataModule)")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", default="docs/synthetic_people.png")
    args = parser.parse_args()
    if args.avatar:
        dm = SyntheticAvatarDataModule(args.preset, data_dir=args.data_dir)
        dm.setup()
        ds, make_row = dm.datasets["val"], avatar_row
        ds.pairs = "fixed"
        columns = ("source, person mask vs body fit (red: clothes), occlusion outline (red), scattered RGB, "
                   "target, flat albedo through the target fit, GT texture")
    else:
        dm = SyntheticPeopleDataModule(args.preset, data_dir=args.data_dir, pairs="fixed")
        dm.setup()
        ds, make_row = dm.datasets["train"], people_row
        columns = "image, mask, parts, UV render, another view, GT texture, partial texture"
    step = max(1, len(ds) // args.rows)
    rows = [[upscale(p, args.scale) for p in make_row(ds[index])] for index in range(0, step * args.rows, step)][:args.rows]
    path = save_png(grid(rows), args.out)
    print(f"wrote {path}: columns = {columns}")


if __name__ == "__main__":
    main()
