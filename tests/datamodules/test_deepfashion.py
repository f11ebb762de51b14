"""DeepFashion in-shop dataset and DataModule on a tiny folder in the documented layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.datamodules.fixtures import (
    DEEPFASHION_STORED,
    PARAMS_CENTRE,
    PARAMS_FOCAL,
    SMPL12_TO_7,
    ray_cast_uv,
    write_deepfashion,
    write_pools,
    write_tiny_smpl,
)
from zoo.datamodules.datasets.deepfashion import DeepFashionInShop, read_deepfashion_split
from zoo.datamodules.deepfashion import DeepFashionDataModule

SIZE = (64, 64)  # the fixture stores 96x96 images: everything is resized and K scaled
VIEW_KEYS = {"image", "parts", "render_parts", "mask", "uv", "K", "vertices", "view_id", "person_id"}


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    base = tmp_path_factory.mktemp("deepfashion")
    smpl = write_tiny_smpl(base / "smpl")
    manifest = write_deepfashion(base / "DeepFashion", smpl)
    return {"root": str(base / "DeepFashion"), "smpl": smpl, **manifest, **write_pools(base)}


@pytest.fixture(scope="module")
def train_set(fashion):
    smpl = fashion["smpl"]
    return DeepFashionInShop(fashion["root"], "train", smpl_model_path=smpl["model"], smpl_uv_path=smpl["uv"],
                             image_size=SIZE, random=False)


def _expected_K(params: bool) -> np.ndarray:
    if params:  # the file's camera in 96 px, scaled by 2/3 about pixel corners
        s = SIZE[0] / DEEPFASHION_STORED[0]
        f, (cx, cy) = PARAMS_FOCAL * s, ((c + 0.5) * s - 0.5 for c in PARAMS_CENTRE)
    else:  # SPIN: 5000 px per 224 px, centre of the 64x64 image
        f, cx, cy = 5000.0 * 64 / 224, 31.5, 31.5
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])


def test_split_file_identities_and_item_keys(train_set, fashion):
    assert train_set.identities == ["MEN/Denim/id_00000080/01", "WOMEN/Dresses/id_00000002/02",
                                    "WOMEN/Dresses/id_00000002/03"]
    assert len(train_set) == len(fashion["train_list"])  # one item per image
    item = train_set[0]
    assert set(item) == VIEW_KEYS | {f"novel_{k}" for k in VIEW_KEYS}
    H, W = SIZE
    for prefix in ("", "novel_"):
        shapes = {"image": (3, H, W), "parts": (H, W), "render_parts": (H, W), "mask": (1, H, W), "uv": (H, W, 2),
                  "K": (3, 3), "vertices": (len(fashion["smpl"]["data"]["v_template"]), 3)}
        for key, shape in shapes.items():
            assert tuple(item[prefix + key].shape) == shape, key
            assert item[prefix + key].dtype == (torch.int64 if "parts" in key else torch.float32), key
    for index in range(len(train_set)):
        item = train_set[index]
        a, b = train_set.paths[int(item["view_id"])], train_set.paths[int(item["novel_view_id"])]
        assert a != b and fashion["written"][a]["identity"] == fashion["written"][b]["identity"]
        assert train_set.identities[int(item["person_id"])] == fashion["written"][a]["identity"]


def test_both_fit_formats_render_like_ray_casting(train_set, fashion):
    smpl = fashion["smpl"]
    seen = set()
    for index, key in enumerate(train_set.paths):
        written = fashion["written"][key]
        if written["params"] in seen:
            continue
        seen.add(written["params"])
        view = train_set.load_view(key)
        # Vertices: the list format as stored; SMPL parameters against a hand-written forward.
        np.testing.assert_allclose(view["vertices"].numpy(), written["vertices"], atol=1e-4)
        K = _expected_K(written["params"])
        np.testing.assert_allclose(view["K"].numpy(), K, atol=1e-4)
        face, uv, ambiguous = ray_cast_uv(written["vertices"], smpl["faces"], smpl["corner_uvs"], K[0, 0], K[1, 1],
                                          K[0, 2], K[1, 2], SIZE)
        mask, hit = view["mask"][0].numpy() > 0.5, face >= 0
        assert hit.sum() > 100 and (mask != hit).mean() < 0.002
        clear = mask & hit & ~ambiguous
        assert clear.sum() > 0.9 * hit.sum()
        np.testing.assert_allclose(view["uv"].numpy()[clear], uv[clear], atol=1e-3)
        assert (view["uv"].numpy()[~mask] == -2).all()
        assert np.array_equal(view["render_parts"].numpy()[clear], train_set.topology.face_parts.numpy()[face[clear]])
    assert seen == {True, False}


def test_labels_are_resized_with_nearest_and_png_render_parts(fashion, train_set):
    png = DeepFashionInShop(fashion["root"], "train", topology=train_set.topology, image_size=SIZE,
                            render_parts="png", random=False)
    table = np.zeros(13, dtype=np.int64)
    for fine, coarse in SMPL12_TO_7.items():
        table[fine] = coarse
    key = png.paths[0]
    view, written = png.load_view(key), fashion["written"][key]
    # Nearest: output pixel centre (i + 0.5) * 96 / 64 falls in source pixel floor(that).
    rows = np.floor((np.arange(SIZE[0]) + 0.5) * DEEPFASHION_STORED[0] / SIZE[0]).astype(int)
    sample = np.ix_(rows, rows)
    assert np.array_equal(view["parts"].numpy(), written["parser"][sample])
    assert np.array_equal(view["render_parts"].numpy(), table[written["smpl12"][sample]])
    expected = torch.from_numpy(written["image"]).permute(2, 0, 1).float()[None] / 127.5 - 1
    expected = torch.nn.functional.interpolate(expected, size=SIZE, mode="bilinear", antialias=True)[0]
    assert (view["image"] - expected).abs().mean() < 0.05


def test_errors_name_the_missing_piece(fashion, tmp_path):
    smpl = fashion["smpl"]
    with pytest.raises(FileNotFoundError, match=r"(?s)train_test_list.pkl.*DeepFashion.*HPBTT.*init_args.root"):
        read_deepfashion_split(tmp_path)
    with pytest.raises(ValueError, match="smpl_model_path"):
        DeepFashionInShop(fashion["root"], smpl_uv_path=smpl["uv"])  # render_parts="mesh" needs the model
    no_model = DeepFashionInShop(fashion["root"], smpl_uv_path=smpl["uv"], render_parts="png", random=False)
    params_key = next(k for k in no_model.paths if fashion["written"][k]["params"])
    with pytest.raises(ValueError, match=r"stores SMPL parameters.*smpl_model_path"):
        no_model.load_view(params_key)
    assert no_model.load_view(next(k for k in no_model.paths if not fashion["written"][k]["params"]))["uv"].ndim == 3
    with pytest.raises(FileNotFoundError, match="DeepFashion image"):
        no_model.load_view("WOMEN/Nowhere/id_00000001/01_1_front")


def test_json_split_file(tmp_path, fashion):
    write_deepfashion(tmp_path / "df", fashion["smpl"], split_format="json")
    assert read_deepfashion_split(tmp_path / "df") == read_deepfashion_split(fashion["root"])


def test_datamodule_yields_batches(fashion):
    smpl = fashion["smpl"]
    dm = DeepFashionDataModule(fashion["root"], smpl_model_path=smpl["model"], smpl_uv_path=smpl["uv"],
                               backgrounds_dir=fashion["backgrounds"], textures_dir=fashion["textures"],
                               image_size=SIZE, texture_size=16, batch_size=2, val_fraction=0.34)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(val.identities) == 1 and not set(val.identities) & set(train.identities)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, *SIZE) and batch["novel_mask"].shape == (2, 1, *SIZE)
    assert batch["background"].shape == (2, 3, *SIZE) and batch["reference_texture"].shape == (2, 3, 16, 16)
    assert torch.equal(batch["person_id"], batch["novel_person_id"])
    assert next(iter(dm.val_dataloader()))["image"].shape[1:] == (3, *SIZE)
    test = next(iter(dm.test_dataloader()))
    assert test["image"].shape[0] == len(fashion["test_list"])
