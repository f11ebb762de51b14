"""Occlusion detector: Canny on a limb-colour render minus the silhouette outline, dilated."""
from __future__ import annotations

import pytest
import torch

from zoo.render import intrinsics, look_at_body, rasterize, render_uv, sample_texture, to_camera
from zoo.render.neural_texture import rgb_texture_channels
from zoo.render.occlusion import detect_occlusions, limb_gradient_colours, limb_labels, occlusion_mask


def two_squares(H=40, W=40):
    """A blue square with a red one in front of its middle, over black."""
    image = torch.zeros(1, 3, H, W)
    image[:, 2, 5:35, 5:35] = 1.0
    image[:, :, 15:25, 15:25] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    return image, (image.sum(1, keepdim=True) > 0).float()


def test_detector_marks_the_inner_outline_and_not_the_silhouette():
    image, mask = two_squares()
    occ = detect_occlusions(image, mask, dilations=0)[0, 0]
    # The red square's outline (rows / columns 14..15 and 24..25 inside the blue) is found...
    assert occ[15:25, 14:16].any(dim=1).all() and occ[15:25, 24:26].any(dim=1).all()
    assert occ[14:16, 15:25].any(dim=0).all() and occ[24:26, 15:25].any(dim=0).all()
    # ...the silhouette's own outline and the flat regions are not.
    ring = torch.zeros_like(occ, dtype=torch.bool)
    ring[3:8, :] = ring[32:37, :] = ring[:, 3:8] = ring[:, 32:37] = True
    assert not occ[ring].any()
    assert not occ[8:13, 8:32].any() and not occ[18:22, 18:22].any()
    # Two 3x3 dilations widen it by two pixels on each side.
    wide = detect_occlusions(image, mask)[0, 0]
    assert wide[11:29, 11:29].sum() > occ.sum() * 3 and not wide[18:22, 18:22].any()


def test_detector_validates_its_inputs():
    image, mask = two_squares()
    with pytest.raises(ValueError, match="colour_render"):
        detect_occlusions(image[:, :2], mask)
    with pytest.raises(ValueError, match="outline_width"):
        detect_occlusions(image, mask, outline_width=2)


@pytest.fixture(scope="module")
def anny():
    from zoo.body import AnnyBody

    return AnnyBody().eval()


def test_limb_colours_are_smooth_on_the_surface_and_distinct_per_limb(anny):
    labels = limb_labels(anny.template_vertices, anny.faces, anny.face_parts)
    assert set(labels.unique().tolist()) == set(range(12))
    colours = limb_gradient_colours(anny.template_vertices, anny.faces, anny.face_parts)
    edge = colours[anny.faces[:, 0]] - colours[anny.faces[:, 1]]
    assert edge.abs().max() < 0.2  # no jump along any mesh edge
    raw = limb_gradient_colours(anny.template_vertices, anny.faces, anny.face_parts, smooth_iterations=0)
    assert (raw[anny.faces[:, 0]] - raw[anny.faces[:, 1]]).abs().max() > 0.5  # unsmoothed: jumps


def _arm_across_chest(body, arm_swing_deg: float, size: int):
    pose = body.pose_from_controls(1, arm_swing_deg=torch.tensor([arm_swing_deg]), walk_phase_deg=270.0,
                                   elbow_bend_deg=70.0)
    vertices = body(pose=pose).vertices
    y = vertices[0, :, 1]
    R, t = look_at_body(torch.tensor([30.0]), torch.tensor([0.0]), 4.0,
                        target=torch.tensor([[0.0, float(y.max() + y.min()) / 2, 0.0]]))
    return rasterize(to_camera(vertices, R, t), body.faces, intrinsics(0.9 * size * 4.0 / 1.7, (size, size)), (size, size))


def test_arm_in_front_of_torso_wrong_texels_disappear(anny):
    """The image shows the arm across the chest; the fitted body has the arm 3 degrees off. Arm
    colour sampled into torso texels is the error the detector removes."""
    from zoo.render.body_maps import body_uv_maps

    T, size = 128, 256
    parts = body_uv_maps(anny, T)["parts"]
    texture = torch.full((1, 3, T, T), 0.5)
    texture[0, :, parts == 2] = torch.tensor([0.0, 0.0, 1.0])[:, None]  # torso blue
    texture[0, :, (parts == 3) | (parts == 4)] = torch.tensor([1.0, 0.0, 0.0])[:, None]  # arms red
    truth, fit = _arm_across_chest(anny, 35.0, size), _arm_across_chest(anny, 38.0, size)
    uv_true, person = render_uv(truth, anny.corner_uvs)
    image = sample_texture(texture, uv_true, person, mode="nearest")
    uv_fit, _ = render_uv(fit, anny.corner_uvs)
    colours = limb_gradient_colours(anny.template_vertices, anny.faces, anny.face_parts)

    def torso_texels(exclude):
        channels = rgb_texture_channels(image, uv_fit, person, T, exclude=exclude)[0]
        hit = (channels[3] > 0.5) & (channels[4] < 0.5) & (parts == 2)
        return int((hit & (channels[0] > 0.5)).sum()), int((hit & (channels[2] > 0.5)).sum())

    wrong_before, right_before = torso_texels(None)
    wrong_after, right_after = torso_texels(occlusion_mask(fit, anny.faces, colours))
    assert wrong_before >= 20
    assert wrong_after <= wrong_before // 5
    assert right_after >= 0.6 * right_before  # most of the torso is still sampled


def test_uv_path_matches_the_mesh_path(anny):
    """Datasets store UV renders, not meshes: the limb colours looked up through the UV render
    find the same outlines as the colours interpolated on the mesh."""
    from zoo.render.occlusion import limb_colour_texture, occlusion_from_uv

    frags = _arm_across_chest(anny, 35.0, 256)
    uv, mask = render_uv(frags, anny.corner_uvs)
    colours = limb_gradient_colours(anny.template_vertices, anny.faces, anny.face_parts)
    texture = limb_colour_texture(anny.template_vertices, anny.faces, anny.face_parts, anny.corner_uvs, 256)
    mesh, via_uv = occlusion_mask(frags, anny.faces, colours) > 0.5, occlusion_from_uv(texture, uv, mask) > 0.5
    assert mesh.sum() > 100
    assert float((mesh & via_uv).sum() / (mesh | via_uv).sum()) > 0.7
