"""Pose-sequence files that drive an Anny avatar, and a walk cycle to start from.

Format (`.npz`, numpy's zip of arrays), one row per frame:

    pose     (T, 312) float32  Anny bone rotations, axis-angle in the body frame (y up, the person
                               faces +z), 3 values per bone in `AnnyBody.joint_names` order:
                               exactly `AnnyBody.forward`'s `pose` (0 = Anny's reference pose)
    fps      ()       float    frames per second (default 30)
    transl   (T, 3)   float32  optional root translation in metres, body frame
    bones    (104,)   str      optional bone names; when present they must equal joint_names

`python -m zoo.export.motion walk --out walk.npz [--frames 60 --stride 25]` writes a walk cycle
(the synthetic people's walk controls, `BodyModel.pose_from_controls`). SMPL-X (AMASS-style) motion
files need the SMPL-X body, which is not part of this command.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


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


def load_motion(path: str | Path, body) -> dict[str, torch.Tensor | float]:
    """Read and validate a motion file for `body`: pose (T, P), fps, transl (T, 3) or None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file not found: {path} (format: zoo.export.motion)")
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
    args = parser.parse_args(argv)
    from zoo.body import AnnyBody

    save_motion(args.out, walk_cycle(AnnyBody().eval(), args.frames, args.stride, fps=args.fps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
