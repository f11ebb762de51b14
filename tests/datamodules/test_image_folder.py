"""ImageFolderDataModule on a tiny photo folder written here, and RefineTex predict on its batches."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from tests.datamodules.fixtures import (
    PARAMS_CENTRE,
    PARAMS_FOCAL,
    camera_vertices,
    params_reference,
    parser_pattern,
    photo,
    ray_cast_uv,
    write_pickle,
    write_tiny_smpl,
)
from zoo.datamodules.image_folder import ImageFolderDataModule

SIZE = (128, 64)
SPIN_F, SPIN_C = 5000.0 * 128 / 224, (31.5, 63.5)  # SPIN camera of a 128x64 image (128x128 render, centre crop)
KEYS = {"image", "parts", "render_parts", "mask", "render_mask", "uv", "K", "vertices", "person_id", "view_id", "id"}


def _save(array: np.ndarray, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def write_folder(root: Path, smpl: dict) -> dict:
    """Three photos, sorted ids a, b, sub/c:
    a (png, 128x64): [vertices, cam_t] fit, parser labels and a segm mask (left half);
    b (jpg, 96x96, centre-cropped to 96x48 with `aspect="crop"`): SMPL parameters with an explicit camera,
      nothing else;
    sub/c (png, 128x64): {"vertices"} dict fit, parser labels."""
    template = smpl["data"]["v_template"]
    a_vertices = camera_vertices(template, 20.0, (0.0, -0.17, 44.0))
    cam_t = np.array([0.01, -0.02, 0.5])
    _save(photo(SIZE, 0), root / "rgb" / "a.png")
    write_pickle([(a_vertices - cam_t).astype(np.float32), cam_t.astype(np.float32)], root / "smpl" / "a.pkl")
    _save(parser_pattern(SIZE, 3), root / "parts" / "a.png")
    segm = np.zeros(SIZE, np.uint8)
    segm[:, :32] = 255
    _save(segm, root / "segm" / "a.png")
    fit = {"betas": 0.5 * np.sin(np.arange(10)), "global_orient": np.array([np.pi, 0.0, 0.0]),
           "body_pose": np.zeros(69), "transl": np.array([0.05, -0.17, 3.4]),
           "focal": PARAMS_FOCAL, "centre": np.array(PARAMS_CENTRE)}
    _save(photo((96, 96), 1), root / "rgb" / "b.jpg", quality=95)
    write_pickle(fit, root / "smpl" / "b.pkl")
    c_vertices = camera_vertices(template, -60.0, (0.02, -0.17, 46.0))
    _save(photo(SIZE, 2), root / "rgb" / "sub" / "c.png")
    write_pickle({"vertices": c_vertices.astype(np.float32)}, root / "smpl" / "sub" / "c.pkl")
    _save(parser_pattern(SIZE, 5), root / "parts" / "sub" / "c.png")
    return {"a": a_vertices, "b": params_reference(smpl["data"], fit), "sub/c": c_vertices, "segm": segm}


def write_photo_folder(base: Path) -> dict:
    """A tiny SMPL under `base`/smpl_model and the photo folder `base`/photos written for it."""
    smpl = write_tiny_smpl(base / "smpl_model")
    return {"root": base / "photos", "smpl": smpl, "written": write_folder(base / "photos", smpl)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("image_folder"))


def _module(folder, root=None, **kwargs) -> ImageFolderDataModule:
    smpl = folder["smpl"]
    args = {"smpl_model_path": smpl["model"], "smpl_uv_path": smpl["uv"], "image_size": SIZE, "aspect": "crop",
            **kwargs}
    return ImageFolderDataModule(str(root or folder["root"]), **args)


def test_batches_have_the_predict_keys(folder):
    dm = _module(folder, batch_size=2)
    assert dm.ids == ["a", "b", "sub/c"]
    batches = list(dm.predict_dataloader())
    assert [len(b["id"]) for b in batches] == [2, 1]
    batch = batches[0]
    assert set(batch) == KEYS and batch["id"] == ["a", "b"]
    assert batch["image"].shape == (2, 3, *SIZE) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    for key in ("parts", "render_parts"):
        assert batch[key].shape == (2, *SIZE) and batch[key].dtype == torch.int64
        assert batch[key].min() >= 0 and batch[key].max() <= 7
    assert batch["mask"].shape == batch["render_mask"].shape == (2, 1, *SIZE) and batch["mask"].dtype == torch.float32
    assert batch["uv"].shape == (2, *SIZE, 2) and batch["uv"].dtype == torch.float32
    assert batch["K"].shape == (2, 3, 3)
    assert batch["vertices"].shape == (2, len(folder["smpl"]["data"]["v_template"]), 3)
    assert batch["person_id"].tolist() == batch["view_id"].tolist() == [0, 1]
    assert not any(k.startswith("novel_") for k in batch)
    for key, vertices in zip(batch["id"], batch["vertices"]):
        np.testing.assert_allclose(vertices.numpy(), folder["written"][key], atol=1e-4)
    # b's camera: focal / centre of the 96x96 photo, moved to its centre 48 columns (crop), then scaled
    # by 128 / 96 about pixel corners (one scale: nothing squashed).
    s, left = SIZE[0] / 96, 24
    expected_b = [[PARAMS_FOCAL * s, 0, (PARAMS_CENTRE[0] - left + 0.5) * s - 0.5],
                  [0, PARAMS_FOCAL * s, (PARAMS_CENTRE[1] + 0.5) * s - 0.5], [0, 0, 1]]
    np.testing.assert_allclose(batch["K"][1].numpy(), expected_b, atol=1e-4)
    np.testing.assert_allclose(batch["K"][0].numpy(), [[SPIN_F, 0, SPIN_C[0]], [0, SPIN_F, SPIN_C[1]], [0, 0, 1]],
                               atol=1e-4)


def test_render_mask_and_uv_agree_with_a_ray_cast(folder):
    dm = _module(folder)
    dm.setup("predict")
    smpl = folder["smpl"]
    for index, key in enumerate(dm.ids):
        item = dm.dataset[index]
        uv, render_mask = item["uv"].numpy(), item["render_mask"][0].numpy() > 0.5
        assert np.array_equal(render_mask, (uv > -2).all(-1)) and ((uv == -2).all(-1) == ~render_mask).all()
        K = item["K"].numpy()
        face, ref_uv, ambiguous = ray_cast_uv(folder["written"][key], smpl["faces"], smpl["corner_uvs"], K[0, 0],
                                              K[1, 1], K[0, 2], K[1, 2], SIZE)
        hit = face >= 0
        assert hit.sum() > 50 and (render_mask != hit).mean() < 0.002
        clear = render_mask & hit & ~ambiguous
        np.testing.assert_allclose(uv[clear], ref_uv[clear], atol=1e-3)
        if key == "a":  # the segm file is the mask
            assert np.array_equal(item["mask"][0].numpy(), (folder["written"]["segm"] > 0).astype(np.float32))
        else:
            assert torch.equal(item["mask"], item["render_mask"])


def test_parser_parts_when_present_else_mesh_parts(folder):
    dm = _module(folder)
    dm.setup("predict")
    a, b, c = (dm.dataset[i] for i in range(3))
    assert np.array_equal(a["parts"].numpy(), parser_pattern(SIZE, 3))
    assert np.array_equal(c["parts"].numpy(), parser_pattern(SIZE, 5))
    assert torch.equal(b["parts"], b["render_parts"]) and (b["parts"] > 0).sum() > 50
    assert not torch.equal(a["parts"], a["render_parts"])


def test_missing_files_name_the_file_and_the_key(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*`root`"):
        _module(folder, root=tmp_path / "nowhere").setup("predict")
    with pytest.raises(FileNotFoundError, match=r"rgb.*`root`"):
        _module(folder, root=tmp_path).setup("predict")
    root = tmp_path / "copy"
    shutil.copytree(folder["root"], root)
    (root / "smpl" / "sub" / "c.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"SMPL fit.*smpl/sub/c\.pkl.*`root`"):
        _module(folder, root=root).setup("predict")
    with pytest.raises(FileNotFoundError, match=r"SMPL model file.*missing\.pkl.*`smpl_model_path`"):
        _module(folder, smpl_model_path=str(tmp_path / "missing.pkl")).setup("predict")
    # Without the model file the parts of b (no parser file) cannot be rendered.
    (root / "smpl" / "b.pkl").unlink()
    (root / "rgb" / "b.jpg").unlink()
    shutil.copy(folder["root"] / "smpl" / "sub" / "c.pkl", root / "smpl" / "sub" / "c.pkl")
    (root / "parts" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"parts/a\.png.*`smpl_model_path`"):
        _module(folder, root=root, smpl_model_path=None).setup("predict")


def test_only_predict(folder):
    dm = _module(folder)
    for loader in (dm.train_dataloader, dm.val_dataloader, dm.test_dataloader):
        with pytest.raises(RuntimeError, match="predict-only"):
            loader()
    with pytest.raises(RuntimeError, match="predict-only"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="batch_size"):
        _module(folder, batch_size=0)


def test_refinetex_predicts_textures_for_the_folder(folder, tmp_path):
    from tests.systems.test_refinetex_system import UV, tiny_system

    torch.set_num_threads(1)
    from zoo.callbacks import TextureWriter

    system = tiny_system(None, reid_weight=0.0, style_weight=0.0)
    dm = _module(folder, image_size=(32, 16), batch_size=2)
    writer = TextureWriter(output_dir=str(tmp_path / "pred"))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[writer])
    trainer.predict(system, datamodule=dm)
    written = writer.written
    expected = [tmp_path / "pred" / "textures" / f"view_{i:05d}.png" for i in range(3)]
    assert sorted(written) == [str(p) for p in expected]  # textures only: no Anny meshes for this data
    for path in expected:
        with Image.open(path) as img:
            assert img.size == (UV, UV) and img.mode == "RGB"
