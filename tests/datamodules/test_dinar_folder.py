"""DINAR input folders: SMPL-X pickles, the 1.2x square crop to a fixed size, camera, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.datamodules.dinar_fixtures import FOCAL, ORIGINAL_SIZE, frame_params, write_dinar_folder, write_tiny_smplx
from tests.datamodules.fixtures import write_pickle
from zoo.body.smplx_params import read_smplx_params
from zoo.datamodules import DinarFolderDataModule
from zoo.datamodules.datasets.dinar_folder import crop_and_resize, crop_matrix, square_crop_box

SIZE, TEXTURE = 128, 64


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dinar")
    model = write_tiny_smplx(root / "model")
    frames = write_dinar_folder(root / "data", model)
    return {"root": root / "data", "model": model, "frames": frames}


@pytest.fixture(scope="module")
def dm(folder):
    dm = DinarFolderDataModule(str(folder["root"]), body=folder["model"], image_size=SIZE, texture_size=TEXTURE,
                               batch_size=2)
    dm.setup()
    return dm


def test_vertices_match_the_smplx_package(dm, folder):
    for item in (dm.dataset[0], dm.dataset[1]):
        reference = folder["frames"][item["frame"]][1]
        np.testing.assert_allclose(item["source_vertices"].numpy(), reference, atol=2e-4)


def test_crop_is_square_around_the_person_and_the_camera_follows(dm, folder):
    item = dm.dataset[0]
    left, top, side = item["crop_box"].tolist()
    # The crop holds the 1.2x mesh box: the projected vertices span about 1 / 1.2 of it.
    K0 = torch.tensor([[FOCAL, 0, (ORIGINAL_SIZE[1] - 1) / 2], [0, FOCAL, (ORIGINAL_SIZE[0] - 1) / 2], [0, 0, 1.0]],
                      dtype=torch.float64)
    v = item["source_vertices"].double()
    p = v @ K0.T
    p = p[:, :2] / p[:, 2:]
    extent = float((p.max(0).values - p.min(0).values).max())
    assert 1.15 <= side / extent <= 1.3
    centre = (p.max(0).values + p.min(0).values) / 2
    assert abs(float(centre[0]) - (left + side / 2)) < 0.1 * side and abs(float(centre[1]) - (top + side / 2)) < 0.1 * side
    # The crop's camera maps original pixel centres into the resized crop (x - left + 1/2) * s - 1/2.
    q = v @ item["source_K"].double().T
    q = q[:, :2] / q[:, 2:]
    s = SIZE / side
    expected = torch.stack([(p[:, 0] - left + 0.5) * s - 0.5, (p[:, 1] - top + 0.5) * s - 0.5], -1)
    torch.testing.assert_close(q, expected, atol=1e-3, rtol=0)
    # End to end: the fit rendered with that camera lies on the resized person mask.
    mask, body = item["source_mask"][0] > 0.5, item["source_uv_mask"][0] > 0.5
    assert float((mask & body).sum() / (mask | body).sum()) > 0.85


def test_batches_and_texture_channels(dm):
    batch = next(iter(dm.predict_dataloader()))
    assert batch["source_image"].shape == (2, 3, SIZE, SIZE) and batch["source_uv"].shape == (2, SIZE, SIZE, 2)
    assert batch["source_rgb_texture"].shape == (2, 5, TEXTURE, TEXTURE) and batch["frame"] == ["frame00", "frame01"]
    rgb = batch["source_rgb_texture"]
    assert rgb[:, 3].sum() > 20 and (rgb[:, 4] <= rgb[:, 3]).all()
    # The photo's colours encode UV (red = u, green = v): sampled texels hold their own UV.
    hit = (rgb[0, 3] > 0.5) & (rgb[0, 4] < 0.5)
    rows, cols = torch.nonzero(hit, as_tuple=True)
    u = (cols.float() + 0.5) / TEXTURE * 2 - 1
    vv = (rows.float() + 0.5) / TEXTURE * 2 - 1
    assert (rgb[0, 0][hit] - u).abs().median() < 0.1 and (rgb[0, 1][hit] - vv).abs().median() < 0.1
    assert (batch["source_image"][batch["source_mask"].expand(-1, 3, -1, -1) < 0.5] == -1).all()
    cos = batch["source_texel_cosines"]
    assert cos.shape == (2, 1, TEXTURE, TEXTURE) and float(cos[0, 0][hit].mean()) > 0.3  # seen texels face the camera


def test_crop_helpers_against_direct_indexing():
    image = torch.arange(2 * 6 * 5, dtype=torch.float32).view(2, 6, 5)
    out = crop_and_resize(image, -1, 2, 4, 4)  # no resize: a padded copy
    expected = torch.zeros(2, 4, 4)
    expected[:, :, 1:] = image[:, 2:6, 0:3]
    torch.testing.assert_close(out, expected)
    A = crop_matrix(10, 20, 100, 50)
    torch.testing.assert_close(A @ torch.tensor([10.0 - 0.5 + 0.0, 20.0 - 0.5, 1.0], dtype=torch.float64),
                               torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64))  # the crop's corner
    mask = torch.zeros(100, 100)
    mask[40:60, 45:55] = 1
    left, top, side = square_crop_box(torch.tensor([[45.0, 40.0], [54.0, 59.0]]), mask)
    assert side >= 0.99 * 19 * 1.2 and left < 45 and top < 40 and left + side > 54 and top + side > 59


def test_pickles_are_validated_loudly(tmp_path):
    good = frame_params(0)
    vposer = {**good, "body_pose": np.zeros((1, 32), np.float32)}
    write_pickle(vposer, tmp_path / "vposer.pkl")
    with pytest.raises(ValueError, match="VPoser"):
        read_smplx_params(tmp_path / "vposer.pkl")
    smpl = {**good, "body_pose": np.zeros((1, 69), np.float32)}
    write_pickle(smpl, tmp_path / "smpl.pkl")
    with pytest.raises(ValueError, match="SMPL body_pose"):
        read_smplx_params(tmp_path / "smpl.pkl")
    write_pickle({k: v for k, v in good.items() if k != "jaw_pose"}, tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="jaw_pose"):
        read_smplx_params(tmp_path / "missing.pkl")
    # DINAR's variants: nested under "result", camera_translation instead of transl, 1-D arrays.
    nested = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in good.items() if k != "transl"}
    nested["camera_translation"] = good["transl"]
    write_pickle({"result": nested}, tmp_path / "nested.pkl")
    params = read_smplx_params(tmp_path / "nested.pkl")
    torch.testing.assert_close(params["transl"], torch.from_numpy(good["transl"]))
    assert params["body_pose"].shape == (1, 63) and params["gender"] == "neutral"


def test_wrong_hand_width_is_named(folder, tmp_path):
    from zoo.body import SMPLXBody
    from zoo.body.smplx_params import smplx_camera_vertices

    body = SMPLXBody(**folder["model"])
    params = read_smplx_params(folder["root"] / "smplx" / "frame00.pkl")
    params["left_hand_pose"] = torch.zeros(1, 45)
    with pytest.raises(ValueError, match="left_hand_pose has 45"):
        smplx_camera_vertices(body, params)


def test_missing_subfolder_is_reported(tmp_path, folder):
    (tmp_path / "rgb").mkdir()
    dm = DinarFolderDataModule(str(tmp_path), body=folder["model"])
    with pytest.raises(FileNotFoundError, match="segm"):
        dm.setup()


def test_ltrb_precrop_gives_the_same_item(folder, tmp_path):
    """A fit made on a crop of a larger photo ("ltrb" in the pickle) loads like the crop itself."""
    from PIL import Image

    src, dst = folder["root"], tmp_path / "bigger"
    for name in ("rgb", "segm", "smplx"):
        (dst / name).mkdir(parents=True)
    H, W = ORIGINAL_SIZE
    left, top = 20, 30
    for name in ("rgb", "segm"):
        small = np.asarray(Image.open(src / name / "frame00.png"))
        big = np.zeros((H + 50, W + 40, *small.shape[2:]), dtype=small.dtype)
        big[top:top + H, left:left + W] = small
        Image.fromarray(big).save(dst / name / "frame00.png")
    params = dict(folder["frames"]["frame00"][0], ltrb=[left, top, left + W, top + H])
    write_pickle(params, dst / "smplx" / "frame00.pkl")
    ref = DinarFolderDataModule(str(src), body=folder["model"], image_size=SIZE, texture_size=TEXTURE)
    new = DinarFolderDataModule(str(dst), body=folder["model"], image_size=SIZE, texture_size=TEXTURE)
    ref.setup()
    new.setup()
    a, b = ref.dataset[0], new.dataset[0]
    for key in ("source_image", "source_mask", "source_uv", "source_K", "crop_box"):
        torch.testing.assert_close(a[key], b[key])
