"""The README's photo-to-avatar figure: `python -m zoo avatar` on a synthetic render and on the
scikit-image astronaut (public domain, NASA), their summary rows stacked -> docs/avatar_figure.png.

    python scripts/avatar_figure.py --ckpt <quick-start last.ckpt> [--work outputs/avatar_figure]

Each row: photo crop, mask + keypoints, fit overlay, UV texture, front and back views of the
textured body. Photos whose summary exists under --work are not redone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "avatar_figure")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "avatar_figure.png")
    args = parser.parse_args()
    import skimage.data

    from zoo.avatar.pipeline import run_avatar
    from zoo.body import AnnyBody
    from zoo.fit.synthetic import random_person, render_photo

    photos = args.work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    if not (photos / "synthetic.png").is_file():
        body = AnnyBody().eval()
        betas, pose, texture = random_person(body, seed=1)
        render = render_photo(body, betas, pose, texture, (512, 512), yaw_deg=25.0, seed=1)
        Image.fromarray(render.image).save(photos / "synthetic.png")
    if not (photos / "astronaut.png").is_file():
        Image.fromarray(skimage.data.astronaut()).save(photos / "astronaut.png")
    rows = []
    for name in ("synthetic", "astronaut"):
        summary = args.work / "avatar" / name / "summary.png"
        if not summary.is_file():
            results = run_avatar(photos / f"{name}.png", args.work, ckpt=args.ckpt)
            if results[0].error:
                raise SystemExit(f"{name}: {results[0].error}")
        rows.append(np.asarray(Image.open(summary).convert("RGB")))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).quantize(256).save(args.out, optimize=True)


if __name__ == "__main__":
    main()
