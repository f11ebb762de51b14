"""`python -m zoo avatar PHOTO|FOLDER --out DIR [--method refinetex|dinar] [--ckpt X.ckpt]`.

Runs `zoo.avatar.pipeline.run_avatar` and prints one line per photo: what was written, the fit's
keypoint error and mask IoU, warnings, or why the photo could not be used. Exit status 1 when a
photo failed, 2 when nothing could run (no models, no checkpoint, DINAR unavailable).
"""
from __future__ import annotations

import argparse
import logging
import sys

from zoo.avatar.pipeline import run_avatar


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo avatar", description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", help="a photo (.png/.jpg) or a folder of photos")
    parser.add_argument("--out", required=True, help="output folder (layout: zoo.avatar.pipeline)")
    parser.add_argument("--method", default="refinetex", choices=("refinetex", "dinar"),
                        help="texture method (default: refinetex, a RefineTex-family checkpoint; dinar: DINAR's "
                        "one-image pipeline, configs/dinar/one_image_avatar.yaml)")
    parser.add_argument("--ckpt", default=None, help="refinetex: the texture model checkpoint (e.g. the quick start's "
                        "last.ckpt); dinar: a stage-1 NeuralAvatarSystem checkpoint (optional when the config names "
                        "its networks)")
    parser.add_argument("--config", default=None, help="refinetex: its YAML config (default: config.yaml of its run "
                        "folder); dinar: a DinarOneImageSystem config (default: configs/dinar/one_image_avatar.yaml)")
    parser.add_argument("--motion", default=None, help="pose-sequence .npz: Anny's format (zoo.export.motion) or an "
                        "AMASS-style SMPL-X / SMPL+H file, retargeted onto Anny (zoo.export.amass); default: a walk cycle")
    parser.add_argument("--motion-fps", type=float, default=30.0, help="resample an AMASS file to about this rate")
    parser.add_argument("--smplx-model", default=None, help="your SMPL-X model file (SMPLX_NEUTRAL.npz): the source "
                        "skeleton of AMASS motions (default: an idealised T-pose)")
    parser.add_argument("--fit-steps", type=int, nargs=3, default=None, metavar=("CAMERA", "POSE", "SILHOUETTE"),
                        help="iterations of the three fitting stages (default 60 120 80)")
    parser.add_argument("--render-size", type=int, default=256, help="side of the rendered views and videos, px")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = run_avatar(args.photo, args.out, args.method, args.ckpt, args.config, args.motion,
                             args.fit_steps, progress=not args.no_progress, render_size=args.render_size,
                             motion_fps=args.motion_fps, smplx_model=args.smplx_model)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        sys.stderr.write(f"avatar: {error}\n")
        return 2
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            sys.stdout.write(f"{result.photo}: FAILED: {result.error}\n")
            continue
        sys.stdout.write(f"{result.photo}: keypoint error {result.keypoint_px:.1f} px, mask IoU {result.iou:.2f}; "
                         f"avatar in {result.files['avatar.glb'].rsplit('/', 1)[0]}\n")
        for warning in result.warnings:
            sys.stdout.write(f"  note: {warning}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
