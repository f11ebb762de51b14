"""AnnyBody specifics (the interface itself is checked in test_interface.py)."""
from __future__ import annotations

import pytest
import torch

from zoo.body.anny_body import _coarse_of_bones, _triangles


def test_mesh_size_and_parameters(anny_body):
    assert anny_body.template_vertices.shape == (13718, 3) and anny_body.faces.shape == (27420, 3)
    assert anny_body.phenotype_labels == ["gender", "age", "muscle", "weight", "height", "proportions"]
    assert anny_body.num_betas == 6 and anny_body.num_pose_params == 3 * 104
    assert anny_body.joint_names[0] == "root" and anny_body.fine_part_names == anny_body.joint_names


def test_betas_are_centred_phenotype_sliders(anny_body):
    betas = anny_body.betas_from_phenotype(height=torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(betas[1], torch.zeros(6))
    heights = [float(v[:, 1].max() - v[:, 1].min()) for v in anny_body(betas).vertices]
    assert heights[0] < heights[1] < heights[2] and 1.4 < heights[1] < 2.0
    with pytest.raises(ValueError, match="unknown phenotype"):
        anny_body.betas_from_phenotype(shoe_size=0.3)
    with pytest.raises(TypeError, match="no extra"):
        anny_body(local_changes=torch.zeros(1, 3))


def test_parts_and_regions_follow_the_bones(anny_body):
    names = anny_body.fine_part_names
    bone_part = dict(zip([names[i] for i in anny_body.face_parts_fine.tolist()], anny_body.face_parts.tolist()))
    expected = {"head": 1, "neck01": 1, "spine02": 2, "upperarm02.L": 3, "lowerarm01.R": 4, "finger2-3.L": 4,
                "upperleg02.R": 5, "lowerleg01.L": 6, "foot.R": 7, "toe1-2.L": 7}
    assert {k: bone_part[k] for k in expected} == expected
    eyes = torch.isin(anny_body.face_parts_fine, torch.tensor([names.index("eye.L"), names.index("eye.R")]))
    face = anny_body.region_faces("face")
    assert face[eyes].all() and (anny_body.face_parts[face] == 1).all()
    hand_bones = {names[i] for i in anny_body.face_parts_fine[anny_body.region_faces("hands")].tolist()}
    assert hand_bones and all(b.startswith(("wrist", "finger", "metacarpal")) for b in hand_bones)
    # Left/right symmetric labelling: as many left as right hand faces.
    left = sum(1 for b in anny_body.face_parts_fine[anny_body.region_faces("hands")].tolist() if names[b].endswith(".L"))
    assert 2 * left == int(anny_body.region_faces("hands").sum())


def test_unknown_bones_inherit_their_ancestors_part():
    assert _coarse_of_bones(["root", "upperleg01.L", "knee_helper", "ribbon"], [-1, 0, 1, 0]) == [2, 5, 5, 2]


def test_quads_are_fanned_and_padding_dropped():
    quads = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 6]])
    tris, uvs = _triangles(quads, quads + 10)
    assert tris.tolist() == [[0, 1, 2], [4, 5, 6], [0, 2, 3]] and torch.equal(uvs, tris + 10)


def test_uv_face_mask_sits_in_the_head_island(anny_body):
    mask = anny_body.uv_region_mask("face", 128)
    head = anny_body.uv_region_mask("head", 128)
    assert 100 < int(mask.sum()) < int(head.sum())
    assert not (mask & ~head).any()


def test_arguments_are_validated():
    from zoo.body import AnnyBody

    with pytest.raises(ValueError, match="phenotypes"):
        AnnyBody(phenotypes="some")
