"""Semantic pose controls (walk, arm swing, A-pose, twist, head turn) -> per-joint rotations.

The synthetic data generator needs plausible, varied poses without a motion dataset. Every
backend exposes its pose as one axis-angle block per joint, each block being the joint's
rotation about BODY-frame axes (y up, the person faces +z, their left is +x) applied at the
joint in the zero pose and carried along by the parent joints. SMPL / SMPL-X blocks mean exactly
that (their rest joint frames are the body axes) and `AnnyBody` converts its own rotations to it.
So one rig description (`ControlRig`: which joint block moves the thigh, the shin, ...) and the
zero-pose joint positions are all that is needed to turn controls into a pose, whatever the
backend.

Angles are degrees. Conventions (for a person seen from the front):
- hip flexion > 0: the thigh swings forward (the foot moves +z); knee flexion > 0: the shin
  folds backward; elbow flexion > 0: the forearm folds forward.
- walk: at `walk_phase_deg` = 90 the left leg is fully forward (hip flexion = +stride) and the
  right leg back; each knee bends during its forward swing; each arm swings opposite to the leg
  on its side.
- `arm_abduction_deg` and `elbow_bend_deg` are absolute target angles (measured in the zero
  pose: 0 = arm straight down along the body, 90 = T-pose; 0 = straight elbow), whatever the
  backend's rest pose (SMPL rests in a T-pose, Anny in an A-pose with bent elbows).
- `knee_bend_deg` is the absolute knee flexion when standing; `knee_swing_deg` is added to it
  while a leg swings forward (scaled by cos(leg phase) where positive: a leg bends most as it
  passes under the body).
- twist / head turn > 0 turn the upper body / head towards the person's left (about +y).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NATURAL_ARM_ABDUCTION_DEG = 12.0  # arms hang slightly away from the hips when standing
NATURAL_ELBOW_BEND_DEG = 8.0


@dataclass(frozen=True)
class ControlRig:
    """Pose-block indices of the joints the controls drive (each side is a (left, right) pair).

    `segments` name the joint whose position ends each bone: hip -> knee -> ankle,
    shoulder -> elbow -> wrist (pose blocks and joints share indices in every backend).
    """

    hip: tuple[int, int]
    knee: tuple[int, int]
    ankle: tuple[int, int]
    shoulder: tuple[int, int]
    elbow: tuple[int, int]
    wrist: tuple[int, int]
    spine: tuple[int, ...]
    neck: tuple[int, ...]


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: (..., 3) axis-angle -> (..., 3, 3), smooth at zero."""
    angle = rotvec.norm(dim=-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = angle < 1e-8
    safe = torch.where(small, torch.ones_like(angle), angle)
    k = _skew(rotvec) / safe
    sin_term = torch.where(small, torch.ones_like(angle), torch.sin(safe) / safe) * safe
    cos_term = torch.where(small, 0.5 * angle**2, 1.0 - torch.cos(safe))
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand(k.shape)
    return eye + sin_term * k + cos_term * (k @ k)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 3) axis-angle; exact for angles below ~179 degrees."""
    skew = torch.stack([matrix[..., 2, 1] - matrix[..., 1, 2],
                        matrix[..., 0, 2] - matrix[..., 2, 0],
                        matrix[..., 1, 0] - matrix[..., 0, 1]], dim=-1)
    sin2 = skew.norm(dim=-1)  # 2 sin(angle)
    cos2 = matrix.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0  # 2 cos(angle)
    angle = torch.atan2(sin2, cos2)
    scale = torch.where(sin2 > 1e-8, angle / sin2.clamp(min=1e-12), torch.full_like(angle, 0.5))
    return skew * scale[..., None]


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(v[..., 0])
    return torch.stack([
        torch.stack([zero, -v[..., 2], v[..., 1]], dim=-1),
        torch.stack([v[..., 2], zero, -v[..., 0]], dim=-1),
        torch.stack([-v[..., 1], v[..., 0], zero], dim=-1),
    ], dim=-2)


def _rotation(axis: torch.Tensor, angle_rad: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations about a fixed unit axis (3,) by angles (B,)."""
    return axis_angle_to_matrix(axis[None] * angle_rad[:, None])


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp(min=1e-9)


def _signed_angle(a: torch.Tensor, b: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.dot(axis, torch.linalg.cross(a, b)), torch.dot(a, b))


def _batch(values: dict[str, float | torch.Tensor], batch_size: int | None) -> dict[str, torch.Tensor]:
    sizes = {k: v.numel() for k, v in values.items() if torch.is_tensor(v) and v.ndim > 0}
    for name, v in values.items():
        if torch.is_tensor(v) and v.ndim > 1:
            raise ValueError(f"{name} must be a float or a (B,) tensor, got shape {tuple(v.shape)}")
    lengths = set(sizes.values()) | ({batch_size} if batch_size is not None else set())
    lengths.discard(1)
    if len(lengths) > 1:
        raise ValueError(f"controls disagree on the batch size: {sizes} (batch_size={batch_size})")
    n = lengths.pop() if lengths else (batch_size or 1)
    out = {}
    for name, v in values.items():
        t = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got {v}")
        out[name] = t.expand(n) if t.numel() == 1 else t
    return out


def controls_to_rotations(rig: ControlRig, joints: torch.Tensor, num_blocks: int, batch_size: int | None = None,
                          **controls: float | torch.Tensor) -> torch.Tensor:
    """(B, num_blocks, 3, 3) per-block rotations (body axes) for the controls of `pose_from_controls`.

    Args:
        rig: which pose blocks the controls drive.
        joints: (J, 3) zero-pose joint positions in the body frame (J >= every index of `rig`).
        num_blocks: number of axis-angle blocks of the backend's pose vector.
    """
    c = _batch(controls, batch_size)
    joints = joints.detach().to(torch.float64, copy=True).cpu()
    deg = math.pi / 180.0
    n = next(iter(c.values())).shape[0]
    rot = torch.eye(3, dtype=torch.float64).repeat(n, num_blocks, 1, 1)
    z_axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    phase = c["walk_phase_deg"] * deg
    for side, sign, leg_phase in ((0, 1.0, phase), (1, -1.0, phase + math.pi)):
        hip, knee, ankle = rig.hip[side], rig.knee[side], rig.ankle[side]
        shoulder, elbow, wrist = rig.shoulder[side], rig.elbow[side], rig.wrist[side]
        # Legs: swing about the axis perpendicular to the thigh and the forward direction.
        thigh = _unit(joints[knee] - joints[hip])
        shin = _unit(joints[ankle] - joints[knee])
        swing = c["stride_deg"] * torch.sin(leg_phase) * deg
        rot[:, hip] = _rotation(_unit(torch.linalg.cross(thigh, z_axis)), swing)
        knee_axis = _unit(torch.linalg.cross(z_axis, thigh))
        rest_knee = _signed_angle(thigh, shin, knee_axis)
        bend = (c["knee_bend_deg"] + c["knee_swing_deg"] * torch.cos(leg_phase).clamp(min=0.0)) * deg
        rot[:, knee] = _rotation(knee_axis, bend - rest_knee)
        # Arms: absolute abduction in the frontal plane, then swing opposite to the same-side leg.
        upper = _unit(joints[elbow] - joints[shoulder])
        fore = _unit(joints[wrist] - joints[elbow])
        rest_abduction = torch.atan2(sign * upper[0], -upper[1])
        abduct = _rotation(z_axis, sign * (c["arm_abduction_deg"] * deg - rest_abduction))
        lowered = abduct @ upper
        swing_axes = torch.linalg.cross(lowered, z_axis.expand_as(lowered))
        swing_axes = swing_axes / swing_axes.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        arm_swing = -c["arm_swing_deg"] * torch.sin(leg_phase) * deg
        rot[:, shoulder] = axis_angle_to_matrix(swing_axes * arm_swing[:, None]) @ abduct
        elbow_axis = _unit(torch.linalg.cross(upper, z_axis))
        rest_elbow = _signed_angle(upper, fore, elbow_axis)
        rot[:, elbow] = _rotation(elbow_axis, c["elbow_bend_deg"] * deg - rest_elbow)
    for blocks, name in ((rig.spine, "torso_twist_deg"), (rig.neck, "head_turn_deg")):
        share = c[name] * deg / len(blocks)
        for b in blocks:
            rot[:, b] = _rotation(y_axis, share)
    return rot
