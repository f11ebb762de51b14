"""SMPLBody / SMPLXBody on tiny model files the tests write in the official formats."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.body.synthetic_smpl import write_smpl, write_uv_obj
from zoo.body import SMPLBody, SMPLXBody
from zoo.body.smpl_body import SMPL_JOINT_NAMES, SMPLX_JOINT_NAMES


def test_uvs_are_matched_to_model_faces_from_a_shuffled_obj(smpl_body, smplx_body, smpl_files):
    for body, kind in ((smpl_body, "smpl"), (smplx_body, "smplx")):
        expected = torch.as_tensor(smpl_files[kind]["corner_uvs"], dtype=torch.float32)
        torch.testing.assert_close(body.corner_uvs, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(body.faces, torch.as_tensor(smpl_files[kind]["data"]["f"].astype(np.int64)))


def test_npz_model_and_npz_uv_formats(tmp_path, smpl_files):
    data = smpl_files["smpl"]["data"]
    np.savez(tmp_path / "smpl.npz", **data)
    corner = smpl_files["smpl"]["corner_uvs"]  # v down; store v up like an OBJ would
    vt = np.stack([corner[..., 0], 1.0 - corner[..., 1]], axis=-1).reshape(-1, 2)
    np.savez(tmp_path / "uv.npz", vt=vt, ft=np.arange(len(vt)).reshape(-1, 3))
    body = SMPLBody(str(tmp_path / "smpl.npz"), str(tmp_path / "uv.npz"), num_betas=4)
    assert body.num_betas == 4
    torch.testing.assert_close(body.corner_uvs, torch.as_tensor(corner, dtype=torch.float32), atol=1e-6, rtol=0)


def test_part_labels_come_from_the_skinning_weights(smpl_body, smplx_body):
    for body, names in ((smpl_body, SMPL_JOINT_NAMES), (smplx_body, SMPLX_JOINT_NAMES)):
        assert body.fine_part_names == names
        # Each cube of 12 triangles is skinned to one joint only.
        assert torch.equal(body.face_parts_fine, torch.arange(len(names)).repeat_interleave(12))
        coarse = dict(zip(names, body.face_parts[::12].tolist()))
        assert coarse["head"] == coarse["neck"] == 1 and coarse["spine2"] == coarse["left_collar"] == 2
        assert coarse["left_shoulder"] == 3 and coarse["right_elbow"] == coarse["left_wrist"] == 4
        assert coarse["left_hip"] == 5 and coarse["right_knee"] == 6 and coarse["left_foot"] == 7
    assert dict(zip(SMPLX_JOINT_NAMES, smplx_body.face_parts[::12].tolist()))["right_thumb3"] == 4


def _smplx_reference(module_cls, path, **kwargs):
    """smplx's own forward, its extra surface joints pointed at vertex 0 (the tiny mesh is small)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        model = module_cls(model_path=path, **kwargs)
    model.vertex_joint_selector.extra_joints_idxs.zero_()
    return model


def test_matches_smplx_forward(smpl_body, smplx_body, smpl_files):
    import smplx

    torch.manual_seed(0)
    betas, pose = torch.randn(2, 10) * 0.5, torch.randn(2, 72) * 0.3
    ref = _smplx_reference(smplx.SMPL, smpl_files["smpl"]["model"])(betas=betas, global_orient=pose[:, :3],
                                                                     body_pose=pose[:, 3:])
    ours = smpl_body(betas, pose)
    torch.testing.assert_close(ours.vertices, ref.vertices - ref.joints[:, :1], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, (ref.joints - ref.joints[:, :1])[:, :24], atol=1e-5, rtol=0)

    pose = torch.randn(2, 66) * 0.3
    extra = {"left_hand_pose": torch.randn(2, 6), "right_hand_pose": torch.randn(2, 6),
             "jaw_pose": torch.randn(2, 3) * 0.2, "expression": torch.randn(2, 10)}
    ref = _smplx_reference(smplx.SMPLX, smpl_files["smplx"]["model"], ext="npz", batch_size=2)(
        betas=betas, global_orient=pose[:, :3], body_pose=pose[:, 3:], **extra)
    ours = smplx_body(betas, pose, **extra)
    torch.testing.assert_close(ours.vertices, ref.vertices - ref.joints[:, :1], atol=1e-5, rtol=0)
    split = smplx_body(betas, global_orient=pose[:, :3], body_pose=pose[:, 3:], **extra)
    torch.testing.assert_close(split.vertices, ours.vertices)


def test_smplx_rejects_vposer_latents_and_bad_extras(smplx_body, smpl_body):
    with pytest.raises(ValueError, match="VPoser"):
        smplx_body(body_pose=torch.zeros(1, 32))
    with pytest.raises(ValueError, match="VPoser"):
        smplx_body(pose=torch.zeros(1, 35))
    with pytest.raises(ValueError, match=r"\(B, 63\), got \(1, 69\).*SMPL body_pose"):
        smplx_body(body_pose=torch.zeros(1, 69))
    with pytest.raises(ValueError, match=r"\(B, 69\), got \(1, 63\).*SMPL-X"):
        smpl_body(body_pose=torch.zeros(1, 63))
    with pytest.raises(ValueError, match=r"left_hand_pose must be \(B, 6\), got \(1, 45\)"):
        smplx_body(left_hand_pose=torch.zeros(1, 45))
    with pytest.raises(ValueError, match="not both"):
        smplx_body(pose=torch.zeros(1, 66), body_pose=torch.zeros(1, 63))
    with pytest.raises(TypeError, match="transl"):
        smpl_body(transl=torch.zeros(1, 3))


def test_missing_files_say_what_to_download_and_where(tmp_path, smpl_files, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    with pytest.raises(FileNotFoundError) as err:
        SMPLBody(uv_path=smpl_files["smpl"]["uv"])
    message = str(err.value)
    expected = tmp_path / "zoo_home" / "body" / "smpl" / "SMPL_NEUTRAL.pkl"
    assert str(expected) in message and "smpl.is.tue.mpg.de" in message and "licen" in message
    assert "model_path" in message
    with pytest.raises(FileNotFoundError) as err:
        SMPLXBody(model_path=smpl_files["smplx"]["model"], uv_path=str(tmp_path / "smplx_uv.obj"))
    assert "smplx_uv.obj" in str(err.value) and "smpl-x.is.tue.mpg.de" in str(err.value)
    assert "uv_path" in str(err.value)
    with pytest.raises(FileNotFoundError, match="SMPLX_FEMALE.npz"):
        SMPLXBody(gender="female", uv_path=smpl_files["smplx"]["uv"])


def test_wrong_files_and_arguments_are_rejected(tmp_path, smpl_files):
    with pytest.raises(ValueError, match="missing keys"):
        SMPLXBody(smpl_files["smpl"]["model"], smpl_files["smplx"]["uv"])
    with pytest.raises(ValueError, match="660 triangles, the SMPL model has 288"):
        SMPLBody(smpl_files["smpl"]["model"], smpl_files["smplx"]["uv"])
    lines = open(smpl_files["smpl"]["uv"], encoding="utf-8").read().splitlines()
    first_face = next(i for i, line in enumerate(lines) if line.startswith("f "))
    lines[first_face] = "f 1/1 2/2 100/3"
    (tmp_path / "broken.obj").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no triangle over vertices"):
        SMPLBody(smpl_files["smpl"]["model"], str(tmp_path / "broken.obj"))
    with pytest.raises(ValueError, match="num_betas"):
        SMPLBody(smpl_files["smpl"]["model"], smpl_files["smpl"]["uv"], num_betas=11)
    with pytest.raises(ValueError, match="gender"):
        SMPLBody(smpl_files["smpl"]["model"], smpl_files["smpl"]["uv"], gender="other")
    data = write_smpl(tmp_path / "odd.pkl")
    write_uv_obj(tmp_path / "odd.obj", data["v_template"], np.asarray(data["f"], dtype=np.int64))
    assert SMPLBody(str(tmp_path / "odd.pkl"), str(tmp_path / "odd.obj")).faces.shape == (288, 3)
