"""Synthetic avatar pairs: the avatar options of the generator and the stage-1 batches."""
from __future__ import annotations

import pytest
import torch

from zoo.datamodules import PRESETS, SyntheticAvatarDataModule
from zoo.render import dilate_texture, sample_texture

SMALL = {"num_identities": 3, "views_per_identity": 3, "image_size": [64, 64], "texture_size": 32}


@pytest.fixture(scope="module")
def avatars(zoo_home):
    dm = SyntheticAvatarDataModule(overrides=SMALL, data_dir=str(zoo_home / "avatars"), batch_size=2, progress=False)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def plain(zoo_home):
    """The same people without shading or clothes, and without the occlusion detector."""
    dm = SyntheticAvatarDataModule(overrides={**SMALL, "shading": 0.0, "clothing_offset": 0.0},
                                   data_dir=str(zoo_home / "avatars"), batch_size=2, occlusion_detector=False,
                                   progress=False)
    dm.setup()
    return dm


def test_original_presets_keep_their_cache_names():
    """The avatar options are left out of the cache key at their defaults, so caches generated
    before they existed stay valid (keys measured before the options were added)."""
    assert PRESETS["tiny"].key("anny-") == "a52e839600a0"
    assert PRESETS["small"].key("anny-") == "a479a6061faf"
    assert PRESETS["dinar"].key("anny-") != PRESETS["dinar"].__class__(
        **{**PRESETS["dinar"].__dict__, "shading": 0.0}).key("anny-")


def test_batch_keys_and_shapes(avatars):
    batch = next(iter(avatars.train_dataloader()))
    H, W, T = 64, 64, 32
    V = batch["source_vertices"].shape[1]
    shapes = {
        "source_image": (2, 3, H, W), "source_mask": (2, 1, H, W), "source_uv": (2, H, W, 2),
        "source_uv_mask": (2, 1, H, W), "source_rgb_texture": (2, 5, T, T), "source_occlusion": (2, 1, H, W),
        "source_K": (2, 3, 3), "source_vertices": (2, V, 3), "target_image": (2, 3, H, W),
        "target_mask": (2, 1, H, W), "target_uv": (2, H, W, 2), "target_uv_mask": (2, 1, H, W),
        "target_face_mask": (2, 1, H, W), "target_K": (2, 3, 3), "target_vertices": (2, V, 3),
        "texture": (2, 3, T, T), "texture_mask": (2, 1, T, T), "person_id": (2,), "source_view": (2,),
    }
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == shape, key
    assert (batch["source_view"] != batch["target_view"]).all()
    outside_s, outside_t = batch["source_mask"] < 0.5, batch["target_mask"] < 0.5
    assert (batch["source_image"].masked_select(outside_s) == -1).all()
    assert (batch["target_image"].masked_select(outside_t) == 1).all()
    # The target's projected vertices land on its body render.
    v, K = batch["target_vertices"][0], batch["target_K"][0]
    uvw = v @ K.T
    col, row = (uvw[:, 0] / uvw[:, 2]).round().long(), (uvw[:, 1] / uvw[:, 2]).round().long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    near = torch.nn.functional.max_pool2d(batch["target_uv_mask"][:1], 3, stride=1, padding=1)[0, 0]
    assert inside.all() and near[row, col].mean() > 0.97  # within a pixel (fingers are thinner)
    # Face pixels are on the body, in the upper part of the image.
    face = batch["target_face_mask"][0, 0]
    assert (face <= batch["target_uv_mask"][0, 0]).all()
    if face.any():
        assert face.nonzero()[:, 0].float().mean() < H / 2
    # Channels 3 and 4: known-or-filled contains the gap fill, which stays on the atlas.
    rgb = batch["source_rgb_texture"]
    assert (rgb[:, 4] <= rgb[:, 3]).all() and (rgb[:, 4] <= batch["texture_mask"][:, 0]).all()


def test_clothes_and_light_make_the_image_differ_from_the_texture(avatars, plain):
    a, p = avatars.datasets["val"][0], plain.datasets["val"][0]
    # Same person, pose and camera: the body fit is the same, the pictures are not.
    torch.testing.assert_close(a["source_uv"], p["source_uv"])
    assert (a["source_mask"] * (1 - a["source_uv_mask"])).sum() > 10  # clothes reach past the body
    assert (p["source_mask"] <= p["source_uv_mask"]).all()
    # Without the effects the sampled RGB is the texture (up to bilinear sampling and uint8);
    # with them it is not (shading).
    def rgb_error(item):
        rgb = item["source_rgb_texture"]
        hit = (rgb[3] > 0.5) & (rgb[4] < 0.5)
        return (rgb[:3] - item["texture"]).abs().mean(0)[hit].mean()
    assert rgb_error(p) < 0.08
    assert rgb_error(a) > rgb_error(p) + 0.03
    padded = dilate_texture(p["texture"], p["texture_mask"])  # renders sample the seam-padded texture
    rendered = sample_texture(padded[None], p["source_uv"][None], p["source_uv_mask"][None])[0]
    body = p["source_uv_mask"].bool().expand(3, -1, -1)
    assert (rendered[body] - p["source_image"][body]).abs().mean() < 0.05


def test_occlusion_detector_on_and_off(avatars, plain):
    assert plain.datasets["train"][0]["source_occlusion"].sum() == 0
    occ = torch.stack([avatars.datasets["train"][i]["source_occlusion"] for i in range(len(avatars.datasets["train"]))])
    assert occ.sum() > 0  # some view has an occlusion outline
    item = avatars.datasets["train"][0]
    near = torch.nn.functional.max_pool2d(item["source_uv_mask"], 5, stride=1, padding=2)  # two 3x3 dilations
    assert (item["source_occlusion"] <= near).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="erode"):
        SyntheticAvatarDataModule(overrides=SMALL, erode=4)
    with pytest.raises(ValueError, match="shading"):
        SyntheticAvatarDataModule(overrides={**SMALL, "shading": 2.0})


def test_person_views_merge_into_a_wider_texture(avatars):
    from zoo.render import merge_textures

    views = avatars.datasets["train"].person_views(0)
    n = views["source_rgb_texture"].shape[0]
    assert n == 3 and views["source_texel_cosines"].shape == (n, 1, 32, 32)
    rgb, cos = views["source_rgb_texture"], views["source_texel_cosines"]
    hit = (rgb[:, 3:4] > 0.5) & (rgb[:, 4:5] < 0.5)
    # Texels a view sampled face its camera (positive cosine), on average clearly so.
    assert float(cos[hit].mean()) > 0.3 and float((cos[hit] > 0).float().mean()) > 0.85
    merged = merge_textures(rgb[:, None], cos[:, None], rgb[:, None, 3:4])
    union = (rgb[:, 3:4] > 0.5).any(0)
    assert torch.equal(merged["seen"][0] > 0.5, union)
    assert union.sum() > (rgb[:, 3] > 0.5).sum(dim=(1, 2)).max()  # wider than any single view
    only = (rgb[:, 3:4] > 0.5).sum(0) == 1
    for k in range(n):
        mine = only & (rgb[k, 3:4] > 0.5)
        torch.testing.assert_close(merged["texture"][0, :3][mine.expand(3, -1, -1)], rgb[k, :3][mine.expand(3, -1, -1)])


def test_shading_alone_darkens_and_keeps_the_silhouette(zoo_home):
    """With shading only, the person is the body (same silhouette) and no brighter than its albedo."""
    dm = SyntheticAvatarDataModule(overrides={**SMALL, "shading": 1.0, "clothing_offset": 0.0},
                                   data_dir=str(zoo_home / "avatars"), batch_size=2, progress=False)
    dm.setup()
    item = dm.datasets["val"][1]
    torch.testing.assert_close(item["source_mask"], item["source_uv_mask"])
    padded = dilate_texture(item["texture"], item["texture_mask"])
    flat = sample_texture(padded[None], item["source_uv"][None], item["source_uv_mask"][None])[0]
    inside = item["source_uv_mask"].bool().expand(3, -1, -1)
    shaded, albedo = (item["source_image"][inside] + 1) / 2, (flat[inside] + 1) / 2
    assert (shaded <= albedo + 0.03).all()  # Lambert with ambient never brightens (uint8 / float16 slack)
    assert ((albedo - shaded) > 0.1).float().mean() > 0.1  # and darkens a good part of the body


def test_rgb_channels_give_back_the_source_pixels_at_the_source_view(avatars):
    """The image-sampled texture channels, looked up at the source view's own UV, are the source image
    on the pixels whose texel holds a sampled colour: the scatter (`rgb_texture_channels`) and the
    renderer-side lookup (`sample_texture`, `grid_sample` convention of `render_uv`) agree on u / v and
    texel centres. The reference is the image itself; a v flip of the lookup is far off."""
    item = avatars.datasets["val"][0]
    rgb, uv = item["source_rgb_texture"], item["source_uv"][None]
    body = item["source_uv_mask"] * item["source_mask"]
    hit = sample_texture(rgb[None, 3:4] - rgb[None, 4:5], uv, body[None], mode="nearest")[0, 0] > 0.5  # scattered texels
    image = item["source_image"]

    def error(grid):
        drawn = sample_texture(rgb[None, :3], grid, body[None], mode="nearest")[0]
        return (drawn - image).abs()[:, hit].mean()

    assert hit.sum() > 50
    flipped = uv * torch.tensor([1.0, -1.0])
    assert error(uv) < 0.06  # pixels sharing a texel are averaged by the scatter
    assert error(flipped) > 0.2  # 0.33 here, against 0.04 above
