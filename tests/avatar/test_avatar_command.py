"""`python -m zoo avatar` end to end on synthetic photos with a tiny untrained texture model:
every output is written and loads, bad photos get clear messages, missing pieces say what to do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from zoo.cli import main as zoo_main

TINY_CONFIG = {
    "model": {"class_path": "zoo.systems.texture_completion.TextureCompletionSystem",
              "init_args": {"network": {"class_path": "zoo.modules.texture_unet.TextureUNet",
                                        "init_args": {"in_channels": 3, "out_channels": 3, "extra_channels": 3,
                                                      "base_channels": 8, "depth": 2}}}},
    "data": {"class_path": "zoo.datamodules.SyntheticPeopleDataModule", "init_args": {"preset": "tiny"}},
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A run folder as `python -m zoo fit` leaves it: config.yaml beside checkpoints/last.ckpt."""
    from zoo.modules.texture_unet import TextureUNet
    from zoo.systems.texture_completion import TextureCompletionSystem

    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    torch.manual_seed(0)
    system = TextureCompletionSystem(TextureUNet(3, 3, 3, base_channels=8, depth=2))
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": system.state_dict()}, run / "checkpoints" / "last.ckpt")
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def photos(anny_body, tmp_path_factory):
    from zoo.fit.synthetic import random_person, render_photo

    folder = tmp_path_factory.mktemp("photos")
    betas, pose, texture = random_person(anny_body, seed=1)  # the detector finds this one (test_preprocess)
    photo = render_photo(anny_body, betas, pose, texture, (384, 384), yaw_deg=15.0, seed=1)
    Image.fromarray(photo.image).save(folder / "person.png")
    Image.fromarray(photo.image.mean(axis=2).astype(np.uint8)).save(folder / "gray.png")
    return folder


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        zoo_main(["avatar", *map(str, args)])
    return exit_info.value.code, capsys.readouterr()


@pytest.mark.slow
def test_avatar_folder_of_photos(mediapipe_models, photos, tiny_checkpoint, tmp_path, capsys):
    pygltflib = pytest.importorskip("pygltflib")
    from tests.export.test_amass import random_poses, write_amass

    trans = np.cumsum(np.full((20, 3), [0.0, 0.02, 0.0]), axis=0)  # walking along AMASS's +y
    amass = write_amass(tmp_path / "amass_walk.npz", random_poses(20, 165, scale=0.2), trans, fps=120.0)
    code, out = _run(capsys, photos, "--out", tmp_path, "--ckpt", tiny_checkpoint, "--fit-steps", 10, 10, 5,
                     "--render-size", 48, "--no-progress", "--motion", amass)
    assert code == 1  # the grayscale photo failed, the other one worked
    assert "gray.png: FAILED" in out.out and "grayscale" in out.out
    assert "person.png: keypoint error" in out.out
    for rel in ("rgb/person.png", "segm/person.png", "smpl/person.pkl", "anny/person.json", "overlay/person.png",
                "texture/person.png", "partial/person.png", "preprocess/person/keypoints.png",
                "avatar/person/avatar.glb", "avatar/person/rigged.glb", "avatar/person/turntable.gif",
                "avatar/person/motion.gif", "avatar/person/motion.mp4", "avatar/person/views.png", "avatar/person/summary.png"):
        assert (tmp_path / rel).is_file(), rel
    with Image.open(tmp_path / "texture" / "person.png") as texture:
        assert texture.size == (32, 32)  # the tiny preset's texture size, read from the run's config
    rigged = pygltflib.GLTF2().load(str(tmp_path / "avatar" / "person" / "rigged.glb"))
    assert len(rigged.skins[0].joints) == 104 and rigged.animations[0].name == "motion"
    # the AMASS motion, retargeted and resampled to 30 fps: 5 frames, the root translated
    assert {c.target.path for c in rigged.animations[0].channels} == {"rotation", "translation"}
    assert rigged.accessors[rigged.animations[0].samplers[0].input].count == 5
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "avatar" / "person" / "motion.mp4"))[0] == 5
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "avatar" / "person" / "turntable.mp4"))[0] == 24
    # The fit loads in the image-folder loader (body: anny), as a RefineTex predict run would read it.
    from zoo.datamodules.image_folder import ImageFolderDataModule

    item = next(iter(ImageFolderDataModule(str(tmp_path), image_size=(128, 64), batch_size=1, body="anny",
                                           aspect="pad").predict_dataloader()))  # square crops: padded, not squashed
    assert item["render_mask"].sum() > 100


def test_avatar_says_what_is_missing(photos, tmp_path, capsys):
    code, out = _run(capsys, photos / "person.png", "--out", tmp_path)
    assert code == 2 and "configs/quickstart.yaml" in out.err
    code, out = _run(capsys, tmp_path / "nope.png", "--out", tmp_path)
    assert code == 2 and "photo not found" in out.err


@pytest.fixture(scope="module")
def dinar_config(tmp_path_factory):
    """configs/dinar/one_image_avatar.yaml on tiny random networks (saved folders; 64 px input,
    16 px texture), 3 DDIM steps and 2 fine-tuning steps without LPIPS(vgg)."""
    from pathlib import Path

    from tests.inference.tiny_dinar import save_tiny_networks
    from zoo.avatar.methods import DINAR_CONFIG

    root = tmp_path_factory.mktemp("dinar")
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / DINAR_CONFIG).read_text())
    nets = save_tiny_networks(root / "nets", image_size=64, texture_size=16)
    args = config["model"]["init_args"]
    args.update(network=nets["avatar"], discriminator=nets["discriminator"], vqgan=nets["vqgan"],
                denoiser=nets["denoiser"], progress=False)
    args["pipeline"].update(sampling_steps=3, finetune_steps=2, rgb_erode=3)
    args["pipeline"]["finetune"].update(perceptual_weight=0.0, crop_size=32)  # LPIPS(vgg) is not on disk in tests
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root / "tiny.yaml"


def test_dinar_method_says_what_is_missing(mediapipe_models, photos, dinar_config, tmp_path, capsys):
    from zoo.avatar.methods import dinar_available

    assert dinar_available() == (True, "")  # DINAR's one-image pipeline is in the zoo
    config = yaml.safe_load(dinar_config.read_text())
    config["model"]["init_args"]["vqgan"] = str(tmp_path / "no-such-vqgan")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(config))
    code, out = _run(capsys, photos / "person.png", "--out", tmp_path, "--method", "dinar", "--config",
                     tmp_path / "missing.yaml")
    assert code == 2 and "no-such-vqgan" in out.err
    code, out = _run(capsys, photos / "person.png", "--out", tmp_path, "--method", "dinar", "--config", dinar_config,
                     "--ckpt", tmp_path / "none.ckpt")
    assert code == 2 and "checkpoint not found" in out.err


def test_dinar_method_without_the_pipeline_fails_clearly(photos, tmp_path, capsys, monkeypatch):
    import zoo.avatar.methods as methods

    monkeypatch.setattr(methods, "DINAR_ENTRY_POINTS", ("zoo.inference.no_such_pipeline",))
    code, out = _run(capsys, photos / "person.png", "--out", tmp_path, "--method", "dinar")
    assert code == 2 and "DINAR avatar not available" in out.err and "no_such_pipeline" in out.err


@pytest.mark.slow
def test_dinar_avatar_end_to_end(mediapipe_models, photos, dinar_config, tmp_path, capsys, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        code, out = _run(capsys, photos / "person.png", "--out", tmp_path, "--method", "dinar", "--config",
                         dinar_config, "--fit-steps", 10, 10, 5, "--render-size", 48, "--no-progress")
    assert code == 0, out
    from zoo.inference.dinar_pipeline import STAGES

    logged = [r.getMessage() for r in caplog.records]
    for stage in STAGES:  # every stage of DINAR's one-image pipeline ran (and logged its seconds)
        assert any(m.startswith(f"{stage}: ") and m.endswith(" s") for m in logged), stage
    folder = tmp_path / "avatar" / "person"
    for name in ("neural_turntable.gif", "neural_walk.gif", "neural_turntable.mp4", "neural_walk.mp4", "avatar.glb",
                 "rigged.glb", "motion.mp4"):
        assert (folder / name).is_file(), name
    with Image.open(folder / "neural_turntable.gif") as gif:
        assert gif.size == (64, 64) and gif.n_frames == 24  # the encoder's 64 px, one turn
    texture = np.asarray(Image.open(tmp_path / "texture" / "person.png").convert("RGB")).astype(int)
    partial = np.asarray(Image.open(tmp_path / "partial" / "person.png").convert("RGB")).astype(int)
    assert texture.shape == (16, 16, 3)
    # inpainted: texels the photo does not show get the decoder's colours (not one fill colour)
    unseen = partial.sum(-1) == 0
    assert 0 < unseen.sum() < unseen.size and texture[unseen].std(axis=0).min() > 0


def test_refinetex_system_texture_from_a_fitted_photo(anny_body):
    """The RefineTexSystem branch: a 2:1 re-crop of the person and the fitted body's part labels
    go through the (tiny, untrained) network; the texture has the network's UV size."""
    from tests.systems.test_refinetex_system import UV, tiny_system
    from zoo.avatar.methods import TextureFromPhoto
    from zoo.fit.synthetic import random_person, render_photo

    betas, pose, texture = random_person(anny_body, seed=1, texture_size=32)
    photo = render_photo(anny_body, betas, pose, texture, (128, 128), seed=1)
    texturer = TextureFromPhoto(tiny_system(reid=None, reid_weight=0.0, style_weight=0.0).eval(), anny_body)
    crop = torch.from_numpy(photo.image.copy()).permute(2, 0, 1).float() / 255
    out = texturer(crop, torch.from_numpy(photo.mask.astype(np.float32))[None], photo.vertices, photo.K)
    assert out["texture"].shape == (3, UV, UV)
    assert 0.0 <= float(out["texture"].min()) and float(out["texture"].max()) <= 1.0
