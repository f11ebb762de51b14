"""Pinhole cameras in OpenCV convention (x right, y down, z forward).

Pixel centres sit at integer image coordinates: pixel (row i, column j) is (u, v) = (j, i),
so "the principal point at the image centre" is c = ((W - 1) / 2, (H - 1) / 2).

The body frame used by `zoo.body` is y up, the person facing +z. `look_at_body` builds the
world-to-camera rotation that views such a body from a yaw / pitch / distance.
"""
from __future__ import annotations

import torch


def intrinsics(focal: float | torch.Tensor, image_size: tuple[int, int], batch_size: int = 1,
               principal_point: tuple[float, float] | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """(B, 3, 3) intrinsics with square pixels; principal point at the centre unless given."""
    H, W = image_size
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    cx, cy = principal_point if principal_point is not None else ((W - 1) / 2.0, (H - 1) / 2.0)
    focal = torch.as_tensor(focal, dtype=dtype, device=device).reshape(-1)
    if focal.numel() == 1:
        focal = focal.expand(batch_size)
    if focal.numel() != batch_size:
        raise ValueError(f"focal has {focal.numel()} values for a batch of {batch_size}")
    if not torch.isfinite(focal).all() or (focal <= 0).any():
        raise ValueError(f"focal must be positive and finite (pixels), got {focal.tolist()[:4]}")
    K = torch.zeros(batch_size, 3, 3, dtype=dtype, device=device)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = cx
    K[:, 1, 2] = cy
    K[:, 2, 2] = 1.0
    return K


def texformer_intrinsics(image_size: tuple[int, int] = (128, 64), render_size: int = 128,
                         batch_size: int = 1, **kwargs) -> torch.Tensor:
    """Texformer / SPIN convention: focal 5000 px for a 224 px crop, scaled to the square
    `render_size` render, principal point at its centre; a narrower `image_size` is the centre
    crop of that square render (128x128 -> 128x64 keeps the centre 64 columns)."""
    H, W = image_size
    focal = 5000.0 * render_size / 224.0
    crop_left = (render_size - W) / 2.0
    crop_top = (render_size - H) / 2.0
    cx = (render_size - 1) / 2.0 - crop_left
    cy = (render_size - 1) / 2.0 - crop_top
    return intrinsics(focal, image_size, batch_size, principal_point=(cx, cy), **kwargs)


def dinar_intrinsics(image_size: tuple[int, int] = (512, 512), reference_size: int = 512,
                     batch_size: int = 1, **kwargs) -> torch.Tensor:
    """DINAR convention: focal 5000 px for a `reference_size` square crop, scaled to the image,
    principal point at the centre."""
    focal = 5000.0 * min(image_size) / float(reference_size)
    return intrinsics(focal, image_size, batch_size, **kwargs)


def rotation_yaw_pitch(yaw_deg: torch.Tensor, pitch_deg: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotation of the body frame (y up, facing +z) into an OpenCV camera looking
    at it: yaw 0 sees the front, 90 the body's left side; positive pitch looks down from above."""
    yaw = torch.deg2rad(torch.as_tensor(yaw_deg, dtype=torch.float32)).reshape(-1)
    pitch = torch.deg2rad(torch.as_tensor(pitch_deg, dtype=torch.float32)).reshape(-1)
    cy_, sy_ = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    # Rotate the body about its up axis by -yaw (so the camera orbits by +yaw) ...
    R_yaw = torch.stack([cy_, zero, -sy_, zero, one, zero, sy_, zero, cy_], -1).view(-1, 3, 3)
    # ... flip into OpenCV axes: y down, and the body's +z (where the face points) towards the
    # camera, i.e. -z in camera space; x stays, so the person's left (+x) is on the image's
    # right as when facing someone (a proper rotation, det +1) ...
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0])).expand_as(R_yaw)
    # ... and tilt about the camera x axis for the pitch.
    R_pitch = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
    return R_pitch @ flip @ R_yaw


def look_at_body(yaw_deg, pitch_deg, distance, target=None) -> tuple[torch.Tensor, torch.Tensor]:
    """World (body frame) -> camera rotation R (B, 3, 3) and translation t (B, 3) such that
    X_cam = R X + t, with the body point `target` (default origin) at `distance` in front."""
    R = rotation_yaw_pitch(yaw_deg, pitch_deg)
    distance = torch.as_tensor(distance, dtype=torch.float32).reshape(-1)
    target = torch.zeros(R.shape[0], 3) if target is None else torch.as_tensor(target, dtype=torch.float32).reshape(-1, 3)
    t = torch.stack([torch.zeros_like(distance), torch.zeros_like(distance), distance], -1) - (R @ target[..., None])[..., 0]
    return R, t


def to_camera(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) body-frame points -> camera space, X_cam = R X + t."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, V, 3), got {tuple(points.shape)}")
    return points @ R.transpose(1, 2) + t[:, None, :]


def focal_to_fit(height_m: float, image_height: int, distance: float, fill: float = 0.9) -> float:
    """Focal length (px) so that a body `height_m` tall at `distance` fills `fill` of the image."""
    if not 0 < fill <= 1.5:
        raise ValueError(f"fill must be in (0, 1.5], got {fill}")
    return fill * image_height * distance / height_m


__all__ = [
    "intrinsics", "texformer_intrinsics", "dinar_intrinsics", "rotation_yaw_pitch",
    "look_at_body", "to_camera", "focal_to_fit",
]
