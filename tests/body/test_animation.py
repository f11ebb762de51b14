"""Walk cycle, turntable, user SMPL-X poses and the per-frame rasterisation of a sequence."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from zoo.body.animation import render_sequence, smplx_sequence, turntable, walk_cycle
from zoo.render import sample_texture


def _foot_z(body, vertices, side: float) -> float:
    """Mean z of the lowest vertices on one side (+1 left, -1 right)."""
    v = vertices[(vertices[:, 0] * side) > 0.05]
    low = v[v[:, 1] < v[:, 1].min() + 0.08]
    return float(low[:, 2].mean())


def test_walk_cycle_alternates_the_legs(anny_body):
    frames = walk_cycle(anny_body, frames=12, stride_deg=25.0)
    assert frames.shape == (12, *anny_body.template_vertices.shape)
    # Phase 90 (frame 3): left leg forward (+z); phase 270 (frame 9): right leg forward.
    assert _foot_z(anny_body, frames[3], 1.0) > _foot_z(anny_body, frames[3], -1.0) + 0.1
    assert _foot_z(anny_body, frames[9], -1.0) > _foot_z(anny_body, frames[9], 1.0) + 0.1
    with pytest.raises(ValueError, match="frames"):
        walk_cycle(anny_body, frames=0)


def test_turntable_shows_the_face_from_the_front_only(anny_body):
    size = 64
    vertices, yaws = turntable(anny_body, frames=4)
    assert yaws == [0.0, 90.0, 180.0, 270.0]
    out = render_sequence(vertices, anny_body.faces, anny_body.corner_uvs, yaws, size=size, fill=0.9)
    assert out["uv"].shape == (4, size, size, 2) and out["mask"].shape == (4, 1, size, size)
    face = anny_body.uv_region_mask("face", 64).float()[None, None].expand(4, -1, -1, -1)
    seen = sample_texture(face, out["uv"], out["mask"], mode="nearest").sum(dim=(1, 2, 3))
    assert seen[0] > 5 and seen[2] == 0
    rows = out["mask"][0, 0].any(dim=1).nonzero()[:, 0]
    assert abs((rows.max() - rows.min() + 1) / size - 0.9) < 0.08  # the body fills 90% of the height
    cols = out["mask"][0, 0].any(dim=0).nonzero()[:, 0].float()
    assert abs(float(cols.mean()) - (size - 1) / 2) < 0.1 * size
    with pytest.raises(ValueError, match="one yaw per frame"):
        render_sequence(vertices, anny_body.faces, anny_body.corner_uvs, yaws[:2])


def test_user_smplx_poses(smplx_body, smpl_files, tmp_path):
    from tests.datamodules.dinar_fixtures import frame_params, smplx_reference_vertices

    model = {"model_path": smpl_files["smplx"]["model"], "uv_path": smpl_files["smplx"]["uv"]}
    paths, references = [], []
    for k in range(2):
        params = frame_params(k)
        with open(tmp_path / f"{k}.pkl", "wb") as handle:
            pickle.dump(params, handle)
        paths.append(tmp_path / f"{k}.pkl")
        references.append(smplx_reference_vertices(model, params) - params["transl"])
    kept = smplx_sequence(smplx_body, paths, keep_global_orient=True)
    # Same shape up to the pelvis offset: compare edge vectors with the smplx package.
    for k in range(2):
        ours, ref = kept[k].numpy(), references[k]
        np.testing.assert_allclose(ours - ours[0], ref - ref[0], atol=1e-4)
    upright = smplx_sequence(smplx_body, paths)
    assert upright.shape == kept.shape
    head = smplx_body.face_parts == 1
    head_vertices = smplx_body.faces[head].unique()
    assert float(upright[0, head_vertices, 1].mean()) > 0.3  # the head is up, above the pelvis
    out = render_sequence(upright, smplx_body.faces, smplx_body.corner_uvs, [0.0, 30.0], size=32)
    assert out["mask"].sum() > 0
    with pytest.raises(ValueError, match="empty"):
        smplx_sequence(smplx_body, [])

