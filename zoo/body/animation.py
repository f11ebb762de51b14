"""Pose sequences and their rasterisation: what an avatar is animated with.

An avatar (a neural texture + a renderer) is drawn in any pose of the body model: this module
makes the poses -- a walk cycle and a standing turntable from the semantic pose controls of
`BodyModel.pose_from_controls` (every backend, Anny by default), or SMPL-X fits given by the
user (DINAR's pickle layout, `zoo.body.smplx_params`) -- and rasterises a sequence into
per-frame UV renders and masks, the renderer's input.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from zoo.body.smplx_params import pose_smplx, read_smplx_params
from zoo.render import focal_to_fit, intrinsics, look_at_body, rasterize, render_uv, to_camera


def walk_cycle(body, frames: int = 12, stride_deg: float = 25.0, arm_swing_deg: float = 20.0,
               **controls) -> torch.Tensor:
    """(frames, V, 3) body-frame vertices of one walk cycle (phases 0, 360/frames, ... degrees).

    Args:
        body: any `zoo.body.BodyModel`.
        frames: frames per cycle.
        stride_deg, arm_swing_deg: hip and shoulder swing amplitudes (degrees).
        **controls: further `pose_from_controls` controls (e.g. betas are not controls; pass
            `betas` to `body` yourself for another shape) such as elbow_bend_deg.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    phases = torch.arange(frames, dtype=torch.float64) * (360.0 / frames)
    betas = controls.pop("betas", None)
    pose = body.pose_from_controls(walk_phase_deg=phases, stride_deg=stride_deg, arm_swing_deg=arm_swing_deg, **controls)
    with torch.no_grad():
        return body(betas=betas, pose=pose).vertices


def turntable(body, frames: int = 12, betas: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """The standing body (arms down, `pose_from_controls` defaults) repeated `frames` times and
    the yaws (0, 360/frames, ...) that orbit a camera around it: (frames, V, 3), list."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    with torch.no_grad():
        standing = body(betas=betas, pose=body.pose_from_controls(batch_size=1)).vertices
    return standing.expand(frames, -1, -1), [360.0 * k / frames for k in range(frames)]


def smplx_sequence(body, paths: Sequence[str | Path], keep_global_orient: bool = False) -> torch.Tensor:
    """(N, V, 3) body-frame vertices of user SMPL-X fits (DINAR pickles, one per frame) on an
    `SMPLXBody`, pelvis at the origin. The fits' camera placement (transl) is dropped; the
    global orientation too unless `keep_global_orient` (fits made in OpenCV camera space are
    upside down in the body frame), so that `render_sequence` frames them like any pose."""
    if not paths:
        raise ValueError("paths is empty: give one SMPL-X pickle per frame")
    out = []
    for path in paths:
        params = read_smplx_params(path)
        if not keep_global_orient:
            params["global_orient"] = torch.zeros(1, 3)
        with torch.no_grad():
            out.append(pose_smplx(body, params)[0])
    return torch.cat(out)


def render_sequence(vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor, yaws: Sequence[float],
                    size: int = 256, distance: float = 6.0, pitch_deg: float = 0.0, fill: float = 0.9) -> dict[str, torch.Tensor]:
    """Rasterise body-frame meshes, each from its yaw, into the renderer's per-frame input.

    One camera framing serves the whole sequence (the person keeps its size and place): the
    look-at target is the middle of the sequence's vertical extent and the focal length fits
    that extent into `fill` of the square image.

    Args:
        vertices: (N, V, 3) body-frame meshes (y up, facing +z).
        faces: (F, 3); corner_uvs: (F, 3, 2) the body's UV layout.
        yaws: N viewing yaws in degrees (0 front, 90 the body's left, 180 back).
        size: side of the square frames.
        distance: camera distance in metres; pitch_deg: camera pitch (positive looks down).
        fill: fraction of the image height the sequence's height takes.

    Returns:
        dict with uv (N, size, size, 2) (`render_uv` grid, background -2), mask (N, 1, size, size),
        K (N, 3, 3) and camera-space vertices (N, V, 3).
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (N, V, 3), got {tuple(vertices.shape)}")
    n = vertices.shape[0]
    if len(yaws) != n:
        raise ValueError(f"need one yaw per frame: {len(yaws)} yaws for {n} frames")
    verts = vertices.detach().float().cpu()
    y = verts[..., 1]
    top, bottom = float(y.max()), float(y.min())
    centre = torch.tensor([[0.0, (top + bottom) / 2, 0.0]]).expand(n, 3)
    R, t = look_at_body(torch.tensor([float(a) for a in yaws]), torch.full((n,), float(pitch_deg)),
                        torch.full((n,), float(distance)), target=centre)
    K = intrinsics(focal_to_fit(top - bottom, size, distance, fill), (size, size), batch_size=n)
    camera = to_camera(verts, R, t)
    uv, mask = render_uv(rasterize(camera, faces.cpu(), K, (size, size)), corner_uvs.float().cpu())
    return {"uv": uv, "mask": mask, "K": K, "vertices": camera}


__all__ = ["walk_cycle", "turntable", "smplx_sequence", "render_sequence"]
