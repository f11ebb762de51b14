"""Body fitting to a photo's keypoints and silhouette, and synthetic photos with known truth.

Layer: beside `zoo.datamodules` (imports `zoo.body`, `zoo.render`, `zoo.preprocess` and the
synthetic people's procedural painter); the avatar command (cli layer) builds on it.
"""
