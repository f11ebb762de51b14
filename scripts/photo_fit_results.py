"""Accuracy of the photo front end on synthetic renders with known truth -> docs/photo_fit.md.

For random synthetic people (Anny shape + pose + procedural clothes, 512x512, several yaws):
- preprocessing: detection rate; 2D keypoint error of MediaPipe vs the true joints (px); mask IoU;
- fit: 2D error of the fitted body's joints vs the true joints (px, in the photo) and the fitted
  silhouette's IoU with the true one;
- downstream: texture L1 (0..255) against the true texture, on the texels the photo shows and on
  the whole atlas, of the quick-start model's texture from the fitted body vs from the true body
  (the difference is what the fit error costs).

    python scripts/photo_fit_results.py --ckpt <quickstart last.ckpt> [--people 10] [--work outputs/photo_fit]

Resumable: one JSON per person under --work; rerun to finish or to rebuild the table.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zoo.avatar.methods import TextureFromPhoto
from zoo.avatar.pipeline import summary_picture
from zoo.body import AnnyBody
from zoo.export import render_textured
from zoo.fit.anny_fit import JOINT_KEYPOINTS, fit_body
from zoo.fit.io import overlay
from zoo.fit.synthetic import random_person, render_photo
from zoo.metrics.tables import write_metric_tables
from zoo.preprocess import PhotoError, default_backends
from zoo.preprocess.photo import check_photo, choose_person, crop_square, to_crop
from zoo.render import rasterize

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("photo_fit_results")
YAWS = (0, 25, -35, 60, 180, 10, -15, 150, 40, -60, 90, -120)
LIMB_KEYPOINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


def crop_K(K: torch.Tensor, box, size: int) -> torch.Tensor:
    """Intrinsics of the square crop `box` (x0, y0, side) resized to `size` (pixel centres at integers)."""
    x0, y0, side = box
    s = size / side
    out = K.clone()
    out[0, 0], out[1, 1] = K[0, 0] * s, K[1, 1] * s
    out[0, 2], out[1, 2] = (K[0, 2] - x0 + 0.5) * s - 0.5, (K[1, 2] - y0 + 0.5) * s - 0.5
    return out


def projected(points: torch.Tensor, K: torch.Tensor) -> np.ndarray:
    uvw = points @ K.T
    return (uvw[:, :2] / uvw[:, 2:]).numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def one_person(seed: int, body, detector, segmenter, texturer, work: Path, size: int = 512) -> dict:
    out_file = work / f"person_{seed:03d}.json"
    if out_file.is_file():
        return json.loads(out_file.read_text())
    yaw = YAWS[seed % len(YAWS)]
    betas, pose, texture = random_person(body, seed)
    photo = render_photo(body, betas, pose, texture, (size, size), yaw_deg=float(yaw), seed=seed)
    record = {"seed": seed, "yaw": yaw}
    bones = [body.joint_names.index(JOINT_KEYPOINTS[n]) for n in LIMB_KEYPOINTS]
    truth_xy = projected(photo.joints, photo.K)[bones]
    try:
        image = check_photo(photo.image)
        person, _ = choose_person(detector.detect(image))
    except PhotoError as error:
        record["detected"] = False
        record["why"] = str(error)
        out_file.write_text(json.dumps(record))
        return record
    record["detected"] = True
    det = np.stack([person.get(n)[0] for n in LIMB_KEYPOINTS])
    record["detector_px"] = float(np.linalg.norm(det - truth_xy, axis=1).mean())
    mask = segmenter.segment(image, person)
    record["mask_iou"] = iou(mask > 0.5, photo.mask)
    crop, mcrop, box = crop_square(image, mask, person, size)
    keypoints = to_crop(person, box, size)
    start = time.perf_counter()
    fit = fit_body(body, keypoints, mcrop)
    record["fit_seconds"] = time.perf_counter() - start
    px_per_crop = box[2] / size
    fitted_xy = projected(fit.joints, fit.K)[bones] * px_per_crop + np.array(box[:2]) + 0.5 * px_per_crop - 0.5
    record["fit_px"] = float(np.linalg.norm(fitted_xy - truth_xy, axis=1).mean())
    K_true = crop_K(photo.K, box, size)
    true_sil = rasterize(photo.vertices[None], body.faces, K_true[None], (size, size)).mask[0].numpy()
    fit_sil = rasterize(fit.vertices[None], body.faces, fit.K[None], (size, size)).mask[0].numpy()
    record["fit_iou"] = iou(fit_sil, true_sil)
    record["body_height_px"] = float(np.ptp(np.nonzero(photo.mask)[0]))
    crop_t = torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255
    mask_t = torch.from_numpy(mcrop.copy())[None]
    with torch.no_grad():
        from_fit = texturer(crop_t, mask_t, fit.vertices, fit.K)
        from_truth = texturer(crop_t, torch.from_numpy(true_sil.astype(np.float32))[None], photo.vertices, K_true)
    T = from_fit["texture"].shape[-1]
    gt = F.interpolate(texture[None], size=(T, T), mode="area")[0]
    atlas = texturer.atlas[0] > 0.5
    seen = (from_truth["known_mask"][0] > 0.5) & atlas
    for name, pred in (("fit", from_fit["texture"]), ("truth", from_truth["texture"])):
        err = (pred - gt).abs().mean(0) * 255
        record[f"texture_l1_seen_{name}"] = float(err[seen].mean())
        record[f"texture_l1_atlas_{name}"] = float(err[atlas].mean())
    tex_u8 = (from_fit["texture"].permute(1, 2, 0) * 255).round().byte().numpy()
    with torch.no_grad():
        standing = body(betas=fit.betas, pose=body.pose_from_controls(1)).vertices[0]
    views = [render_textured(standing, body.faces, body.corner_uvs, from_fit["texture"], y, 256) for y in (0, 180)]
    picture = summary_picture(crop, mcrop, keypoints, overlay(crop, fit, body.faces), tex_u8, views)
    Image.fromarray(picture).save(work / f"person_{seed:03d}.png")
    out_file.write_text(json.dumps(record))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="quick-start checkpoint (its run folder has config.yaml)")
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "photo_fit")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    body = AnnyBody().eval()
    detector, segmenter = default_backends()
    texturer = TextureFromPhoto.from_checkpoint(args.ckpt, None, body)
    records = []
    for seed in range(args.people):
        records.append(one_person(seed, body, detector, segmenter, texturer, args.work))
        log.info("person %d: %s", seed, records[-1])
    found = [r for r in records if r["detected"]]
    mean = lambda key: float(np.mean([r[key] for r in found]))
    rows = {
        "people detected": {"value": f"{len(found)} / {len(records)}"},
        "MediaPipe keypoints vs true joints (px)": {"value": mean("detector_px")},
        "MediaPipe mask IoU": {"value": mean("mask_iou")},
        "fitted body joints vs true joints (px)": {"value": mean("fit_px")},
        "fitted silhouette IoU": {"value": mean("fit_iou")},
        "texture L1 on seen texels, fitted body": {"value": mean("texture_l1_seen_fit")},
        "texture L1 on seen texels, true body": {"value": mean("texture_l1_seen_truth")},
        "texture L1 on the atlas, fitted body": {"value": mean("texture_l1_atlas_fit")},
        "texture L1 on the atlas, true body": {"value": mean("texture_l1_atlas_truth")},
        "fit time per photo (s)": {"value": mean("fit_seconds")},
    }
    per_person = {f"seed {r['seed']} (yaw {r['yaw']})": (
        {"kp px": r["detector_px"], "mask IoU": r["mask_iou"], "fit px": r["fit_px"], "fit IoU": r["fit_iou"],
         "tex L1 seen fit / truth": f"{r['texture_l1_seen_fit']:.1f} / {r['texture_l1_seen_truth']:.1f}"}
        if r["detected"] else {"kp px": "not detected"}) for r in records}
    write_metric_tables(args.out, "photo_fit", {
        "Photo front end on synthetic renders (512x512, body ~410 px high; means over detected people)":
            (["value"], rows),
        "Per person": (["kp px", "mask IoU", "fit px", "fit IoU", "tex L1 seen fit / truth"], per_person)},
        notes=["python scripts/photo_fit_results.py --ckpt <quick-start last.ckpt>; fit time is wall time on a 2-core CPU "
               "shared with other jobs (default 60 + 120 + 80 iterations).",
               "photo_fit.png: the first detected people (photo, mask + keypoints, fit, texture, front and back views).",
               ("Joints: shoulders, elbows, wrists, hips, knees, ankles (Anny bone heads; MediaPipe's ankle sits "
                "~15 px above Anny's foot bone head, part of the detector error)."),
               ("Texture L1 in 0..255 per channel at the model's 64x64 UV size; 'true body' renders the photo's UV "
                "with the true mesh and camera, so fitted minus true is the cost of the fit error.")])
    pictures = [np.asarray(Image.open(args.work / f"person_{r['seed']:03d}.png")) for r in found[:4]]
    if pictures:
        width = max(p.shape[1] for p in pictures)
        pictures = [np.pad(p, ((0, 6), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
        picture = Image.fromarray(np.concatenate(pictures, 0))
        picture.resize((picture.width * 3 // 4, picture.height * 3 // 4), Image.LANCZOS).quantize(256).save(
            args.out / "photo_fit.png", optimize=True)


if __name__ == "__main__":
    main()
