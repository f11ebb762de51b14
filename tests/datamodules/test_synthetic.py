"""The synthetic people: shapes, determinism, splits by identity, and exact ground truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.datamodules import SyntheticPeopleDataModule
from zoo.datamodules.datasets.synthetic_people import GenerationSettings
from zoo.render import dilate_texture, sample_texture


@pytest.fixture(scope="module")
def dm(tiny_data_dir):
    dm = SyntheticPeopleDataModule("tiny", data_dir=str(tiny_data_dir), batch_size=4, progress=False)
    dm.setup()
    return dm


def test_item_keys_shapes_and_ranges(dm):
    item = dm.datasets["train"][0]
    H, W = dm.settings.image_size
    T = dm.settings.texture_size
    assert item["image"].shape == (3, H, W) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["mask"].shape == (1, H, W) and item["mask"].sum() > 0
    assert item["parts"].shape == (H, W) and item["parts"].max() <= 7
    assert ((item["parts"] > 0) == (item["mask"][0] > 0)).all()  # parts exactly on the person
    assert item["uv"].shape == (H, W, 2)
    assert item["texture"].shape == (3, T, T) and item["texture_mask"].shape == (1, T, T)
    assert item["known_mask"].sum() > 0 and (item["known_mask"] <= item["texture_mask"]).all()
    assert item["novel_image"].shape == (3, H, W) and item["novel_view_id"] != item["view_id"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, H, W)


def test_image_is_the_texture_seen_through_the_uv_render(dm):
    """The ground truth is exact: re-rendering the GT texture reproduces the person's pixels
    (up to uint8 storage of the image and texture and float16 storage of the UV)."""
    item = dm.datasets["train"][1]
    # Renders sample the seam-padded texture (see dilate_texture); pad the stored one the same way.
    padded = dilate_texture(item["texture"], item["texture_mask"])
    render = sample_texture(padded[None], item["uv"][None], item["mask"][None])[0]
    m = item["mask"].bool().expand_as(render)
    err = (render[m] - item["image"][m]).abs()
    assert err.mean() < 0.03, err.mean()


def test_pairs_are_the_same_person_and_splits_are_disjoint(dm):
    ds = dm.datasets["val"]
    for i in range(len(ds)):
        item = ds[i]
        assert ds.view_person[int(item["novel_view_id"])] == ds.view_person[i]
    ids = {split: set(d.person_ids.tolist()) for split, d in dm.datasets.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # "fixed" pairs are deterministic in val/test.
    assert int(ds[0]["novel_view_id"]) == int(ds[0]["novel_view_id"])


def test_generation_is_deterministic(dm, tmp_path):
    from zoo.body import AnnyBody
    from zoo.datamodules.datasets.synthetic_people import generate

    settings = GenerationSettings(num_identities=3, views_per_identity=2, image_size=(16, 8), texture_size=16,
                                  store_vertices=True)
    body = AnnyBody()
    a = generate(body, settings, tmp_path / "a", progress=False)
    b = generate(body, settings, tmp_path / "b", progress=False)
    for name in ("images.npy", "uv.npy", "textures.npy", "vertices.npy"):
        assert np.array_equal(np.load(a / "train" / name), np.load(b / "train" / name)), name
    verts = np.load(a / "train" / "vertices.npy")
    assert verts.shape[1:] == (body.template_vertices.shape[0], 3) and (verts[..., 2] > 0).all()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown preset"):
        SyntheticPeopleDataModule("huge")
    with pytest.raises(ValueError, match="unknown synthetic data settings \\['num_people'\\]"):
        SyntheticPeopleDataModule("tiny", overrides={"num_people": 3})
    with pytest.raises(ValueError, match="views_per_identity must be >= 2"):
        GenerationSettings(views_per_identity=1)


def test_uv_maps(dm):
    maps = dm.uv_maps()
    T = dm.settings.texture_size
    assert maps["position_code"].shape == (3, T, T) and maps["position_code"].abs().max() <= 1
    assert maps["face_hands_mask"].any() and torch.equal(maps["texture_mask"], dm.datasets["train"].texture_mask)


def test_items_carry_a_protocol_background_that_is_not_the_image(dm):
    """Renders for the ReID / style losses are composited over `background` (Texformer's protocol):
    a random frame in training, a fixed one per item in evaluation, never the image's own backdrop."""
    H, W = dm.settings.image_size
    train, test = dm.datasets["train"], dm.datasets["test"]
    a, b = train[0]["background"], train[0]["background"]
    assert a.shape == (3, H, W) and a.min() >= -1 and a.max() <= 1 and not torch.equal(a, b)
    assert torch.equal(test[1]["background"], test[1]["background"])
    assert not torch.equal(test[0]["background"], test[1]["background"])
    item = test[0]
    outside = (item["mask"] == 0).expand(3, -1, -1)
    assert (item["background"][outside] - item["image"][outside]).abs().mean() > 0.05
def test_gap_filled_partial_texture(tiny_data_dir):
    """fill_gaps (DINAR's B_fill): gap texels lie on the atlas next to known ones, outside the known
    mask; known texels keep the raw scatter; without it gap_mask is empty."""
    raw = SyntheticPeopleDataModule("tiny", data_dir=str(tiny_data_dir), progress=False, pairs="none")
    filled = SyntheticPeopleDataModule("tiny", data_dir=str(tiny_data_dir), progress=False, pairs="none",
                                       fill_gaps=True)
    raw.setup()
    filled.setup()
    a, b = raw.datasets["train"][0], filled.datasets["train"][0]
    assert not a["gap_mask"].any()
    torch.testing.assert_close(b["known_mask"], a["known_mask"])
    gap, known = b["gap_mask"] > 0.5, b["known_mask"] > 0.5
    assert gap.any() and not (gap & known).any() and (b["texture_mask"][gap] > 0.5).all()
    near_known = torch.nn.functional.max_pool2d(known[None].float(), 3, 1, 1)[0] > 0.5
    assert near_known[gap].all()
    torch.testing.assert_close(b["partial"] * known, a["partial"] * known)
    assert not (a["partial"] * gap).any() and (b["partial"] * gap).abs().sum() > 0
