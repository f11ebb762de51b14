"""Photo preprocessing: the fetch command's checks, the real litert models on synthetic renders,
the crop geometry and the clear errors for photos the pipeline cannot use."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from zoo.preprocess import PhotoError, preprocess_photo
from zoo.preprocess.fetch import MODEL_FILES, extract, model_path
from zoo.preprocess.interfaces import POSE_LANDMARKS, Box, Keypoints
from zoo.preprocess.photo import choose_person, crop_square, load_photo, to_crop

# MediaPipe keypoint -> the Anny bone whose head is that joint (truth of the synthetic renders).
TRUTH_BONES = {"left_shoulder": "upperarm01.L", "right_shoulder": "upperarm01.R", "left_elbow": "lowerarm01.L",
               "right_elbow": "lowerarm01.R", "left_hip": "upperleg01.L", "right_hip": "upperleg01.R",
               "left_knee": "lowerleg01.L", "right_knee": "lowerleg01.R"}


def test_missing_models_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(FileNotFoundError, match="python -m zoo.preprocess.fetch"):
        model_path("selfie_segmentation.tflite")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown preprocessing model"):
        model_path("nope.tflite")


def test_extract_refuses_wrong_files(tmp_path):
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member, _ in MODEL_FILES.values():
            archive.writestr(member, b"not the model")
    with pytest.raises(ValueError, match="sha256"):
        extract(wheel, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.tflite"))
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other.txt", b"")
    with pytest.raises(ValueError, match="has no mediapipe/modules"):
        extract(empty, tmp_path / "out")


def test_crop_maps_keypoints_onto_the_same_content():
    image = np.zeros((300, 400, 3), np.uint8)
    image[119:122, 249:252] = 255  # a bright 3x3 blob centred on the keypoint
    mask = np.zeros((300, 400), np.float32)
    mask[50:250, 150:300] = 1
    person = Keypoints(("nose",), np.array([[250.0, 120.0]]), np.array([1.0]), Box(150, 50, 300, 250))
    crop, mcrop, box = crop_square(image, mask, person, size=180)
    assert box[2] == pytest.approx(200 * 1.2)  # the mask box's longer side (200 px) x 1.2
    moved = to_crop(person, box, 180)
    weight = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
    centroid = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, moved.xy[0], atol=0.05)
    assert mcrop.sum() * (box[2] / 180) ** 2 == pytest.approx(mask.sum(), rel=0.02)


def _save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def test_bad_photos_give_clear_errors(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with pytest.raises(PhotoError, match="not found"):
        load_photo(tmp_path / "missing.png")
    with pytest.raises(PhotoError, match="tiny"):
        load_photo(_save(tmp_path, "tiny.png", rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)))
    with pytest.raises(PhotoError, match="grayscale"):
        load_photo(_save(tmp_path, "gray.png", rng.integers(0, 255, (200, 150), dtype=np.uint8)))
    gray_rgb = np.repeat(rng.integers(0, 255, (200, 150, 1), dtype=np.uint8), 3, axis=2)
    with pytest.raises(PhotoError, match="grayscale"):
        load_photo(_save(tmp_path, "gray_rgb.png", gray_rgb))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(PhotoError, match="not a readable image"):
        load_photo(tmp_path / "broken.jpg")
    monkeypatch.setattr("zoo.preprocess.photo.MAX_PIXELS", 100 * 100)
    with pytest.raises(PhotoError, match="huge"):
        load_photo(_save(tmp_path, "huge.png", rng.integers(0, 255, (200, 150, 3), dtype=np.uint8)))


def _person(x0, height, confidence=1.0):
    xy = np.tile(np.array([[x0 + 10, 10 + height / 2]], np.float32), (len(POSE_LANDMARKS), 1))
    return Keypoints(POSE_LANDMARKS, xy, np.full(len(POSE_LANDMARKS), confidence), Box(x0, 10, x0 + 40, 10 + height))


def test_person_choice_rules():
    with pytest.raises(PhotoError, match="no person"):
        choose_person([])
    with pytest.raises(PhotoError, match="2 people"):
        choose_person([_person(0, 300), _person(100, 250)])
    main, notes = choose_person([_person(0, 300), _person(100, 50)])
    assert main.box.height == 300 and "ignored" in notes[0]
    with pytest.raises(PhotoError, match="tiny"):
        choose_person([_person(0, 30)])
    _, notes = choose_person([_person(0, 300, confidence=0.2)])
    assert any("cut off" in n for n in notes)


@pytest.fixture(scope="module")
def synthetic(anny_body):
    from zoo.fit.synthetic import random_person, render_photo

    betas, pose, texture = random_person(anny_body, seed=1)
    return render_photo(anny_body, betas, pose, texture, (384, 384), yaw_deg=15.0, seed=1)


def test_litert_models_on_a_synthetic_render(mediapipe_models, synthetic, anny_body, tmp_path):
    from zoo.preprocess import default_backends
    from zoo.preprocess.mediapipe_litert import SelfieSegmenter

    detector, segmenter = default_backends()
    people = detector.detect(synthetic.image)
    assert len(people) == 1
    person = people[0]
    uvw = synthetic.joints @ synthetic.K.T
    truth = (uvw[:, :2] / uvw[:, 2:]).numpy()
    for name, bone in TRUTH_BONES.items():
        xy, confidence = person.get(name)
        assert confidence > 0.5, name
        # 384 px photo, body ~300 px high: within 6% of the body height of the skeleton's joint.
        assert np.linalg.norm(xy - truth[anny_body.joint_names.index(bone)]) < 18, name
    for seg, bound in ((segmenter, 0.85), (SelfieSegmenter(), 0.4)):
        mask = seg.segment(synthetic.image, person) > 0.5
        iou = (mask & synthetic.mask).sum() / (mask | synthetic.mask).sum()
        assert iou > bound, (seg.name, iou)
    photo = _save(tmp_path, "person.png", synthetic.image)
    out = preprocess_photo(photo, tmp_path / "pp", detector, segmenter, crop_size=256)
    for name in ("crop.png", "mask.png", "keypoints.png", "keypoints.json", "preprocess.json"):
        assert (tmp_path / "pp" / name).is_file(), name
    assert out.crop.shape == (256, 256, 3) and out.warnings == []
    meta = json.loads((tmp_path / "pp" / "preprocess.json").read_text())
    assert meta["backends"]["detector"] == detector.name
    again = preprocess_photo(photo, tmp_path / "pp", detector, segmenter, crop_size=256)  # read from the cache
    np.testing.assert_array_equal(again.crop, out.crop)
    np.testing.assert_allclose(again.keypoints.xy, out.keypoints.xy, atol=0.01)


def test_no_person_several_people_and_cut_off(mediapipe_models, synthetic, tmp_path):
    from zoo.preprocess import default_backends

    detector, segmenter = default_backends()
    rng = np.random.default_rng(0)
    empty = (rng.random((256, 256, 3)) * 60 + 90).astype(np.uint8)
    with pytest.raises(PhotoError, match="no person"):
        preprocess_photo(_save(tmp_path, "empty.png", empty), tmp_path / "e", detector, segmenter)
    two = np.concatenate([synthetic.image, synthetic.image], axis=1)
    with pytest.raises(PhotoError, match="2 people"):
        preprocess_photo(_save(tmp_path, "two.png", two), tmp_path / "t", detector, segmenter)
    upper = np.ascontiguousarray(synthetic.image[: synthetic.image.shape[0] // 2 + 20])
    out = preprocess_photo(_save(tmp_path, "upper.png", upper), tmp_path / "u", detector, segmenter)
    assert any("cut off" in w and "ankle" in w for w in out.warnings)
