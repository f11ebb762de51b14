"""Bad values at the public entries: rasteriser, cameras, body models, pretrained folders."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.pretrained import load_pretrained
from zoo.render import intrinsics, rasterize

bad_input = pytest.mark.bad_input


def _triangle():
    vertices = torch.tensor([[[-0.5, -0.5, 3.0], [0.5, -0.5, 3.0], [0.0, 0.5, 3.0]]])
    faces = torch.tensor([[0, 1, 2]])
    return vertices, faces, intrinsics(20.0, (16, 16))


@pytest.mark.parametrize("what,message", [
    pytest.param("nan_vertices", r"vertices hold NaN or inf \(batch items \[0\]\)",
                 marks=bad_input("NaN vertices into the rasteriser", "ValueError naming the batch items")),
    pytest.param("inf_vertices", r"vertices hold NaN or inf",
                 marks=bad_input("inf vertices into the rasteriser", "ValueError naming the batch items")),
    pytest.param("zero_focal", r"positive focal lengths.*\[\[0\.0, 20\.0\]\]",
                 marks=bad_input("zero focal length in K", "ValueError: a zero focal collapses the image")),
    pytest.param("negative_focal", r"positive focal lengths",
                 marks=bad_input("negative focal length in K", "ValueError: a negative focal mirrors the image")),
    pytest.param("nan_K", r"K holds NaN or inf",
                 marks=bad_input("NaN in the intrinsics K", "ValueError: check the camera")),
])
def test_rasteriser_rejects_non_finite_geometry_and_bad_focals(what, message):
    vertices, faces, K = _triangle()
    if what == "nan_vertices":
        vertices[0, 1, 2] = math.nan
    elif what == "inf_vertices":
        vertices[0, 0, 0] = math.inf
    elif what == "zero_focal":
        K[0, 0, 0] = 0.0
    elif what == "negative_focal":
        K[0, 1, 1] = -20.0
    else:
        K[0, 0, 2] = math.nan
    with pytest.raises(ValueError, match=message):
        rasterize(vertices, faces, K, (16, 16))


def test_rasteriser_still_draws_good_input():
    vertices, faces, K = _triangle()
    assert rasterize(vertices, faces, K, (16, 16)).mask.sum() > 10


@pytest.mark.parametrize("focal", [
    pytest.param(0.0, marks=bad_input("intrinsics() with focal 0", "ValueError naming the focal")),
    pytest.param(math.nan, marks=bad_input("intrinsics() with a NaN focal", "ValueError naming the focal")),
])
def test_intrinsics_rejects_bad_focals(focal):
    with pytest.raises(ValueError, match="focal must be positive and finite"):
        intrinsics(focal, (16, 16))


@pytest.fixture(scope="module")
def body():
    from zoo.body import AnnyBody

    return AnnyBody()


@pytest.mark.parametrize("name,value", [
    pytest.param("betas", math.nan, marks=bad_input("NaN body shape parameters",
                                                   "ValueError naming the parameter and the batch rows")),
    pytest.param("pose", math.inf, marks=bad_input("inf body pose parameters",
                                                  "ValueError naming the parameter and the batch rows")),
])
def test_body_rejects_non_finite_parameters(body, name, value):
    params = {"betas": torch.zeros(2, body.num_betas), "pose": torch.zeros(2, body.num_pose_params)}
    params[name][1, 0] = value
    with pytest.raises(ValueError, match=rf"{name} holds NaN or inf \(batch rows \[1\]\)"):
        body(**params)


def _saved(tmp_path):
    from zoo.modules.texture_unet import TextureUNet

    TextureUNet(base_channels=4, depth=2).save_pretrained(tmp_path / "unet")
    return tmp_path / "unet"


@pytest.mark.parametrize("damage,error,message", [
    pytest.param("bad_yaml", ValueError, r"config\.yaml is not valid YAML",
                 marks=bad_input("pretrained config.yaml that is not YAML", "ValueError naming the file")),
    pytest.param("not_mapping", ValueError, r"config\.yaml must be a mapping with a class_path",
                 marks=bad_input("pretrained config.yaml without class_path", "ValueError naming the file")),
    pytest.param("no_weights", FileNotFoundError, r"model\.safetensors is missing",
                 marks=bad_input("pretrained folder without model.safetensors",
                                 "FileNotFoundError naming the file: an unfinished save or copy")),
    pytest.param("truncated", ValueError, r"model\.safetensors is truncated or not a safetensors file",
                 marks=bad_input("truncated model.safetensors", "ValueError naming the file")),
    pytest.param("torch_pickle", ValueError, r"model\.safetensors is truncated or not a safetensors file",
                 marks=bad_input("a torch pickle renamed model.safetensors",
                                 "ValueError naming the file (never unpickled)")),
])
def test_damaged_pretrained_folders_are_named(tmp_path, damage, error, message):
    folder = _saved(tmp_path)
    weights = folder / "model.safetensors"
    if damage == "bad_yaml":
        (folder / "config.yaml").write_text("class_path: [unclosed\n")
    elif damage == "not_mapping":
        (folder / "config.yaml").write_text("- just\n- a list\n")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        torch.save({"w": torch.zeros(2)}, weights)
    with pytest.raises(error, match=message):
        load_pretrained(folder)


def test_intact_pretrained_folder_loads(tmp_path):
    folder = _saved(tmp_path)
    assert load_pretrained(folder).config["init_args"]["base_channels"] == 4


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {os.environ['ZOO_MARKER']}",))


@bad_input("an SMPL model .pkl that would run a command when unpickled",
           "ValueError naming the file and the refused global; nothing runs")
def test_smpl_model_pickle_runs_no_code(tmp_path, monkeypatch):
    import pickle

    from zoo.body import SMPLBody

    monkeypatch.setenv("ZOO_MARKER", str(tmp_path / "ran"))
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(pickle.dumps({"v_template": _RunsCode()}))
    (tmp_path / "smpl_uv.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match=r"SMPL_NEUTRAL\.pkl: refusing to load posix\.system"):
        SMPLBody(str(tmp_path / "SMPL_NEUTRAL.pkl"), str(tmp_path / "smpl_uv.obj"))
    assert not (tmp_path / "ran").exists()


@bad_input("a DINAR SMPL-X fit .pkl that would run a command when unpickled",
           "ValueError naming the file and the refused global; nothing runs")
def test_smplx_fit_pickle_runs_no_code(tmp_path, monkeypatch):
    import pickle

    from zoo.body.smplx_params import read_smplx_params

    monkeypatch.setenv("ZOO_MARKER", str(tmp_path / "ran"))
    (tmp_path / "0001.pkl").write_bytes(pickle.dumps({"betas": _RunsCode()}))
    with pytest.raises(ValueError, match=r"0001\.pkl: refusing to load posix\.system.*SMPL-X fit"):
        read_smplx_params(tmp_path / "0001.pkl")
    assert not (tmp_path / "ran").exists()
