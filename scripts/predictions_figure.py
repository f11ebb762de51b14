"""Figure of a trained texture-completion run on held-out identities.

    python scripts/predictions_figure.py --config configs/quickstart.yaml --ckpt <last.ckpt> \
        --out docs/quickstart_predictions.png

Columns: input view, its partial texture, predicted texture, ground-truth texture, the
prediction rendered in another view, that real view.
"""
from __future__ import annotations

import argparse

import torch

from zoo.cli import ZooCLI
from zoo.systems.texture_completion import render_in_view
from zoo.utils.images import grid, save_png, to_uint8


def upscale(pic: torch.Tensor, factor: int) -> torch.Tensor:
    return pic.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", default="docs/quickstart_predictions.png")
    args, rest = parser.parse_known_args()
    cli = ZooCLI(args=["--config", args.config, "--trainer.logger=false", *rest], run=False)
    system, dm = cli.model, cli.datamodule
    system.load_state_dict(torch.load(args.ckpt, map_location="cpu", weights_only=True)["state_dict"])
    dm.setup("test")
    if system.hparams.use_position_code:
        system.position_code = dm.uv_maps()["position_code"]
    system.eval()
    ds = dm.datasets["test"]
    step = max(1, len(ds) // args.rows)
    batch = torch.utils.data.default_collate([ds[i] for i in range(0, step * args.rows, step)][: args.rows])
    with torch.no_grad():
        texture = system(batch["partial"], batch["known_mask"])
        novel = render_in_view(texture, batch["novel_uv"], batch["novel_mask"], batch["novel_image"])
    rows = []
    for b in range(texture.shape[0]):
        pics = [batch["image"][b], batch["partial"][b], texture[b] * batch["texture_mask"][b], batch["texture"][b],
                novel[b], batch["novel_image"][b]]
        rows.append([upscale(to_uint8(p), args.scale) for p in pics])
    path = save_png(grid(rows), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
