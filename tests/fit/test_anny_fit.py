"""The Anny fit recovers a known body from its exact keypoints and silhouette; fit files load in
the image-folder loader."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.fit.anny_fit import JOINT_KEYPOINTS, FitSettings, distance_outside, fit_body
from zoo.fit.io import read_fit_json, write_fit
from zoo.fit.synthetic import render_photo
from zoo.preprocess.interfaces import Box, Keypoints


def test_distance_outside_against_brute_force():
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[10:20, 5:12] = True
    mask[30, 30] = True
    dist = distance_outside(mask, size=40)
    inside = torch.nonzero(mask).double()
    for y, x in [(0, 0), (15, 8), (25, 25), (39, 39), (10, 30)]:
        expected = (inside - torch.tensor([y, x], dtype=torch.float64)).norm(dim=1).min()
        assert float(dist[y, x]) == pytest.approx(float(expected), abs=1e-4)


def _truth_keypoints(body, photo):
    uvw = photo.joints @ photo.K.T
    xy = (uvw[:, :2] / uvw[:, 2:]).numpy()
    names = list(JOINT_KEYPOINTS)
    points = np.stack([xy[body.joint_names.index(JOINT_KEYPOINTS[n])] for n in names])
    return Keypoints(tuple(names), points, np.ones(len(names)), Box(0, 0, 1, 1))


@pytest.fixture(scope="module")
def known(anny_body):
    body = anny_body
    betas = body.betas_from_phenotype(weight=0.6, height=0.4)
    pose = body.pose_from_controls(1, walk_phase_deg=90, stride_deg=20, arm_swing_deg=25, arm_abduction_deg=25,
                                   elbow_bend_deg=35)
    photo = render_photo(body, betas, pose, torch.full((3, 8, 8), 0.5), (256, 256), yaw_deg=10.0, fill=0.8,
                         distance=20.0)
    return photo


def test_fit_recovers_a_known_pose(anny_body, known):
    settings = FitSettings(focal=float(known.K[0, 0]), steps=(40, 80, 30))
    keypoints = _truth_keypoints(anny_body, known)
    result = fit_body(anny_body, keypoints, known.mask.astype(np.float32), settings)
    assert result.keypoint_px < 3.0, result.keypoint_px  # 256 px crop, body ~205 px high
    assert result.iou > 0.8, result.iou
    # 3D: the fitted joints agree with the truth up to the depth ambiguity of one view.
    fitted = result.joints - result.joints[0]
    truth = known.joints - known.joints[0]
    idx = [anny_body.joint_names.index(b) for b in JOINT_KEYPOINTS.values()]
    err = (fitted[idx] - truth[idx])[:, :2].norm(dim=1).mean()
    assert err < 0.05, err  # metres, image-plane axes


def test_fit_needs_the_torso(anny_body, known):
    keypoints = _truth_keypoints(anny_body, known)
    keypoints.confidence[:] = 0
    with pytest.raises(ValueError, match="shoulders and hips"):
        fit_body(anny_body, keypoints, known.mask.astype(np.float32))


def test_written_fit_loads_in_the_image_folder_loader(anny_body, known, tmp_path):
    from zoo.datamodules.image_folder import ImageFolderDataModule

    settings = FitSettings(focal=float(known.K[0, 0]), steps=(5, 5, 5))
    result = fit_body(anny_body, _truth_keypoints(anny_body, known), known.mask.astype(np.float32), settings)
    paths = write_fit(tmp_path, "person", known.image, known.mask.astype(np.float32), result, anny_body.faces)
    assert all(p.is_file() for p in paths.values())
    dm = ImageFolderDataModule(str(tmp_path), image_size=(128, 128), batch_size=1, body="anny")
    item = next(iter(dm.predict_dataloader()))
    # The loader renders the stored vertices with the stored camera: its silhouette is the fit's.
    with torch.no_grad():
        from zoo.render import rasterize

        half_K = result.K.clone()
        half_K[:2] *= 0.5
        half_K[:2, 2] = (result.K[:2, 2] + 0.5) * 0.5 - 0.5
        expected = rasterize(result.vertices[None], anny_body.faces, half_K[None], (128, 128)).mask.float()
    assert (item["render_mask"][0, 0] != expected[0]).float().mean() < 0.002
    assert item["mask"].shape == (1, 1, 128, 128) and item["uv"].shape == (1, 128, 128, 2)
    params = read_fit_json(paths["anny"])
    torch.testing.assert_close(params["pose"], result.pose)
    with pytest.raises(ValueError, match="body must be"):
        ImageFolderDataModule(str(tmp_path), body="smplx")


def test_smplx_fit_writes_dinar_parameters(smpl_files, tmp_path):
    """A fit of the user's SMPL-X body: its written DINAR pickle rebuilds the fitted camera-space mesh."""
    from zoo.body import SMPLXBody
    from zoo.body.smplx_params import read_smplx_params, smplx_camera_vertices
    from zoo.fit.anny_fit import fit_body
    from zoo.fit.io import write_smplx_fit

    body = SMPLXBody(smpl_files["smplx"]["model"], smpl_files["smplx"]["uv"]).eval()
    pose = body.pose_from_controls(1, elbow_bend_deg=30.0, arm_abduction_deg=30.0)
    betas = torch.zeros(1, body.num_betas)
    photo = render_photo(body, betas, pose, torch.full((3, 8, 8), 0.5), (128, 128), yaw_deg=20.0, fill=0.6,
                         distance=20.0)
    uvw = photo.joints @ photo.K.T
    xy = (uvw[:, :2] / uvw[:, 2:]).numpy()
    names = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hip", "right_hip", "left_knee",
             "right_knee")
    keypoints = Keypoints(names, np.stack([xy[body.joint_names.index(n)] for n in names]), np.ones(len(names)),
                          Box(0, 0, 1, 1))
    result = fit_body(body, keypoints, photo.mask.astype(np.float32),
                      FitSettings(focal=float(photo.K[0, 0]), steps=(20, 20, 5)))
    assert result.keypoint_px < 4.0, result.keypoint_px
    paths = write_smplx_fit(tmp_path, "person", photo.image, photo.mask.astype(np.float32), result, body)
    params = read_smplx_params(paths["smplx"])
    rebuilt = smplx_camera_vertices(body, params)[0]
    assert (rebuilt - result.vertices).abs().max() < 1e-4
