"""Predict on a folder of photos: odd images, wrong aspect ratios, broken or malicious files."""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.datamodules.fixtures import PARAMS_CENTRE, PARAMS_FOCAL, write_pickle
from tests.datamodules.test_image_folder import SIZE, _module, write_photo_folder
from zoo.datamodules.datasets.photo_files import open_photo, safe_unpickle

bad_input = pytest.mark.bad_input


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def copy(folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(folder["root"], root)
    return root


def _item(folder, root, key: str, **kwargs):
    dm = _module(folder, root=root, **kwargs)
    dm.setup("predict")
    return dm.dataset[dm.dataset.ids.index(key)]


@bad_input("16-bit grey PNG photo", "scaled 65535 -> 255 (not clipped to all-white)")
def test_16_bit_png_is_scaled_not_clipped(folder, copy):
    value = np.full(SIZE, 128 * 257, dtype=np.uint16)
    Image.fromarray(value).save(copy / "rgb" / "a.png")
    assert open_photo(copy / "rgb" / "a.png").getpixel((3, 3)) == (128, 128, 128)
    image = _item(folder, copy, "a")["image"]
    assert torch.allclose(image, torch.full_like(image, 128 / 127.5 - 1), atol=1e-6)


@bad_input("JPEG with an EXIF orientation tag (phone photo taken sideways)",
           "rotated upright before anything else, as viewers show it")
def test_exif_rotation_is_applied(folder, copy):
    upright = np.zeros((*SIZE, 3), np.uint8)
    upright[:10] = 255  # a white band at the top of the upright photo
    stored = np.rot90(upright, k=1).copy()  # stored sideways: 64 rows x 128 columns
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(copy / "rgb" / "a.jpg", exif=exif, quality=100)
    (copy / "rgb" / "a.png").unlink()
    photo = open_photo(copy / "rgb" / "a.jpg")
    assert photo.size == (SIZE[1], SIZE[0])
    array = np.asarray(photo)
    assert array[:8].mean() > 240 and array[12:].mean() < 15
    assert _item(folder, copy, "a")["image"][:, :8].mean() > 0.9


@bad_input("photo of another aspect ratio than the model input (default)",
           "ValueError naming the file and both sizes; offers aspect='pad' or 'crop' (never squashed)")
def test_wrong_aspect_is_refused_by_default(folder):
    with pytest.raises(ValueError, match=r"rgb/b\.jpg is 96x96.*'pad'.*'crop'"):
        _item(folder, None, "b", aspect="refuse")


@bad_input("photo of another aspect ratio with aspect='pad'",
           "padded with black to the input's aspect, camera shifted with it (body stays aligned)")
def test_pad_keeps_the_person_undistorted(folder):
    item = _item(folder, None, "b", aspect="pad")
    s, top = SIZE[1] / 96, -48  # 96x96 padded to 96x192 (48 rows above and below), scaled 64 / 96
    assert (item["image"][:, :30] == -1).all() and (item["image"][:, -30:] == -1).all()
    expected = [[PARAMS_FOCAL * s, 0, (PARAMS_CENTRE[0] + 0.5) * s - 0.5],
                [0, PARAMS_FOCAL * s, (PARAMS_CENTRE[1] - top + 0.5) * s - 0.5], [0, 0, 1]]
    np.testing.assert_allclose(item["K"].numpy(), expected, atol=1e-4)
    rows = item["render_mask"][0].any(1).nonzero().flatten()
    assert rows.min() >= 32 and rows.max() < 96, "the body lies inside the photo's band"


@bad_input("photo of another aspect ratio with aspect='crop'", "centre-cropped, camera shifted with the crop")
def test_crop_cuts_the_centre(folder):
    item = _item(folder, None, "b", aspect="crop")
    source = np.asarray(Image.open(folder["root"] / "rgb" / "b.jpg").convert("RGB"), dtype=np.float32)
    crop = np.asarray(Image.fromarray(source[:, 24:72].astype(np.uint8)).resize((SIZE[1], SIZE[0]), Image.BILINEAR))
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), crop / 127.5 - 1, atol=1e-5)


@bad_input("a body fit that covers 0 pixels of its photo (camera behind / beside the body)",
           "ValueError naming the fit and the photo: fix the fit or remove the photo (no empty texture)")
def test_body_outside_the_photo_is_refused(folder, copy):
    write_pickle({"vertices": folder["written"]["sub/c"].astype(np.float32) - [0, 0, 100.0]}, copy / "smpl" / "sub" / "c.pkl")
    with pytest.raises(ValueError, match=r"smpl/sub/c\.pkl covers 0 pixels of .*rgb/sub/c\.png"):
        _item(folder, copy, "sub/c")


@bad_input("a fit whose vertices hold NaN", "ValueError naming the fit file")
def test_nan_fit_is_refused(folder, copy):
    vertices = folder["written"]["sub/c"].astype(np.float32).copy()
    vertices[3] = np.nan
    write_pickle({"vertices": vertices}, copy / "smpl" / "sub" / "c.pkl")
    with pytest.raises(ValueError, match=r"sub/c\.pkl: the fitted vertices hold NaN"):
        _item(folder, copy, "sub/c")


@pytest.mark.parametrize("kind,message", [
    pytest.param("truncated", "truncated or corrupt", marks=bad_input("truncated photo (an interrupted copy)",
                                                                     "ValueError naming the file: re-export it")),
    pytest.param("not_an_image", "not an image", marks=bad_input("a text file named .png",
                                                                 "ValueError naming the file: not an image")),
    pytest.param("huge", "above max_pixels", marks=bad_input("a photo above max_pixels (huge scan)",
                                                             "ValueError naming the file and its size: "
                                                             "downscale or raise max_pixels")),
])
def test_broken_photos_name_the_file(folder, copy, kind, message):
    path = copy / "rgb" / "a.png"
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif kind == "not_an_image":
        path.write_text("hello")
    with pytest.raises(ValueError, match=message) as err:
        _item(folder, copy, "a", max_pixels=1000 if kind == "huge" else 40_000_000)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("mode", [
    pytest.param(m, marks=bad_input(f"photo in PIL mode {m} ({what})", "converted to 8-bit RGB, same picture"))
    for m, what in [("L", "grey"), ("P", "palette"), ("CMYK", "print"), ("RGBA", "alpha"), ("LA", "grey + alpha"),
                    ("F", "32-bit float in [0, 1]")]
])
def test_odd_image_modes_become_rgb(tmp_path, mode):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    rgb = np.stack([grey] * 3, -1)
    if mode == "F":
        img = Image.fromarray(grey.astype(np.float32) / 255.0, "F")
        path = tmp_path / "photo.tiff"
    else:
        img = Image.fromarray(rgb).convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else \
            Image.fromarray(rgb).convert(mode)
        path = tmp_path / ("photo.jpg" if mode == "CMYK" else "photo.png")
    img.save(path)
    out = np.asarray(open_photo(path)).astype(int)
    assert out.shape == (8, 64, 3)
    assert np.abs(out - rgb).max() <= (3 if mode in ("CMYK", "P") else 0)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ZOO_MARKER']}",))


@pytest.mark.parametrize("kind,message", [
    pytest.param("garbage", "not a readable pickle", marks=bad_input("a body fit that is not a pickle",
                                                                     "ValueError naming the fit file")),
    pytest.param("truncated", "not a readable pickle", marks=bad_input("a truncated body-fit pickle",
                                                                      "ValueError naming the fit file")),
    pytest.param("code", "refusing to load posix.system", marks=bad_input(
        "a body-fit pickle that would run a command", "ValueError naming the file and the refused global; "
                                                      "nothing runs")),
])
def test_malformed_fits_name_the_file_and_run_nothing(folder, copy, kind, message):
    path = copy / "smpl" / "a.pkl"
    os.environ["ZOO_MARKER"] = str(copy / "ran")
    if kind == "garbage":
        path.write_bytes(b"\x00\x01 not a pickle")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_bytes(pickle.dumps({"vertices": _RunsCode()}))
    with pytest.raises(ValueError, match=message) as err:
        _item(folder, copy, "a")
    assert str(path) in str(err.value) and not (copy / "ran").exists()


def test_plain_data_pickles_still_load(tmp_path):
    data = {"vertices": np.ones((4, 3), np.float32), "cam_t": [0.0, 0.1, 2.0], "name": "x"}
    (tmp_path / "fit.pkl").write_bytes(pickle.dumps(data, protocol=2))
    loaded = safe_unpickle(tmp_path / "fit.pkl")
    assert np.array_equal(loaded["vertices"], data["vertices"]) and loaded["cam_t"] == data["cam_t"]


@bad_input("a person mask of another size than its photo", "ValueError naming the mask file and both sizes")
def test_mask_of_another_size_is_refused(folder, copy):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(copy / "segm" / "a.png")
    with pytest.raises(ValueError, match=r"segm/a\.png is 10x10 but its photo is 64x128"):
        _item(folder, copy, "a")
