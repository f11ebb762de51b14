"""Photo preprocessing: person mask, 2D keypoints and the square crop, with packaged models.

Layer: beside `zoo.body` / `zoo.modules` (imports only `zoo.pretrained`); `zoo.fit` and the
avatar command build on it. Back-ends implement `KeypointDetector` / `Segmenter`
(`zoo.preprocess.interfaces`); the default ones run MediaPipe's Apache-2.0 models on
`ai-edge-litert` (`zoo.preprocess.mediapipe_litert`), fetched once with
`python -m zoo.preprocess.fetch`.
"""
from zoo.preprocess.interfaces import (
    POSE_LANDMARKS,
    Box,
    KeypointDetector,
    Keypoints,
    Segmenter,
)
from zoo.preprocess.photo import PhotoError, Preprocessed, load_photo, preprocess_photo


def default_backends(num_threads: int = 1) -> tuple[KeypointDetector, Segmenter]:
    """MediaPipe pose ("full") as the detector and its own mask as the segmenter (the better one
    on full bodies; `SelfieSegmenter` is the alternative)."""
    from zoo.preprocess.mediapipe_litert import LandmarkerSegmenter, MediaPipePose

    return MediaPipePose(num_threads=num_threads), LandmarkerSegmenter()


__all__ = [
    "POSE_LANDMARKS",
    "Box",
    "KeypointDetector",
    "Keypoints",
    "PhotoError",
    "Preprocessed",
    "Segmenter",
    "default_backends",
    "load_photo",
    "preprocess_photo",
]
