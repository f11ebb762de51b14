"""The BodyModel contract, checked on every backend (Anny, tiny SMPL, tiny SMPL-X)."""
from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_save_load_round_trip
from zoo.body import COARSE_PARTS, BodyOutput
from zoo.body.uv import rasterize_uv_mask

BACKENDS = ["anny_body", "smpl_body", "smplx_body"]


@pytest.fixture(params=BACKENDS)
def body(request):
    return request.getfixturevalue(request.param)


def _joint(body, out, role: str, side: int) -> torch.Tensor:
    return out.joints[:, getattr(body.control_rig, role)[side]]


@pytest.mark.parametrize("batch", [1, 3])
def test_output_and_buffer_shapes(body, batch):
    torch.manual_seed(0)
    betas = 0.1 * torch.randn(batch, body.num_betas)
    pose = body.pose_from_controls(batch, walk_phase_deg=torch.linspace(0, 270, batch), stride_deg=20.0)
    assert pose.shape == (batch, body.num_pose_params) and pose.dtype == torch.float32
    out = body(betas, pose)
    assert isinstance(out, BodyOutput)
    n_verts, n_faces = body.template_vertices.shape[0], body.faces.shape[0]
    assert out.vertices.shape == (batch, n_verts, 3) and out.vertices.dtype == torch.float32
    assert out.joints.shape == (batch, len(body.joint_names), 3)
    assert torch.isfinite(out.vertices).all()
    assert body.faces.shape == (n_faces, 3) and body.faces.dtype == torch.int64
    assert 0 <= body.faces.min() and body.faces.max() < n_verts
    assert body.corner_uvs.shape == (n_faces, 3, 2) and body.corner_uvs.dtype == torch.float32
    assert body.corner_uvs.min() >= 0.0 and body.corner_uvs.max() <= 1.0
    assert body.face_parts.shape == (n_faces,) and body.face_parts.dtype == torch.int64
    assert set(body.face_parts.unique().tolist()) == set(COARSE_PARTS)  # every face labelled, all 7 used
    assert body.face_parts_fine.shape == (n_faces,)
    assert 0 <= body.face_parts_fine.min() and body.face_parts_fine.max() < len(body.fine_part_names)
    assert body.template_vertices.shape == (n_verts, 3)
    assert body.num_pose_params % 3 == 0 and len(body.joint_names_posed) == body.num_pose_params // 3


def test_template_is_the_zero_output_with_root_at_origin(body):
    zero = body(torch.zeros(2, body.num_betas), torch.zeros(2, body.num_pose_params))
    default = body()
    for out in (zero, default):
        torch.testing.assert_close(out.vertices[0], body.template_vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(zero.vertices[0], zero.vertices[1])
    torch.testing.assert_close(zero.joints[:, 0], torch.zeros(2, 3), atol=1e-5, rtol=0)
    # Body frame: y up (head above the feet), metres (a body is 0.3 to 2.5 m tall).
    head, ankle = body.template_joints[body.control_rig.neck[-1]], body.template_joints[body.control_rig.ankle[0]]
    assert head[1] > 0.3 > ankle[1] + 0.6
    assert 0.3 < body.template_vertices[:, 1].max() - body.template_vertices[:, 1].min() < 2.5
    # Left on +x, facing +z: the face region lies in front of the head joint.
    assert body.template_joints[body.control_rig.hip[0], 0] > 0 > body.template_joints[body.control_rig.hip[1], 0]
    face_centre = body.template_vertices[body.faces[body.region_faces("face")]].mean(dim=(0, 1))
    assert face_centre[2] > body.template_joints[body.control_rig.neck[-1], 2]


def test_walk_controls_move_legs_and_arms_the_right_way(body):
    stand = body(pose=body.pose_from_controls())
    walk = body(pose=body.pose_from_controls(walk_phase_deg=90.0, stride_deg=30.0, arm_swing_deg=25.0))
    dz = lambda role, side: (_joint(body, walk, role, side) - _joint(body, stand, role, side))[0, 2]  # noqa: E731
    assert dz("ankle", 0) > 0.1 and dz("ankle", 1) < -0.1  # left leg forward, right leg back
    assert dz("wrist", 1) > 0.03 and dz("wrist", 0) < -0.03  # arms swing opposite to the legs
    # Knee flexion folds the shin backward: the ankle goes behind the knee.
    bent = body(pose=body.pose_from_controls(knee_bend_deg=60.0))
    shin = _joint(body, bent, "ankle", 0) - _joint(body, bent, "knee", 0)
    assert shin[0, 2] < -0.5 * shin[0].norm()


def test_arm_elbow_twist_and_head_controls(body):
    down = body(pose=body.pose_from_controls(arm_abduction_deg=0.0, elbow_bend_deg=0.0))
    t_pose = body(pose=body.pose_from_controls(arm_abduction_deg=90.0, elbow_bend_deg=0.0))
    for side in (0, 1):
        shoulder, wrist = _joint(body, down, "shoulder", side)[0], _joint(body, down, "wrist", side)[0]
        arm = (wrist - shoulder) / (wrist - shoulder).norm()
        assert arm[1] < -0.95  # straight down
        shoulder, wrist = _joint(body, t_pose, "shoulder", side)[0], _joint(body, t_pose, "wrist", side)[0]
        arm = (wrist - shoulder) / (wrist - shoulder).norm()
        assert abs(arm[1]) < 0.2 and arm[0] * (1 if side == 0 else -1) > 0.95  # sideways, outwards
    flexed = body(pose=body.pose_from_controls(arm_abduction_deg=0.0, elbow_bend_deg=90.0))
    forearm = _joint(body, flexed, "wrist", 0) - _joint(body, flexed, "elbow", 0)
    assert forearm[0, 2] > 0.9 * forearm[0].norm()  # forearm points forward
    stand = body(pose=body.pose_from_controls())
    twist = body(pose=body.pose_from_controls(torso_twist_deg=40.0))
    assert (_joint(body, twist, "shoulder", 0) - _joint(body, stand, "shoulder", 0))[0, 2] < -0.02  # turns left
    turned = body(pose=body.pose_from_controls(head_turn_deg=60.0))
    face = body.region_faces("face")
    shift = turned.vertices[0, body.faces[face]].mean(dim=(0, 1)) - stand.vertices[0, body.faces[face]].mean(dim=(0, 1))
    assert shift[0] > 0.02  # the face turns towards the person's left (+x)


def test_gradients_flow_to_betas_and_pose(body):
    betas = torch.zeros(2, body.num_betas, requires_grad=True)
    pose = body.pose_from_controls(2, stride_deg=10.0).requires_grad_(True)
    out = body(betas, pose)
    (out.vertices**2).mean().backward()
    for name, tensor in (("betas", betas), ("pose", pose)):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["betas", "pose"])
def test_bad_inputs_raise_value_errors_naming_the_shape(body, kind):
    width = body.num_betas if kind == "betas" else body.num_pose_params
    bad = [torch.zeros(2, width + 1), torch.zeros(width), torch.zeros(2, width, 1)]
    for value in bad:
        with pytest.raises(ValueError, match=str(tuple(value.shape)).replace("(", r"\(").replace(")", r"\)")):
            body(**{kind: value})
    with pytest.raises(ValueError, match="floating"):
        body(**{kind: torch.zeros(2, width, dtype=torch.int64)})
    with pytest.raises(ValueError, match="torch.Tensor"):
        body(**{kind: [[0.0] * width]})
    with pytest.raises(ValueError, match="batch sizes"):
        body(torch.zeros(2, body.num_betas), torch.zeros(3, body.num_pose_params))
    with pytest.raises(ValueError, match="batch size"):
        body.pose_from_controls(2, walk_phase_deg=torch.zeros(3))


def test_uv_region_masks(body):
    full = rasterize_uv_mask(body.corner_uvs, 64)
    both = body.uv_region_mask("face_hands", size=64)
    assert both.shape == (64, 64) and both.dtype == torch.bool
    assert both.any() and not (both & ~full).any()
    face, hands = body.uv_region_mask("face", 64), body.uv_region_mask("hands", 64)
    assert face.any() and hands.any() and torch.equal(both, face | hands)
    assert body.uv_region_mask("feet", 64).any()
    with pytest.raises(ValueError, match="unknown region"):
        body.uv_region_mask("tail")


def test_save_load_round_trip(body, tmp_path):
    pose = body.pose_from_controls(2, stride_deg=15.0, walk_phase_deg=torch.tensor([0.0, 120.0]))
    loaded = assert_save_load_round_trip(body, lambda m: m(torch.zeros(2, m.num_betas), pose), tmp_path)
    assert torch.equal(loaded.faces, body.faces) and torch.equal(loaded.face_parts, body.face_parts)
