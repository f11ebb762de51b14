"""Write a contact sheet of synthetic people: image, mask, parts, UV render, GT texture.

    python scripts/contact_sheet.py --preset small --out docs/synthetic_people.png
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from zoo.datamodules import SyntheticPeopleDataModule
from zoo.utils.images import grid, labels_to_uint8, save_png, to_uint8, uv_to_uint8


def upscale(pic: torch.Tensor, factor: int) -> torch.Tensor:
    return pic.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", default="docs/synthetic_people.png")
    args = parser.parse_args()
    dm = SyntheticPeopleDataModule(args.preset, data_dir=args.data_dir, pairs="fixed")
    dm.setup()
    ds = dm.datasets["train"]
    rows = []
    step = max(1, len(ds) // args.rows)
    for index in range(0, step * args.rows, step):
        item = ds[index]
        H = item["image"].shape[-2]
        tex = F.interpolate(item["texture"][None], size=(H, H), mode="bilinear", align_corners=False)[0]
        partial = F.interpolate(item["partial"][None], size=(H, H), mode="nearest")[0]
        pics = [to_uint8(item["image"]), to_uint8(item["mask"], (0, 1)), labels_to_uint8(item["parts"]),
                uv_to_uint8(item["uv"]), to_uint8(item["novel_image"]), to_uint8(tex), to_uint8(partial)]
        rows.append([upscale(p, args.scale) for p in pics])
    path = save_png(grid(rows), args.out)
    print(f"wrote {path}: columns = image, mask, parts, UV render, another view, GT texture, partial texture")


if __name__ == "__main__":
    main()
