"""Fit a body (Anny by default, or SMPL / SMPL-X from the user's files) to a photo's keypoints and
silhouette.

The SMPLify-X recipe: minimise over betas, bone rotations, the root orientation and the
camera translation (a pinhole with fixed focal length)
    E = E_keypoints + w_pose E_pose + w_shape E_shape + w_sil E_silhouette
- E_keypoints: Geman-McClure robust squared distance between the projected body keypoints
  (bone heads for joints, fixed surface vertices for nose / ears) and the detected ones,
  weighted by the detector's confidence;
- E_pose: squared rotation of every fitted bone away from a natural standing pose; E_shape:
  squared betas (Anny sliders minus 0.5, kept in [-0.5, 0.5] by a tanh);
- E_silhouette: gradients come from projected vertices, not from the rasteriser: vertices that
  project outside the person mask pay their squared distance to it (a distance map sampled at the
  vertex), and mask pixels pay their squared distance to the nearest projected vertex.
Three stages as in SMPLify: camera + root on the torso keypoints, then pose and shape on all
keypoints, then everything with the silhouette. Distances are in percent of the crop side, so the
weights do not depend on the photo size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from zoo.preprocess.interfaces import Keypoints
from zoo.render import rasterize, rotation_yaw_pitch

log = logging.getLogger(__name__)

# MediaPipe keypoint -> Anny bone whose head is that joint.
JOINT_KEYPOINTS: dict[str, str] = {
    "left_shoulder": "upperarm01.L", "right_shoulder": "upperarm01.R", "left_elbow": "lowerarm01.L",
    "right_elbow": "lowerarm01.R", "left_wrist": "wrist.L", "right_wrist": "wrist.R", "left_hip": "upperleg01.L",
    "right_hip": "upperleg01.R", "left_knee": "lowerleg01.L", "right_knee": "lowerleg01.R", "left_ankle": "foot.L",
    "right_ankle": "foot.R", "left_eye": "eye.L", "right_eye": "eye.R",
}
# SMPL / SMPL-X skeleton joints of the same keypoints (the SMPL family shares the body joint names).
SMPL_JOINT_KEYPOINTS: dict[str, str] = {
    "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder", "left_elbow": "left_elbow",
    "right_elbow": "right_elbow", "left_wrist": "left_wrist", "right_wrist": "right_wrist", "left_hip": "left_hip",
    "right_hip": "right_hip", "left_knee": "left_knee", "right_knee": "right_knee", "left_ankle": "left_ankle",
    "right_ankle": "right_ankle",
}
SMPL_FITTED_BONES = ("pelvis", "spine2", "spine1", "neck", "head", "left_shoulder", "right_shoulder", "left_elbow",
                     "right_elbow", "left_hip", "right_hip", "left_knee", "right_knee")
SURFACE_KEYPOINTS = ("nose", "left_ear", "right_ear")
TORSO_KEYPOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
FITTED_BONES = ("root", "spine03", "spine01", "neck01", "head", "upperarm01.L", "upperarm01.R", "lowerarm01.L",
                "lowerarm01.R", "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R")


@dataclass
class FitSettings:
    """Weights and schedule of `fit_body` (defaults tuned on synthetic renders, docs/photo_fit.md).

    Args:
        focal: focal length in pixels of the crop; None = DINAR's 5000 px per 512 px.
        steps: iterations of the three stages (camera, pose + shape, + silhouette).
        lr: Adam learning rate.
        pose_weight / shape_weight / silhouette_weight: prior and silhouette weights.
        robust_sigma: Geman-McClure scale of the keypoint term, percent of the crop side.
        min_confidence: keypoints below this confidence are ignored.
        silhouette_points: mask pixels sampled for the coverage term.
    """

    focal: float | None = None
    steps: tuple[int, int, int] = (60, 120, 80)
    lr: float = 0.03
    pose_weight: float = 2.0
    shape_weight: float = 0.3
    silhouette_weight: float = 1.0
    robust_sigma: float = 8.0
    min_confidence: float = 0.5
    silhouette_points: int = 600


@dataclass
class FitResult:
    """A fitted body. betas (1, B), pose (1, P) body-frame axis-angle (`AnnyBody`), R (3, 3) and
    t (3,) body -> camera, K (3, 3) crop intrinsics, vertices / joints (V|J, 3) camera space;
    keypoint_px: mean pixel error of the fitted keypoints; iou: fitted silhouette vs the mask."""

    betas: torch.Tensor
    pose: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    image_size: tuple[int, int]
    keypoint_px: float = float("nan")
    iou: float = float("nan")
    history: list[float] = field(default_factory=list)


def body_tables(body) -> tuple[dict[str, str], tuple[str, ...], dict[str, int], bool]:
    """(keypoint -> joint name, fitted bones (root first), surface keypoint vertices, bounded betas)
    of a body: Anny's bones and phenotype sliders, or the SMPL family's joints and unbounded betas."""
    if hasattr(body, "anny"):
        return JOINT_KEYPOINTS, FITTED_BONES, surface_keypoint_vertices(body), True
    if all(n in body.joint_names for n in (*SMPL_JOINT_KEYPOINTS.values(), *SMPL_FITTED_BONES)):
        eyes = {n: n for n in ("left_eye", "right_eye") if n in body.joint_names}  # SMPL-X has eye joints
        return {**SMPL_JOINT_KEYPOINTS, **eyes}, SMPL_FITTED_BONES, {}, False
    raise ValueError(f"no keypoint table for {type(body).__name__}: expected AnnyBody or an SMPL-family body")


def surface_keypoint_vertices(body) -> dict[str, int]:
    """Template vertices standing for the nose (most forward head vertex) and the ears (head
    vertices furthest left / right at eye height) on Anny."""
    verts = body.template_vertices
    head_bones = [i for i, n in enumerate(body.joint_names) if n in ("head", "neck03")]
    weights = body.anny.dense_vertex_bone_weights
    on_head = weights[:, head_bones].sum(1) > 0.5
    idx = torch.nonzero(on_head).squeeze(1)
    eye_y = body.template_joints[body.joint_names.index("eye.L"), 1]
    near_eyes = idx[(verts[idx, 1] - eye_y).abs() < 0.03]
    return {"nose": int(idx[verts[idx, 2].argmax()]), "left_ear": int(near_eyes[verts[near_eyes, 0].argmax()]),
            "right_ear": int(near_eyes[verts[near_eyes, 0].argmin()])}


def distance_outside(mask: torch.Tensor, size: int = 128) -> torch.Tensor:
    """(size, size) distance (in pixels of `size`) from every pixel to the nearest mask pixel."""
    small = F.interpolate(mask[None, None].float(), size=(size, size), mode="area")[0, 0] > 0.5
    inside = torch.nonzero(small).float()
    if inside.shape[0] == 0:
        raise ValueError("the person mask is empty")
    grid = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"), -1).reshape(-1, 2).float()
    best = torch.cat([torch.cdist(chunk, inside).min(1).values for chunk in grid.split(4096)])
    return best.reshape(size, size)


def _project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:].clamp(min=1e-3)


def _gm(r2: torch.Tensor, sigma: float) -> torch.Tensor:
    return sigma**2 * r2 / (sigma**2 + r2)


def fit_body(body, keypoints: Keypoints, mask: np.ndarray, settings: FitSettings | None = None,
             progress=None) -> FitResult:
    """Fit `body` (`AnnyBody`, or `SMPLBody` / `SMPLXBody`) to one crop's keypoints and mask (H, W)
    in [0, 1]. Anny's betas stay in its slider range; SMPL betas are only held by the prior.

    `progress`: optional callable(step, total) for a progress bar."""
    s = settings or FitSettings()
    H, W = mask.shape
    scale = 100.0 / max(H, W)  # pixel -> percent of the crop
    focal = s.focal if s.focal is not None else 5000.0 * max(H, W) / 512.0
    K = torch.tensor([[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1.0]])
    names = body.joint_names
    joint_table, fitted_bones, surface, bounded = body_tables(body)
    fitted = torch.tensor([names.index(n) for n in fitted_bones])
    use = [(n, joint_table.get(n)) for n in (*joint_table, *surface)
           if keypoints.get(n)[1] >= s.min_confidence]
    if sum(1 for n, _ in use if n in TORSO_KEYPOINTS) < 3:
        raise ValueError("the body fit needs at least 3 of the shoulders and hips in view; "
                         f"confident keypoints: {[n for n, _ in use]}")
    target = torch.tensor(np.stack([keypoints.get(n)[0] for n, _ in use]), dtype=torch.float32)
    conf = torch.tensor([keypoints.get(n)[1] for n, _ in use], dtype=torch.float32)
    torso = torch.tensor([n in TORSO_KEYPOINTS for n, _ in use])
    joint_rows = [(i, names.index(b)) for i, (n, b) in enumerate(use) if b is not None]
    vert_rows = [(i, surface[n]) for i, (n, b) in enumerate(use) if b is None]

    base_pose = body.pose_from_controls(1).detach()
    with torch.no_grad():
        rest = body(pose=base_pose)
    # Facing: the person's left shoulder on the image's right means they face the camera.
    (ls, _), (rs, _) = keypoints.get("left_shoulder"), keypoints.get("right_shoulder")
    yaw = 0.0 if ls[0] >= rs[0] else 180.0
    R = rotation_yaw_pitch(torch.tensor([yaw]), torch.tensor([0.0]))[0]
    # Depth from the torso: shoulder-to-hip length in the template vs in the photo.
    j = rest.joints[0]
    mid = lambda a, b: (a + b) / 2
    joint = lambda n: j[names.index(joint_table[n])]  # noqa: E731
    sh3 = mid(joint("left_shoulder"), joint("right_shoulder"))
    hip3 = mid(joint("left_hip"), joint("right_hip"))
    kp = {n: torch.tensor(keypoints.get(n)[0]) for n in TORSO_KEYPOINTS}
    sh2, hip2 = mid(kp["left_shoulder"], kp["right_shoulder"]), mid(kp["left_hip"], kp["right_hip"])
    depth = focal * float((sh3 - hip3).norm()) / max(float((sh2 - hip2).norm()), 1.0)
    centre = hip2 if keypoints.get("left_hip")[1] >= s.min_confidence else sh2
    hip_cam = torch.tensor([(centre[0] - K[0, 2]) * depth / focal, (centre[1] - K[1, 2]) * depth / focal, depth])
    t = (hip_cam - R @ (hip3 if centre is hip2 else sh3)).clone().requires_grad_(True)
    raw_betas = torch.zeros(1, body.num_betas, requires_grad=True)
    delta = torch.zeros(len(fitted), 3, requires_grad=True)

    dist = distance_outside(torch.as_tensor(mask) > 0.5)
    ys, xs = np.nonzero(mask > 0.5)
    g = np.random.default_rng(0)
    pick = g.choice(len(xs), size=min(s.silhouette_points, len(xs)), replace=False)
    mask_points = torch.tensor(np.stack([xs[pick], ys[pick]], 1), dtype=torch.float32)

    def evaluate(stage: int):
        betas = 0.5 * torch.tanh(raw_betas) if bounded else raw_betas
        pose = base_pose.clone().reshape(1, -1, 3)
        pose = pose.index_put((torch.zeros_like(fitted), fitted), pose[0, fitted] + delta)
        out = body(betas=betas, pose=pose.reshape(1, -1))
        verts = out.vertices[0] @ R.T + t
        joints = out.joints[0] @ R.T + t
        points = torch.cat([joints[[b for _, b in joint_rows]], verts[[v for _, v in vert_rows]]])
        order = [i for i, _ in joint_rows] + [i for i, _ in vert_rows]
        r2 = ((_project(points, K) - target[order]) * scale).pow(2).sum(-1)
        weight = conf[order] * (torso[order] if stage == 0 else 1.0)
        loss = (weight * _gm(r2, s.robust_sigma)).sum() / weight.sum().clamp(min=1e-6)
        if stage > 0:
            loss = loss + s.pose_weight * delta[1:].pow(2).sum() + s.shape_weight * betas.pow(2).sum()
        if stage > 1:
            uv = _project(verts[::2], K)
            grid = torch.stack([(uv[:, 0] + 0.5) / W * 2 - 1, (uv[:, 1] + 0.5) / H * 2 - 1], -1)
            outside = F.grid_sample(dist[None, None], grid[None, None], align_corners=False, padding_mode="border")
            outside = (outside.reshape(-1) * 100.0 / dist.shape[0]).pow(2).mean()
            cover = (torch.cdist(mask_points, uv).min(1).values * scale).pow(2).mean()
            loss = loss + s.silhouette_weight * (outside + cover)
        return loss, betas, pose.reshape(1, -1), verts, joints

    history, done, total = [], 0, sum(s.steps)
    for stage, n_steps in enumerate(s.steps):
        params = [t, delta] if stage == 0 else [t, delta, raw_betas]
        optimiser = torch.optim.Adam(params, lr=s.lr)
        for _ in range(n_steps):
            optimiser.zero_grad()
            loss, *_ = evaluate(stage)
            loss.backward()
            if stage == 0:
                delta.grad[1:] = 0  # only the root turns with the camera in the first stage
            optimiser.step()
            history.append(float(loss.detach()))
            done += 1
            if progress is not None:
                progress(done, total)
    with torch.no_grad():
        _, betas, pose, verts, joints = evaluate(2)
        frags = rasterize(verts[None], body.faces, K[None], (H, W))
        fitted_mask = frags.mask[0].numpy()
        truth = mask > 0.5
        iou = float((fitted_mask & truth).sum() / max((fitted_mask | truth).sum(), 1))
        points = torch.cat([joints[[b for _, b in joint_rows]], verts[[v for _, v in vert_rows]]])
        order = [i for i, _ in joint_rows] + [i for i, _ in vert_rows]
        err = (_project(points, K) - target[order]).norm(dim=-1)
        keypoint_px = float((err * conf[order]).sum() / conf[order].sum())
    return FitResult(betas.detach(), pose.detach(), R, t.detach(), K, verts.detach(), joints.detach(), (H, W),
                     keypoint_px, iou, history)


__all__ = [
    "FITTED_BONES",
    "JOINT_KEYPOINTS",
    "FitResult",
    "FitSettings",
    "distance_outside",
    "fit_body",
    "body_tables",
    "surface_keypoint_vertices",
]
