"""The small interface every preprocessing back-end implements (plug in your own).

A `KeypointDetector` finds the people in a photo and their 2D body keypoints; a `Segmenter`
gives a soft person mask, optionally told where the person is. Photos are (H, W, 3) uint8 RGB
numpy arrays; coordinates are pixels with pixel centres at integers (x right, y down), the
zoo's camera convention (`zoo.render.camera`).

Keypoint names are MediaPipe's 33 pose landmark names (`POSE_LANDMARKS`); another back-end may
return any subset of them (the body fit uses the names it knows and ignores the others).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

POSE_LANDMARKS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
# Drawn as lines in the keypoint PNG.
SKELETON: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ear", "left_eye"), ("left_eye", "nose"), ("nose", "right_eye"), ("right_eye", "right_ear"),
)


@dataclass
class Box:
    """An axis-aligned box in pixels (x0, y0) top-left to (x1, y1) bottom-right, with a score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass
class Keypoints:
    """One person's 2D keypoints.

    names: K keypoint names (see `POSE_LANDMARKS`); xy: (K, 2) float pixels; confidence: (K,) in
    [0, 1] (visible and inside the photo); box: the person's box; score: the detection score.
    """

    names: tuple[str, ...]
    xy: np.ndarray
    confidence: np.ndarray
    box: Box
    score: float = 1.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.xy = np.asarray(self.xy, dtype=np.float32).reshape(-1, 2)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        if not (len(self.names) == self.xy.shape[0] == self.confidence.shape[0]):
            raise ValueError(f"{len(self.names)} names, {self.xy.shape[0]} points and {self.confidence.shape[0]} "
                             "confidences must agree")

    def get(self, name: str) -> tuple[np.ndarray, float]:
        """(xy (2,), confidence) of one named keypoint; confidence 0 when the back-end lacks it."""
        if name not in self.names:
            return np.zeros(2, np.float32), 0.0
        i = self.names.index(name)
        return self.xy[i], float(self.confidence[i])

    def to_json(self) -> dict:
        return {"names": list(self.names), "xy": self.xy.round(2).tolist(),
                "confidence": self.confidence.round(4).tolist(), "score": float(self.score),
                "box": [float(v) for v in (self.box.x0, self.box.y0, self.box.x1, self.box.y1, self.box.score)]}

    @classmethod
    def from_json(cls, data: dict) -> Keypoints:
        b = data["box"]
        return cls(tuple(data["names"]), np.asarray(data["xy"]), np.asarray(data["confidence"]),
                   Box(*b), float(data["score"]))


@runtime_checkable
class KeypointDetector(Protocol):
    """Finds every person in a photo: one `Keypoints` per person, best first (empty: nobody)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Keypoints]:
        ...


@runtime_checkable
class Segmenter(Protocol):
    """A soft person mask (H, W) float in [0, 1] of the photo; `person` (may be None) says where
    the person is, so a segmenter can work on a crop around them."""

    name: str

    def segment(self, image: np.ndarray, person: Keypoints | None = None) -> np.ndarray:
        ...


__all__ = ["POSE_LANDMARKS", "SKELETON", "Box", "KeypointDetector", "Keypoints", "Segmenter"]
