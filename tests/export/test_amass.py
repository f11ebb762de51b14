"""AMASS-style motion files (written here in AMASS's layout: poses, trans, mocap_framerate, betas,
gender) retargeted onto Anny, checked against SMPL-X forward kinematics computed by the `smplx`
package on a tiny SMPL-X model file: every mapped segment of the posed Anny must point where the
posed SMPL-X segment points."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.body.synthetic_smpl import write_smplx
from zoo.export import load_motion
from zoo.export.amass import read_amass, retarget_to_anny, smplx_pose, smplx_rest_joints
from zoo.export.motion import main as motion_main

# (SMPL joint, its segment's end joint) -> (Anny bone, the Anny bone heading that segment's end)
SEGMENTS = {(1, 4): ("upperleg01.L", "lowerleg01.L"), (2, 5): ("upperleg01.R", "lowerleg01.R"),
            (4, 7): ("lowerleg01.L", "foot.L"), (5, 8): ("lowerleg01.R", "foot.R"),
            (16, 18): ("upperarm01.L", "lowerarm01.L"), (17, 19): ("upperarm01.R", "lowerarm01.R"),
            (18, 20): ("lowerarm01.L", "wrist.L"), (19, 21): ("lowerarm01.R", "wrist.R"),
            (13, 16): ("clavicle.L", "upperarm01.L"), (12, 15): ("neck01", "head"), (6, 9): ("spine03", "spine02")}
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])


def write_amass(path, poses, trans, fps=120.0, rate_key="mocap_framerate"):
    """An AMASS SMPL+H / SMPL-X file as the AMASS release lays it out."""
    np.savez(path, poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("neutral"),
             dmpls=np.zeros((len(poses), 8)), **{rate_key: np.array(fps)})
    return path


def random_poses(frames, width, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=scale, size=(frames, width))
    poses[:, :3] = rng.normal(scale=1.0, size=(frames, 3))
    poses[0, :3] = [np.pi, 0.0, 0.0]  # a root turned by 180 degrees: axis-angle at its singular point
    return poses


def _directions(points, pairs):
    d = np.stack([points[..., b, :] - points[..., a, :] for a, b in pairs], axis=-2)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _smplx(path, batch_size):
    """smplx's own SMPL-X model (the independent reference)."""
    import contextlib
    import io

    import smplx

    with contextlib.redirect_stdout(io.StringIO()):
        model = smplx.SMPLX(str(path), ext="npz", batch_size=batch_size, use_face_contour=False)
    model.vertex_joint_selector.extra_joints_idxs.zero_()  # its surface joints index a full-size mesh
    return model


@pytest.fixture(scope="module")
def smplx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("amass") / "SMPLX_NEUTRAL.npz"
    write_smplx(path)
    return path


def test_retarget_matches_smplx_forward_kinematics(anny_body, smplx_model):
    poses = random_poses(6, 165)
    model = _smplx(smplx_model, batch_size=6)
    with torch.no_grad():
        out = model(global_orient=torch.tensor(poses[:, :3]).float(), body_pose=torch.tensor(poses[:, 3:66]).float(),
                    betas=torch.zeros(6, 10))
    smpl_joints = out.joints[:, :22].double().numpy() @ Z_UP_TO_Y_UP.T  # AMASS's z-up world -> y up
    pose = retarget_to_anny(poses, anny_body, smplx_rest_joints(smplx_model, np.zeros(16)), up_axis="z")
    assert pose.shape == (6, anny_body.num_pose_params)
    with torch.no_grad():
        anny = anny_body(pose=pose).joints.double().numpy()
    index = {n: i for i, n in enumerate(anny_body.joint_names)}
    want = _directions(smpl_joints, list(SEGMENTS))
    got = _directions(anny, [(index[a], index[b]) for a, b in SEGMENTS.values()])
    angle = np.degrees(np.arccos(np.clip((want * got).sum(-1), -1, 1)))
    assert angle.max() < 0.05, angle.max(axis=0)


def test_rest_pose_of_the_idealised_skeleton_is_a_t_pose(anny_body):
    pose = retarget_to_anny(np.zeros((1, 66)), anny_body, up_axis="y")
    with torch.no_grad():
        joints = anny_body(pose=pose).joints[0].double().numpy()
    i = anny_body.joint_names.index
    for side, sign in (("L", 1.0), ("R", -1.0)):
        arm = joints[i(f"wrist.{side}")] - joints[i(f"upperarm01.{side}")]
        leg = joints[i(f"foot.{side}")] - joints[i(f"upperleg01.{side}")]
        np.testing.assert_allclose(arm / np.linalg.norm(arm), [sign, 0, 0], atol=1e-5)
        np.testing.assert_allclose(leg / np.linalg.norm(leg), [0, -1, 0], atol=1e-5)


def test_smplx_body_is_posed_as_smplx_poses_the_file(smplx_body, smplx_model):
    poses = random_poses(4, 165, seed=1)
    model = _smplx(smplx_model, batch_size=4)
    with torch.no_grad():
        ref = model(global_orient=torch.tensor(poses[:, :3]).float(), body_pose=torch.tensor(poses[:, 3:66]).float())
        ours = smplx_body(pose=smplx_pose(poses)).vertices.double().numpy()
    ref_v = (ref.vertices - ref.joints[:, :1]).double().numpy() @ Z_UP_TO_Y_UP.T
    np.testing.assert_allclose(ours, ref_v, atol=1e-5)


def test_load_motion_reads_amass_files(anny_body, tmp_path):
    poses = random_poses(48, 156)  # SMPL+H width
    trans = np.cumsum(np.full((48, 3), [0.0, 0.01, 0.0]), axis=0) + [1.0, 2.0, 0.9]  # walking along +y, z up
    path = write_amass(tmp_path / "walk_poses.npz", poses, trans, fps=120.0)
    motion = load_motion(path, anny_body, fps=30.0)
    assert motion["pose"].shape == (12, anny_body.num_pose_params) and motion["fps"] == 30.0
    # every 4th frame; the root moves along the body frame's -z (AMASS +y), starting at the origin
    np.testing.assert_allclose(motion["transl"][:, 2].numpy(), -0.01 * np.arange(0, 48, 4), atol=1e-6)
    np.testing.assert_allclose(motion["transl"][:, :2].numpy(), 0.0, atol=1e-6)
    sx = write_amass(tmp_path / "smplx_poses.npz", random_poses(10, 165), np.zeros((10, 3)), fps=60.0,
                     rate_key="mocap_frame_rate")
    assert read_amass(sx, fps=None)["poses"].shape == (10, 66) and read_amass(sx, fps=30)["fps"] == 30.0


def test_bad_amass_files_say_what_is_wrong(anny_body, tmp_path):
    np.savez(tmp_path / "no_rate.npz", poses=np.zeros((3, 156)), trans=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mocap_framerate"):
        read_amass(tmp_path / "no_rate.npz")
    write_amass(tmp_path / "narrow.npz", np.zeros((3, 30)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="J >= 22"):
        read_amass(tmp_path / "narrow.npz")
    write_amass(tmp_path / "trans.npz", np.zeros((3, 156)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="trans must be"):
        read_amass(tmp_path / "trans.npz")
    with pytest.raises(ValueError, match="up_axis"):
        retarget_to_anny(np.zeros((1, 66)), anny_body, up_axis="x")


def test_retarget_command_writes_an_anny_motion_file(anny_body, tmp_path):
    src = write_amass(tmp_path / "amass.npz", random_poses(8, 156), np.zeros((8, 3)), fps=60.0)
    assert motion_main(["retarget", str(src), "--out", str(tmp_path / "anny.npz"), "--fps", "30"]) == 0
    motion = load_motion(tmp_path / "anny.npz", anny_body)
    np.testing.assert_allclose(motion["pose"].numpy(), load_motion(src, anny_body)["pose"].numpy(), atol=1e-6)
    assert motion["pose"].shape[0] == 4
