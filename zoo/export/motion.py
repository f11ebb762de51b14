"""Pose-sequence files that drive an Anny avatar, and a walk cycle to start from.

Format (`.npz`, numpy's zip of arrays), one row per frame:

    pose     (T, 312) float32  Anny bone rotations, axis-angle in the body frame (y up, the person
                               faces +z), 3 values per bone in `AnnyBody.joint_names` order:
                               exactly `AnnyBody.forward`'s `pose` (0 = Anny's reference pose)
    fps      ()       float    frames per second (default 30)
    transl   (T, 3)   float32  optional root translation in metres, body frame
    bones    (104,)   str      optional bone names; when present they must equal joint_names

`python -m zoo.export.motion walk --out walk.npz [--frames 60 --stride 25]` writes a walk cycle
(the synthetic people's walk controls, `BodyModel.pose_from_controls`).

AMASS-style SMPL-X / SMPL+H files (`poses`, `trans`, `mocap_framerate`; `zoo.export.amass`) are read
too: `load_motion` retargets them onto Anny (or poses an `SMPLXBody` with them), and
`python -m zoo.export.motion retarget AMASS.npz --out anny.npz [--fps 30 --smplx-model SMPLX_NEUTRAL.npz]`
writes the retargeted motion in the format above.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from zoo.export.amass import is_amass, load_amass


def walk_cycle(body, frames: int = 60, stride_deg: float = 25.0, arm_swing_deg: float = 20.0,
               forward_speed: float = 0.0, fps: float = 30.0) -> dict[str, np.ndarray]:
    """One walk cycle as a motion dict (keys of the file format). `forward_speed` in m/s moves
    the root along +z (0: walking on the spot)."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    phase = torch.arange(frames, dtype=torch.float64) * 360.0 / frames
    pose = body.pose_from_controls(frames, walk_phase_deg=phase, stride_deg=stride_deg, arm_swing_deg=arm_swing_deg)
    transl = np.zeros((frames, 3), np.float32)
    transl[:, 2] = forward_speed * np.arange(frames) / fps
    return {"pose": pose.numpy().astype(np.float32), "fps": np.float64(fps), "transl": transl,
            "bones": np.asarray(body.joint_names)}


def save_motion(path: str | Path, motion: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **motion)
    return path


def load_motion(path: str | Path, body, fps: float = 30.0, smplx_model: str | Path | None = None,
                up_axis: str = "z") -> dict[str, torch.Tensor | float]:
    """Read and validate a motion file for `body`: pose (T, P), fps, transl (T, 3) or None.

    An AMASS-style file is retargeted (`zoo.export.amass.load_amass`, resampled to about `fps`,
    its world's `up_axis`, the SMPL-X source skeleton from `smplx_model` when given); a file in
    the format above is read as it is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file not found: {path} (format: zoo.export.motion)")
    if is_amass(path):
        return load_amass(path, body, fps=fps, up_axis=up_axis, smplx_model=smplx_model)
    with np.load(path, allow_pickle=False) as data:
        if "pose" not in data.files:
            raise ValueError(f"{path} has no 'pose' array (found {data.files}); see zoo.export.motion for the format")
        pose = np.asarray(data["pose"], dtype=np.float32)
        fps = float(data["fps"]) if "fps" in data.files else 30.0
        transl = np.asarray(data["transl"], dtype=np.float32) if "transl" in data.files else None
        bones = [str(b) for b in data["bones"]] if "bones" in data.files else None
    if pose.ndim != 2 or pose.shape[1] != body.num_pose_params:
        smplx_sized = pose.shape[-1] in (63, 66, 69, 72, 156, 165)
        hint = " (a SMPL-X body_pose has 63 values: this file is for SMPL-X, not Anny)" if smplx_sized else ""
        raise ValueError(f"{path}: pose must be (T, {body.num_pose_params}) for Anny, got {pose.shape}{hint}")
    if bones is not None and bones != list(body.joint_names):
        raise ValueError(f"{path}: its bones do not match AnnyBody.joint_names (first differences: "
                         f"{[(a, b) for a, b in zip(bones, body.joint_names) if a != b][:3]})")
    if transl is not None and transl.shape != (pose.shape[0], 3):
        raise ValueError(f"{path}: transl must be ({pose.shape[0]}, 3), got {transl.shape}")
    if not np.isfinite(pose).all() or fps <= 0:
        raise ValueError(f"{path}: pose must be finite and fps positive (fps={fps})")
    return {"pose": torch.from_numpy(pose), "fps": fps, "transl": None if transl is None else torch.from_numpy(transl)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.export.motion", description="Write a motion file for Anny.")
    sub = parser.add_subparsers(dest="command", required=True)
    walk = sub.add_parser("walk", help="a walk cycle")
    walk.add_argument("--out", type=Path, required=True)
    walk.add_argument("--frames", type=int, default=60)
    walk.add_argument("--stride", type=float, default=25.0, help="hip swing amplitude, degrees")
    walk.add_argument("--fps", type=float, default=30.0)
    retarget = sub.add_parser("retarget", help="an AMASS-style SMPL-X / SMPL+H .npz retargeted onto Anny")
    retarget.add_argument("amass", type=Path)
    retarget.add_argument("--out", type=Path, required=True)
    retarget.add_argument("--fps", type=float, default=30.0, help="resample to about this frame rate")
    retarget.add_argument("--up-axis", choices=("z", "y"), default="z", help="the file's world up axis (AMASS: z)")
    retarget.add_argument("--smplx-model", type=Path, default=None,
                          help="your SMPL-X model file, for the source skeleton (default: an idealised T-pose)")
    args = parser.parse_args(argv)
    from zoo.body import AnnyBody

    body = AnnyBody().eval()
    if args.command == "walk":
        save_motion(args.out, walk_cycle(body, args.frames, args.stride, fps=args.fps))
        return 0
    if not is_amass(args.amass):
        parser.error(f"{args.amass} is not an AMASS-style file (no 'poses' array)")
    motion = load_amass(args.amass, body, args.fps, args.up_axis, args.smplx_model)
    save_motion(args.out, {"pose": motion["pose"].numpy(), "fps": np.float64(motion["fps"]),
                           "transl": motion["transl"].numpy(), "bones": np.asarray(body.joint_names)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
