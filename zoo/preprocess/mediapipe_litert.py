"""MediaPipe's pose detector + pose landmarker ("full") and selfie segmenter on `ai-edge-litert`.

The graph MediaPipe wraps around its pose models, re-done with numpy / torch here:
1. Pose detector (224x224 letterboxed input in [-1, 1]): an SSD head over 2254 fixed-size anchors
   (strides 8, 16, 32, 32, 32; two anchors per cell), each with a box and 4 keypoints; sigmoid
   scores, score threshold 0.5, non-maximum suppression at IoU 0.3. Keypoint 0 is the hip centre
   and keypoint 1 a point above the head: the person's region is the square centred on the hips,
   side 2 x their distance x 1.25, rotated so that the body is upright.
2. Landmarker (that region warped to 256x256, input in [0, 1]): 39 points x (x, y, z, visibility,
   presence) in crop pixels, the first 33 are the pose landmarks; a pose-presence score; a
   256x256 segmentation logit map of the crop.
3. Selfie segmenter (256x256 input in [0, 1]): a person probability map; here run on the square
   crop around the detected person. It is made for video calls: on full bodies the landmarker's
   own mask is much better (mask IoU 0.89-0.95 vs 0.58-0.79 on synthetic renders), so that is
   the default segmenter of the photo pipeline and this one a plug-in alternative.

Files come from `python -m zoo.preprocess.fetch` (`zoo.preprocess.fetch.model_path`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.preprocess.fetch import model_path
from zoo.preprocess.interfaces import POSE_LANDMARKS, Box, Keypoints

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.25


def _interpreter(path: Path, num_threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("the preprocessing models run on `ai-edge-litert`: pip install ai-edge-litert") from error
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor.astype(np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in [0, 1] (x, y) of MediaPipe's pose detector, fixed size 1."""
    centres = []
    for stride, repeats in ((8, 1), (16, 1), (32, 3)):
        cells = DETECTOR_SIZE // stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs, ys], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, 2 * repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def crop_grid(centre: np.ndarray, size: float, up: np.ndarray, out: int, image_hw: tuple[int, int]) -> torch.Tensor:
    """(1, out, out, 2) grid_sample grid of a rotated square region: `centre` (x, y) px, side
    `size` px, the crop's up direction is the unit image vector `up`."""
    s, c = float(up[0]), float(-up[1])  # rotation taking crop-up (0, -1) to `up`
    t = (torch.arange(out, dtype=torch.float64) + 0.5) / out - 0.5
    v, u = torch.meshgrid(t, t, indexing="ij")
    x = centre[0] + size * (c * u - s * v)
    y = centre[1] + size * (s * u + c * v)
    H, W = image_hw
    grid = torch.stack([(x + 0.5) / W * 2 - 1, (y + 0.5) / H * 2 - 1], -1)
    return grid[None].float()


def crop_to_image(points: np.ndarray, centre: np.ndarray, size: float, up: np.ndarray, out: int) -> np.ndarray:
    """Crop pixel coordinates (N, 2) of `crop_grid`'s crop back to image pixels."""
    s, c = float(up[0]), float(-up[1])
    u = points[:, 0] / out - 0.5
    v = points[:, 1] / out - 0.5
    return np.stack([centre[0] + size * (c * u - s * v), centre[1] + size * (s * u + c * v)], -1)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def _paste_back(crop: np.ndarray, centre, size, up, image_hw) -> np.ndarray:
    """A (n, n) map of a rotated square crop resampled into the (H, W) image (0 outside the crop)."""
    H, W = image_hw
    n = crop.shape[0]
    s, c = float(up[0]), float(-up[1])
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    dx, dy = (xs - centre[0]) / size, (ys - centre[1]) / size
    u, v = c * dx + s * dy, -s * dx + c * dy  # inverse rotation
    grid = torch.stack([u * 2, v * 2], -1)[None].float()  # crop spans [-0.5, 0.5] -> [-1, 1]
    del n
    out = F.grid_sample(torch.from_numpy(crop)[None, None].float(), grid, align_corners=False, padding_mode="zeros")
    return out[0, 0].numpy()


class MediaPipePose:
    """`KeypointDetector`: MediaPipe pose detector + "full" landmarker on ai-edge-litert.

    Args:
        num_threads: litert CPU threads.
        score_threshold: minimum detector score of a person (MediaPipe's 0.5).
        presence_threshold: minimum landmarker pose-presence probability (MediaPipe's 0.5).
    """

    name = "mediapipe-pose-full-0.10.21"

    def __init__(self, num_threads: int = 1, score_threshold: float = SCORE_THRESHOLD,
                 presence_threshold: float = 0.5) -> None:
        self.detector = _interpreter(model_path("pose_detection.tflite"), num_threads)
        self.landmarker = _interpreter(model_path("pose_landmark_full.tflite"), num_threads)
        self.anchors = ssd_anchors()
        self.score_threshold, self.presence_threshold = score_threshold, presence_threshold

    def detect_regions(self, image: np.ndarray) -> list[dict]:
        """People found by the detector: box (x0, y0, x1, y1) px, score, hip centre and head point."""
        H, W = image.shape[:2]
        side = max(H, W)
        pad_x, pad_y = (side - W) / 2.0, (side - H) / 2.0
        tensor = _to_tensor(image)
        padded = F.pad(tensor, (int(pad_x), side - W - int(pad_x), int(pad_y), side - H - int(pad_y)))
        small = F.interpolate(padded, size=(DETECTOR_SIZE, DETECTOR_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)
        raw, logits = _run(self.detector, (small * 2 - 1).permute(0, 2, 3, 1).numpy())
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -60.0, 60.0)))
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        reg = raw[0, keep] / DETECTOR_SIZE
        anchor = self.anchors[keep]
        centre = reg[:, :2] + anchor
        half = reg[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], 1)
        points = reg[:, 4:12].reshape(-1, 4, 2) + anchor[:, None]
        to_px = lambda p: p * side - np.array([int(pad_x), int(pad_y)], np.float32)
        order = np.argsort(-scores[keep])
        found, suppressed = [], np.zeros(len(keep), bool)
        for i in order:
            if suppressed[i]:
                continue
            overlap = _iou(boxes[i], boxes) > NMS_IOU
            suppressed |= overlap
            corners = to_px(boxes[i].reshape(2, 2))
            found.append({"box": Box(*corners[0], *corners[1], float(scores[keep][i])),
                          "hips": to_px(points[i, 0]), "head": to_px(points[i, 1])})
        return found

    def landmarks(self, image: np.ndarray, region: dict) -> Keypoints | None:
        """33 landmarks of the person in `region` (None when the landmarker sees no pose there)."""
        H, W = image.shape[:2]
        direction = region["head"] - region["hips"]
        length = float(np.linalg.norm(direction))
        if length < 1e-6:
            return None
        up = direction / length
        size = 2 * length * ROI_SCALE
        grid = crop_grid(region["hips"], size, up, LANDMARK_SIZE, (H, W))
        crop = F.grid_sample(_to_tensor(image), grid, align_corners=False, padding_mode="zeros")
        raw, presence, segmentation, _, _ = _run(self.landmarker, crop.permute(0, 2, 3, 1).numpy())
        presence = float(presence.reshape(-1)[0])
        presence = presence if 0.0 <= presence <= 1.0 else 1.0 / (1.0 + math.exp(-presence))
        if presence < self.presence_threshold:
            return None
        values = raw.reshape(-1, 5)[: len(POSE_LANDMARKS)]
        xy = crop_to_image(values[:, :2], region["hips"], size, up, LANDMARK_SIZE)
        sigmoid = lambda z: 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
        confidence = sigmoid(values[:, 3]) * sigmoid(values[:, 4])
        inside = (xy[:, 0] >= 0) & (xy[:, 0] <= W - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= H - 1)
        mask = _paste_back(sigmoid(segmentation[0, :, :, 0]), region["hips"], size, up, (H, W))
        return Keypoints(POSE_LANDMARKS, xy, confidence * inside, region["box"], presence,
                         extra={"landmarker_mask": mask, "roi": {"centre": region["hips"].tolist(),
                                                                 "size": size, "up": up.tolist()}})

    def detect(self, image: np.ndarray) -> list[Keypoints]:
        people = []
        for region in self.detect_regions(image):
            keypoints = self.landmarks(image, region)
            if keypoints is not None:
                people.append(keypoints)
        return people


class SelfieSegmenter:
    """`Segmenter`: MediaPipe selfie segmentation (general, 256x256) on ai-edge-litert.

    With a `person` it runs on the square crop around them (upright, as the landmarker's region,
    enlarged by `context`), which suits full-body photos; without one, on the whole photo.

    Args:
        num_threads: litert CPU threads.
        context: crop side relative to the person's region.
    """

    name = "mediapipe-selfie-segmentation-0.10.21"

    def __init__(self, num_threads: int = 1, context: float = 1.0) -> None:
        self.model = _interpreter(model_path("selfie_segmentation.tflite"), num_threads)
        self.context = context

    def segment(self, image: np.ndarray, person: Keypoints | None = None) -> np.ndarray:
        H, W = image.shape[:2]
        if person is not None and "roi" in person.extra:
            roi = person.extra["roi"]
            centre, size, up = np.asarray(roi["centre"]), roi["size"] * self.context, np.asarray(roi["up"])
        else:
            centre, size, up = np.array([(W - 1) / 2, (H - 1) / 2]), float(max(H, W)), np.array([0.0, -1.0])
        grid = crop_grid(centre, size, up, LANDMARK_SIZE, (H, W))
        crop = F.grid_sample(_to_tensor(image), grid, align_corners=False, padding_mode="zeros")
        (probability,) = _run(self.model, crop.permute(0, 2, 3, 1).numpy())
        return np.clip(_paste_back(probability[0, :, :, 0], centre, size, up, (H, W)), 0.0, 1.0)


class LandmarkerSegmenter:
    """`Segmenter`: the segmentation output of the pose landmarker (needs its `Keypoints`)."""

    name = "mediapipe-pose-full-segmentation-0.10.21"

    def segment(self, image: np.ndarray, person: Keypoints | None = None) -> np.ndarray:
        if person is None or "landmarker_mask" not in person.extra:
            raise ValueError("LandmarkerSegmenter needs the Keypoints of MediaPipePose (they carry its mask)")
        return person.extra["landmarker_mask"]


__all__ = ["LandmarkerSegmenter", "MediaPipePose", "SelfieSegmenter", "crop_grid", "crop_to_image", "ssd_anchors"]
