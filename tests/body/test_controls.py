"""Rotation helpers of the pose controls against torch's matrix exponential."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.body.controls import ControlRig, axis_angle_to_matrix, controls_to_rotations, matrix_to_axis_angle


def _expm(rotvec: torch.Tensor) -> torch.Tensor:
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    return torch.linalg.matrix_exp(skew)


def test_axis_angle_round_trip_against_matrix_exponential():
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(200, 1, generator=g, dtype=torch.float64) * (math.pi - 0.05)
    rotvec = torch.cat([axis * angle, torch.zeros(1, 3, dtype=torch.float64)])
    matrix = axis_angle_to_matrix(rotvec)
    torch.testing.assert_close(matrix, _expm(rotvec), atol=1e-12, rtol=0)
    torch.testing.assert_close(matrix_to_axis_angle(matrix), rotvec, atol=1e-9, rtol=0)


def test_axis_angle_gradient_is_finite_at_zero():
    rotvec = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(rotvec).sum().backward()
    assert torch.isfinite(rotvec.grad).all()


def _t_pose_rig():
    # pelvis 0, hips 1/2, knees 3/4, ankles 5/6, spine 7, neck 8, shoulders 9/10, elbows 11/12, wrists 13/14
    joints = torch.tensor([[0, 0, 0], [0.1, -0.1, 0], [-0.1, -0.1, 0], [0.1, -0.5, 0], [-0.1, -0.5, 0],
                           [0.1, -0.9, 0], [-0.1, -0.9, 0], [0, 0.2, 0], [0, 0.5, 0], [0.2, 0.45, 0],
                           [-0.2, 0.45, 0], [0.45, 0.45, 0], [-0.45, 0.45, 0], [0.7, 0.45, 0], [-0.7, 0.45, 0]],
                          dtype=torch.float64)
    rig = ControlRig(hip=(1, 2), knee=(3, 4), ankle=(5, 6), shoulder=(9, 10), elbow=(11, 12), wrist=(13, 14),
                     spine=(7,), neck=(8,))
    return rig, joints


def _controls(**overrides):
    values = dict(walk_phase_deg=0.0, stride_deg=0.0, knee_swing_deg=0.0, knee_bend_deg=0.0, arm_swing_deg=0.0,
                  arm_abduction_deg=90.0, elbow_bend_deg=0.0, torso_twist_deg=0.0, head_turn_deg=0.0)
    values.update(overrides)
    return values


def test_neutral_controls_on_a_t_pose_rig_are_the_identity():
    rig, joints = _t_pose_rig()
    rot = controls_to_rotations(rig, joints, 15, **_controls())
    torch.testing.assert_close(rot, torch.eye(3, dtype=torch.float64).expand(1, 15, 3, 3), atol=1e-12, rtol=0)


def test_hip_and_shoulder_rotations_point_the_limbs_as_documented():
    rig, joints = _t_pose_rig()
    rot = controls_to_rotations(rig, joints, 15, **_controls(walk_phase_deg=90.0, stride_deg=30.0,
                                                             arm_abduction_deg=0.0))
    down = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    left_thigh = rot[0, 1] @ down
    assert left_thigh[2] == pytest.approx(math.sin(math.radians(30)), abs=1e-9)  # forward
    assert (rot[0, 2] @ down)[2] == pytest.approx(-math.sin(math.radians(30)), abs=1e-9)  # right leg back
    left_arm = rot[0, 9] @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(left_arm, down, atol=1e-9, rtol=0)  # T-pose arm lowered to the side


def test_controls_validate_batches():
    rig, joints = _t_pose_rig()
    out = controls_to_rotations(rig, joints, 15, batch_size=4, **_controls(stride_deg=torch.tensor(10.0)))
    assert out.shape == (4, 15, 3, 3)
    with pytest.raises(ValueError, match="float or a"):
        controls_to_rotations(rig, joints, 15, **_controls(stride_deg=torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="finite"):
        controls_to_rotations(rig, joints, 15, **_controls(stride_deg=float("nan")))
