"""AMASS-style SMPL-X / SMPL+H motion files: read, and retarget onto Anny (or pose an SMPLXBody).

Format (AMASS `.npz`, one row per frame):

    poses            (T, 3 * J) axis-angle: the root (global orientation) then the body joints in
                     SMPL order (J = 55 SMPL-X, 52 SMPL+H, 24 SMPL, 22 body only); only the
                     root and the 21 body joints are read (hands, jaw, eyes and toes are not retargeted)
    trans            (T, 3) metres, the model's translation in the world frame
    mocap_framerate  () frames per second (AMASS's SMPL-X release spells it `mocap_frame_rate`)
    betas            (B,) optional body shape (used for the SMPL-X source skeleton when the user
                     has the SMPL-X model file)

AMASS's world is z up (`up_axis="z"`, the default); files already in SMPL's y-up frame pass
`up_axis="y"`. Motion is returned in the zoo body frame (y up), the root's translation relative to
the first frame.

Retargeting onto Anny (`retarget_to_anny`): SMPL's pose blocks and Anny's (`zoo.body.AnnyBody`)
mean the same thing (each bone's rotation about body axes at its head in the rest pose, carried by
its parents), but the rest poses differ: SMPL-X rests in a T-pose, Anny in an A-pose with bent
elbows. Each mapped SMPL joint j drives one Anny bone k with the global rotation G_smpl[j] @ C[j],
C[j] being the smallest rotation that turns Anny's rest segment (k to the head of the bone that
the segment's SMPL child drives) onto SMPL's rest segment; so every mapped segment of Anny points
where SMPL's points, frame by frame (the twist about a segment is SMPL's). Anny's bones between
mapped ones (upperleg02, lowerarm02, shoulder01, spine05, neck02, ...) keep a zero local rotation.
SMPL's rest skeleton comes from the user's SMPL-X model file when given (`smplx_rest_joints`);
without it, from an idealised T-pose (`TPOSE_JOINTS`: arms horizontal, legs and spine vertical),
so each segment is off by as much as the user's rest skeleton differs from it (on the tests' toy
SMPL-X skeleton: 3.9 degrees mean, 14 max, against 3e-5 with the model file given).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zoo.body.controls import axis_angle_to_matrix, matrix_to_axis_angle

SMPL_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# SMPL body joint -> the Anny bone it drives (the feet's toe joints 10, 11 drive nothing).
ANNY_BONE_OF_SMPL = {
    0: "root", 1: "upperleg01.L", 2: "upperleg01.R", 3: "spine04", 4: "lowerleg01.L", 5: "lowerleg01.R",
    6: "spine03", 7: "foot.L", 8: "foot.R", 9: "spine02", 12: "neck01", 13: "clavicle.L", 14: "clavicle.R",
    15: "head", 16: "upperarm01.L", 17: "upperarm01.R", 18: "lowerarm01.L", 19: "lowerarm01.R",
    20: "wrist.L", 21: "wrist.R",
}
# SMPL joint -> the child joint that ends the segment it turns; its end on Anny is the head of the
# bone that child drives (the feet: the middle of the toe bases). Joints without a segment (root,
# head, wrists) keep their parent's rest correction.
_SEGMENT_END = {1: 4, 2: 5, 4: 7, 5: 8, 7: 10, 8: 11, 3: 6, 6: 9, 9: 12, 12: 15, 13: 16, 14: 17, 16: 18, 17: 19,
                18: 20, 19: 21}
_ANNY_TOES = {10: [f"toe{k}-1.L" for k in range(1, 6)], 11: [f"toe{k}-1.R" for k in range(1, 6)]}
# An idealised SMPL T-pose (metres, y up, facing +z, the person's left on +x), pelvis at the origin.
TPOSE_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.06, -0.09, 0.0], [-0.06, -0.09, 0.0], [0.0, 0.11, 0.0], [0.06, -0.48, 0.0],
    [-0.06, -0.48, 0.0], [0.0, 0.24, 0.0], [0.06, -0.88, 0.0], [-0.06, -0.88, 0.0], [0.0, 0.30, 0.0],
    [0.06, -0.94, 0.12], [-0.06, -0.94, 0.12], [0.0, 0.52, 0.0], [0.07, 0.43, 0.0], [-0.07, 0.43, 0.0],
    [0.0, 0.64, 0.0], [0.18, 0.43, 0.0], [-0.18, 0.43, 0.0], [0.44, 0.43, 0.0], [-0.44, 0.43, 0.0],
    [0.69, 0.43, 0.0], [-0.69, 0.43, 0.0]])
# Rotation from a z-up world (AMASS: x, y horizontal, z up) to the body frame's y up.
_Y_UP_FROM = {"z": torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64),
              "y": torch.eye(3, dtype=torch.float64)}


def is_amass(path: str | Path) -> bool:
    """Whether an `.npz` looks like an AMASS motion file (has `poses`, no Anny `pose`)."""
    with np.load(path, allow_pickle=False) as data:
        return "poses" in data.files and "pose" not in data.files


def read_amass(path: str | Path, fps: float | None = 30.0) -> dict:
    """An AMASS `.npz` as {"poses": (T, 66) float64 (root + 21 body joints), "trans": (T, 3),
    "fps": float, "betas": (B,) or None}, every `round(source fps / fps)`-th frame (`fps` None:
    all frames)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "poses" not in data.files:
            raise ValueError(f"{path} has no 'poses' array (found {data.files}): not an AMASS file")
        poses = np.asarray(data["poses"], dtype=np.float64)
        trans = np.asarray(data["trans"], dtype=np.float64) if "trans" in data.files else None
        rate_key = next((k for k in ("mocap_framerate", "mocap_frame_rate") if k in data.files), None)
        if rate_key is None:
            raise ValueError(f"{path} has no 'mocap_framerate' (or 'mocap_frame_rate'): the frame rate is needed")
        source_fps = float(data[rate_key])
        betas = np.asarray(data["betas"], dtype=np.float64).reshape(-1) if "betas" in data.files else None
    if poses.ndim != 2 or poses.shape[1] < 66 or poses.shape[1] % 3 or poses.shape[0] < 1:
        raise ValueError(f"{path}: poses must be (T, 3 * J) with J >= 22 (root + 21 body joints), got {poses.shape}")
    if trans is None:
        trans = np.zeros((poses.shape[0], 3))
    if trans.shape != (poses.shape[0], 3):
        raise ValueError(f"{path}: trans must be ({poses.shape[0]}, 3), got {trans.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()) or not source_fps > 0:
        raise ValueError(f"{path}: poses and trans must be finite and the frame rate positive ({source_fps})")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None, got {fps}")
    step = max(1, round(source_fps / fps)) if fps else 1
    return {"poses": poses[::step, :66], "trans": trans[::step], "fps": source_fps / step, "betas": betas}


def smplx_rest_joints(model_path: str | Path, betas: np.ndarray | None = None) -> np.ndarray:
    """(22, 3) rest (T-pose) body joints, pelvis at the origin, of the user's SMPL / SMPL-X model
    file (.npz or .pkl, `zoo.body.SMPLXBody`'s files) with shape `betas`."""
    from zoo.body.smpl_body import _load_model_dict

    data = _load_model_dict(Path(model_path))
    vertices = np.asarray(data["v_template"], dtype=np.float64)
    if betas is not None:
        dirs = np.asarray(data["shapedirs"], dtype=np.float64)
        n = min(len(betas), dirs.shape[-1])
        vertices = vertices + dirs[..., :n] @ np.asarray(betas, dtype=np.float64)[:n]
    regressor = data["J_regressor"]
    regressor = np.asarray(regressor.todense() if hasattr(regressor, "todense") else regressor, dtype=np.float64)
    joints = (regressor @ vertices)[:22]
    return joints - joints[:1]


def _minimal_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(3, 3) the smallest rotation taking direction a onto direction b."""
    a, b = a / a.norm(), b / b.norm()
    axis = torch.linalg.cross(a, b)
    sin, cos = axis.norm(), torch.dot(a, b)
    if sin < 1e-12:
        if cos > 0:
            return torch.eye(3, dtype=a.dtype)
        perpendicular = torch.linalg.cross(a, torch.eye(3, dtype=a.dtype)[int(torch.argmin(a.abs()))])
        return axis_angle_to_matrix(perpendicular / perpendicular.norm() * torch.pi)
    return axis_angle_to_matrix(axis / sin * torch.atan2(sin, cos))


def _axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle, exact up to 180 degrees (a turned-around root)."""
    out = matrix_to_axis_angle(matrix)
    near = out.norm(dim=-1) > 3.0
    if near.any():
        m = matrix[near]
        cos = ((m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        outer = (m + m.transpose(-1, -2)) / 2 - cos[:, None, None] * torch.eye(3, dtype=m.dtype)  # (1 - cos) a a^T
        column = outer.diagonal(dim1=-2, dim2=-1).argmax(-1)
        axis = outer[torch.arange(len(m)), :, column]
        axis = axis / axis.norm(dim=-1, keepdim=True)
        skew = torch.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1)
        axis = torch.where((axis * skew).sum(-1, keepdim=True) < 0, -axis, axis)
        out[near] = axis * torch.arccos(cos)[:, None]
    return out


def _global_rotations(poses: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """(T, 22, 3, 3) SMPL global joint rotations in the body frame from (T, 66) axis-angle."""
    local = axis_angle_to_matrix(poses.reshape(poses.shape[0], 22, 3))
    out = [up @ local[:, 0]]
    for j in range(1, 22):
        out.append(out[SMPL_BODY_PARENTS[j]] @ local[:, j])
    return torch.stack(out, dim=1)


def retarget_to_anny(poses: np.ndarray | torch.Tensor, body, source_joints: np.ndarray | None = None,
                     up_axis: str = "z") -> torch.Tensor:
    """(T, body.num_pose_params) Anny poses from SMPL-order poses (T, >= 66) (module doc).

    Args:
        poses: root orientation + 21 body joints, axis-angle, SMPL order.
        body: a `zoo.body.AnnyBody`.
        source_joints: (22, 3) SMPL rest joints (`smplx_rest_joints`); None: `TPOSE_JOINTS`.
        up_axis: the motion's world up axis, "z" (AMASS) or "y".
    """
    if up_axis not in _Y_UP_FROM:
        raise ValueError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    missing = sorted(set(ANNY_BONE_OF_SMPL.values()) - set(body.joint_names))
    if missing:
        raise ValueError(f"retarget_to_anny needs an Anny skeleton; the body lacks bones {missing[:4]}")
    poses = torch.as_tensor(poses, dtype=torch.float64)
    if poses.ndim != 2 or poses.shape[1] < 66:
        raise ValueError(f"poses must be (T, >= 66), got {tuple(poses.shape)}")
    source = torch.as_tensor(TPOSE_JOINTS if source_joints is None else source_joints, dtype=torch.float64)
    if source.shape != (22, 3):
        raise ValueError(f"source_joints must be (22, 3), got {tuple(source.shape)}")
    index = {name: i for i, name in enumerate(body.joint_names)}
    with torch.no_grad():
        anny = body().joints[0].double()

    def anny_point(j: int) -> torch.Tensor:
        if j in _ANNY_TOES:
            return anny[[index[n] for n in _ANNY_TOES[j]]].mean(0)
        return anny[index[ANNY_BONE_OF_SMPL[j]]]

    correction = {0: torch.eye(3, dtype=torch.float64)}
    for j in range(1, 22):
        if j not in ANNY_BONE_OF_SMPL:
            continue
        end = _SEGMENT_END.get(j)
        if end is None:
            correction[j] = correction[SMPL_BODY_PARENTS[j]]
        else:
            correction[j] = _minimal_rotation(anny_point(end) - anny_point(j), source[end] - source[j])
    smpl_global = _global_rotations(poses[:, :66], _Y_UP_FROM[up_axis])
    target = {index[name]: smpl_global[:, j] @ correction[j] for j, name in ANNY_BONE_OF_SMPL.items()}
    parents = list(body.anny.bone_parents) if hasattr(body, "anny") else None
    if parents is None:
        raise ValueError("retarget_to_anny needs an AnnyBody (its bone parents)")
    T, eye = poses.shape[0], torch.eye(3, dtype=torch.float64)
    global_ = [None] * len(parents)
    local = eye.repeat(T, len(parents), 1, 1)
    for b, p in enumerate(parents):  # parents precede their children
        if b in target:
            global_[b] = target[b]
            local[:, b] = target[b] if p < 0 else global_[p].transpose(-1, -2) @ target[b]
        else:
            global_[b] = eye.expand(T, 3, 3) if p < 0 else global_[p]
    return _axis_angle(local).reshape(T, -1).float()


def smplx_pose(poses: np.ndarray | torch.Tensor, up_axis: str = "z") -> torch.Tensor:
    """(T, 66) `SMPLXBody` poses (global_orient + body_pose, body frame) from AMASS poses."""
    if up_axis not in _Y_UP_FROM:
        raise ValueError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    poses = torch.as_tensor(poses, dtype=torch.float64)[:, :66].clone()
    poses[:, :3] = _axis_angle(_Y_UP_FROM[up_axis] @ axis_angle_to_matrix(poses[:, :3]))
    return poses.float()


def load_amass(path: str | Path, body, fps: float | None = 30.0, up_axis: str = "z",
               smplx_model: str | Path | None = None) -> dict:
    """An AMASS file as a motion for `body` (`zoo.export.motion.load_motion`'s dict): retargeted
    onto an `AnnyBody`, or as-is for an `SMPLXBody` (`num_pose_params` 66). `smplx_model`: the
    user's SMPL-X model file for the source skeleton (Anny only; None: the idealised T-pose)."""
    data = read_amass(path, fps)
    trans = torch.as_tensor(data["trans"] - data["trans"][:1], dtype=torch.float64)
    transl = (trans @ _Y_UP_FROM[up_axis].T).float()
    if body.num_pose_params == 66:
        pose = smplx_pose(data["poses"], up_axis)
    else:
        joints = None if smplx_model is None else smplx_rest_joints(smplx_model, data["betas"])
        pose = retarget_to_anny(data["poses"], body, joints, up_axis)
    return {"pose": pose, "fps": data["fps"], "transl": transl}


__all__ = ["ANNY_BONE_OF_SMPL", "TPOSE_JOINTS", "is_amass", "load_amass", "read_amass", "retarget_to_anny",
           "smplx_pose", "smplx_rest_joints"]
