"""SMPLMarket dataset and Market1501DataModule on a tiny SMPLMarket folder in Texformer's format."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tests.datamodules.fixtures import (
    MARKET_CENTRE,
    MARKET_FOCAL,
    MARKET_SIZE,
    SMPL12_TO_7,
    ray_cast_uv,
    write_pools,
    write_smpl_market,
    write_tiny_smpl,
)
from zoo.datamodules.datasets.smpl_market import SMPLMarket
from zoo.datamodules.market1501 import Market1501DataModule

VIEW_KEYS = {"image", "parts", "render_parts", "mask", "uv", "K", "vertices", "view_id", "person_id"}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    base = tmp_path_factory.mktemp("market")
    smpl = write_tiny_smpl(base / "smpl")
    manifest = write_smpl_market(base / "SMPLMarket", smpl)
    return {"root": str(base / "SMPLMarket"), "smpl": smpl, **manifest, **write_pools(base)}


@pytest.fixture(scope="module")
def train_set(market):
    return SMPLMarket(market["root"], "train", smpl_uv_path=market["smpl"]["uv"], random=False)


def test_items_have_the_keys_shapes_and_dtypes(train_set, market):
    H, W = MARKET_SIZE
    item = train_set[0]
    assert set(item) == VIEW_KEYS | {f"novel_{k}" for k in VIEW_KEYS}
    for prefix in ("", "novel_"):
        shapes = {"image": (3, H, W), "parts": (H, W), "render_parts": (H, W), "mask": (1, H, W), "uv": (H, W, 2),
                  "K": (3, 3), "vertices": (len(market["smpl"]["data"]["v_template"]), 3), "view_id": (),
                  "person_id": ()}
        for key, shape in shapes.items():
            assert tuple(item[prefix + key].shape) == shape, key
        for key in ("parts", "render_parts", "view_id", "person_id"):
            assert item[prefix + key].dtype == torch.int64, key
        for key in ("image", "mask", "uv", "K", "vertices"):
            assert item[prefix + key].dtype == torch.float32, key
        assert item[prefix + "image"].min() >= -1 and item[prefix + "image"].max() <= 1
        assert item[prefix + "parts"].max() <= 7 and item[prefix + "render_parts"].max() <= 7
        mask = item[prefix + "mask"][0].bool()
        assert 0 < mask.float().mean() < 1
        assert (item[prefix + "uv"][~mask] == -2).all() and item[prefix + "uv"][mask].abs().max() <= 1
    # Texformer's camera for a 128x64 crop of the 128x128 render, computed by hand.
    expected_K = torch.tensor([[MARKET_FOCAL, 0, MARKET_CENTRE[0]], [0, MARKET_FOCAL, MARKET_CENTRE[1]], [0, 0, 1]])
    torch.testing.assert_close(item["K"], expected_K.float())


def test_pairs_are_two_images_of_the_same_person(train_set, market):
    assert len(train_set) == len(market["out_dict_train"])  # one item per identity (Texformer's epoch)
    for index in range(len(train_set)):
        item = train_set[index]
        first, second = train_set.paths[int(item["view_id"])], train_set.paths[int(item["novel_view_id"])]
        assert first != second
        pid = train_set.identities[int(item["person_id"])]
        assert first in market["out_dict_train"][pid] and second in market["out_dict_train"][pid]
        assert market["written"][first]["pid"] == market["written"][second]["pid"] == pid
        assert item["novel_person_id"] == item["person_id"] == index
    random_set = SMPLMarket(market["root"], "train", topology=train_set.topology, items_per="image")
    torch.manual_seed(0)
    for index in range(len(random_set)):
        item = random_set[index]
        assert random_set.person_of[int(item["view_id"])] == random_set.person_of[int(item["novel_view_id"])]
        assert item["view_id"] != item["novel_view_id"]


def test_labels_images_and_fit_are_what_the_files_hold(train_set, market):
    table = np.zeros(13, dtype=np.int64)
    for fine, coarse in SMPL12_TO_7.items():
        table[fine] = coarse
    for index in range(len(train_set.paths)):
        rel = train_set.paths[index]
        view = train_set.load_view(rel)
        written = market["written"][rel]
        assert np.array_equal(view["parts"].numpy(), written["parser"])  # incl. the .png.png file
        assert np.array_equal(view["render_parts"].numpy(), table[written["smpl12"]])  # incl. the square render
        expected = torch.from_numpy(written["image"]).permute(2, 0, 1).float() / 127.5 - 1
        assert (view["image"] - expected).abs().max() < 0.1  # JPEG
        torch.testing.assert_close(view["vertices"].double(), torch.from_numpy(written["vertices"]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("with_model", [False, True])
def test_uv_and_mask_agree_with_ray_casting(market, with_model):
    smpl = market["smpl"]
    kwargs = {"smpl_model_path": smpl["model"], "render_parts": "mesh"} if with_model else {}
    dataset = SMPLMarket(market["root"], "test", smpl_uv_path=smpl["uv"], random=False, **kwargs)
    item = dataset[1]
    vertices = market["written"][dataset.paths[int(item["view_id"])]]["vertices"]
    face, uv, ambiguous = ray_cast_uv(vertices, smpl["faces"], smpl["corner_uvs"], MARKET_FOCAL, MARKET_FOCAL,
                                      *MARKET_CENTRE, MARKET_SIZE)
    hit = face >= 0
    mask = item["mask"][0].numpy() > 0.5
    assert hit.sum() > 300
    assert (mask != hit).mean() < 0.002  # only pixel centres exactly on a silhouette edge may differ
    clear = mask & hit & ~ambiguous  # overlapping cubes: float32 depth cannot order near-equal depths
    assert clear.sum() > 0.9 * hit.sum()
    np.testing.assert_allclose(item["uv"].numpy()[clear], uv[clear], atol=1e-3)
    # Projecting a visible vertex lands on the mask.
    nearest = vertices[smpl["faces"][face[hit][0]]].mean(0)
    u = MARKET_FOCAL * nearest[0] / nearest[2] + MARKET_CENTRE[0]
    v = MARKET_FOCAL * nearest[1] / nearest[2] + MARKET_CENTRE[1]
    assert mask[int(round(v)), int(round(u))]
    if with_model:
        from zoo.body import SMPLBody

        face_parts = SMPLBody(smpl["model"], smpl["uv"]).face_parts.numpy()
        parts = item["render_parts"].numpy()
        assert np.array_equal(parts[clear], face_parts[face[clear]]) and (parts[~mask] == 0).all()


def test_eval_split_uses_the_eval_list(market):
    dataset = SMPLMarket(market["root"], "eval", smpl_uv_path=market["smpl"]["uv"], random=False)
    assert [dataset.paths[i] for i in dataset.items] == market["eval_list"]
    for index in range(len(dataset)):
        item = dataset[index]
        first, second = dataset.paths[int(item["view_id"])], dataset.paths[int(item["novel_view_id"])]
        assert first == market["eval_list"][index] and first != second
        assert market["written"][first]["pid"] == market["written"][second]["pid"]
    single = SMPLMarket(market["root"], "eval", smpl_uv_path=market["smpl"]["uv"], pairs=False, random=False)
    assert "novel_image" not in single[0] and len(single) == len(market["eval_list"])


def test_missing_files_give_clear_errors(market, tmp_path):
    uv = market["smpl"]["uv"]
    with pytest.raises(FileNotFoundError, match=r"(?s)SMPLMarket.*Texformer.*init_args.root"):
        SMPLMarket(str(tmp_path / "nowhere"), smpl_uv_path=uv)
    with pytest.raises(FileNotFoundError, match=r"(?s)SMPLMarket.*Texformer.*init_args.root"):
        Market1501DataModule(str(tmp_path / "nowhere"), smpl_uv_path=uv).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"(?s)train_test_img_paths_pid.pkl.*Market-1501"):
        SMPLMarket(str(tmp_path), smpl_uv_path=uv)
    with pytest.raises(FileNotFoundError, match=r"(?s)smpl_uv.obj.*smpl_uv_path"):
        SMPLMarket(market["root"], smpl_uv_path=str(tmp_path / "smpl_uv.obj"))
    with pytest.raises(FileNotFoundError, match=r"(?s)SMPL model file.*smpl.is.tue.mpg.de.*smpl_model_path"):
        SMPLMarket(market["root"], smpl_uv_path=uv, smpl_model_path=str(tmp_path / "SMPL_NEUTRAL.pkl"))
    with pytest.raises(ValueError, match="smpl_model_path"):
        SMPLMarket(market["root"], smpl_uv_path=uv, render_parts="mesh")
    # A per-image file missing: the error names it when the item is read.
    broken = tmp_path / "broken"
    broken.mkdir()
    with open(broken / "train_test_img_paths_pid.pkl", "wb") as handle:
        pickle.dump({"out_dict_train": {5: ["bounding_box_train/0005_a.jpg", "bounding_box_train/0005_b.jpg"]},
                     "out_dict_test": {}}, handle)
    dataset = SMPLMarket(str(broken), smpl_uv_path=uv)
    with pytest.raises(FileNotFoundError, match=r"SMPL_RSC/pkl/0005_[ab]\.pkl"):
        dataset[0]


def test_datamodule_yields_identity_disjoint_batches(market):
    smpl = market["smpl"]
    dm = Market1501DataModule(market["root"], smpl_model_path=smpl["model"], smpl_uv_path=smpl["uv"],
                              backgrounds_dir=market["backgrounds"], textures_dir=market["textures"], batch_size=2,
                              val_fraction=0.25, texture_size=32)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(val.identities) == 1 and not set(val.identities) & set(train.identities)
    assert dm.num_identities == 3
    batch = next(iter(dm.train_dataloader()))
    H, W = MARKET_SIZE
    assert batch["image"].shape == (2, 3, H, W) and batch["novel_uv"].shape == (2, H, W, 2)
    assert batch["background"].shape == (2, 3, H, W) and batch["reference_texture"].shape == (2, 3, 32, 32)
    assert torch.equal(batch["person_id"], batch["novel_person_id"])
    assert len(dm.train_dataloader()) == 1  # 3 identities, drop_last
    first, again = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    for key in ("image", "novel_image", "background", "reference_texture"):
        assert torch.equal(first[key], again[key])  # validation is deterministic
    test = next(iter(dm.test_dataloader()))
    assert test["image"].shape[0] == len(market["eval_list"])
    maps = dm.uv_maps(16)
    assert maps["texture_mask"].shape == (1, 16, 16) and maps["position_code"].shape == (3, 16, 16)
    with pytest.raises(FileNotFoundError, match=r"(?s)nongrey.*texture_filter"):
        Market1501DataModule(market["root"], smpl_uv_path=smpl["uv"], textures_dir=market["backgrounds"]).setup("fit")
    with pytest.raises(FileNotFoundError, match="backgrounds_dir"):
        Market1501DataModule(market["root"], smpl_uv_path=smpl["uv"], backgrounds_dir=market["root"] + "/nope").setup()
