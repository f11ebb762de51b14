"""SMPL-X fits in DINAR's pickle layout: read, validate loudly, pose the body in camera space.

One pickle per image (DINAR's `smplx/<id>.pkl`, implementation notes section 4), a dict of arrays
with a batch of one, possibly nested under "result" and / or "smplx":
    betas (1, num_betas), global_orient (1, 3), body_pose (1, 63) axis-angle of 21 joints,
    left_hand_pose / right_hand_pose (1, 6) hand PCA coefficients (DINAR: 6 components),
    jaw_pose (1, 3), expression (1, num_expression), transl (1, 3) (or "camera_translation"),
    optional leye_pose / reye_pose (1, 3), gender ("neutral" / "male" / "female"), and "ltrb"
    (a crop box applied to the image before anything else).
The fit lives in camera space (OpenCV axes) of a pinhole camera with a 5000 px focal length at
the image centre: camera-space vertices = smplx(params) + transl.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from zoo.utils.safe_pickle import safe_unpickle

log = logging.getLogger(__name__)

REQUIRED = ("betas", "global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "expression")
OPTIONAL = ("leye_pose", "reye_pose")
_POSE_HINTS = {
    32: "a 32-dim body_pose is a VPoser latent, not axis-angle: decode it with VPoser to 21 joints x 3 = 63 first",
    69: "69 = 23 joints x 3 is an SMPL body_pose; SMPL-X has 21 body joints (63) and separate hands",
    72: "72 is an SMPL pose with the global orientation; SMPL-X needs global_orient (3) + body_pose (63)",
    66: "66 = global_orient + body_pose together; split it into global_orient (3) and body_pose (63)",
}


def _array(value, name: str, source: str) -> np.ndarray:
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] != 1:
        raise ValueError(f"{source}: {name} must be (1, D) or (D,), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{source}: {name} has non-finite values")
    return array


def read_smplx_params(path: str | Path) -> dict:
    """Load and check one DINAR SMPL-X pickle. Returns float32 tensors (1, D) for the pose and
    shape entries and "transl", plus "gender" (str) and "ltrb" (tuple or None).

    Raises ValueError naming the file and the entry for anything malformed: a missing entry,
    a 32-dim body_pose (a VPoser latent, the classic mistake), SMPL-sized poses, bad shapes."""
    path = Path(path)
    source = str(path)
    # a downloaded fit never runs code: only containers, numbers, strings and numpy arrays unpickle
    data = safe_unpickle(path, what="SMPL-X fit pickles may hold only dicts, lists, numbers, strings and numpy arrays",
                         how="Re-save the fit with numpy arrays (e.g. {'body_pose': array, ...}).")
    for wrapper in ("result", "smplx"):
        if isinstance(data, dict) and wrapper in data and isinstance(data[wrapper], dict):
            data = data[wrapper]
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a dict of SMPL-X parameters, got {type(data).__name__}")
    data = dict(data)
    if "transl" not in data and "camera_translation" in data:
        data["transl"] = data.pop("camera_translation")
    missing = [k for k in (*REQUIRED, "transl") if k not in data]
    if missing:
        raise ValueError(f"{source}: missing SMPL-X entries {missing}; found {sorted(data)}")
    out: dict = {}
    for name in (*REQUIRED, *OPTIONAL, "transl"):
        if name in data and data[name] is not None:
            out[name] = torch.from_numpy(_array(data[name], name, source)).float()
    width = out["body_pose"].shape[1]
    if width != 63:
        hint = _POSE_HINTS.get(width, "SMPL-X's body_pose is 21 joints x 3 axis-angle = 63")
        raise ValueError(f"{source}: body_pose has {width} values; {hint}")
    for name, size in (("global_orient", 3), ("jaw_pose", 3), ("transl", 3), ("leye_pose", 3), ("reye_pose", 3)):
        if name in out and out[name].shape[1] != size:
            raise ValueError(f"{source}: {name} must have {size} values, got {out[name].shape[1]}")
    gender = data.get("gender", "neutral")
    if not isinstance(gender, str):  # bytes, or a numpy array holding the name
        gender = np.asarray(gender).reshape(-1)[0]
        gender = gender.decode() if isinstance(gender, bytes) else str(gender)
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"{source}: gender must be neutral, male or female, got {gender!r}")
    out["gender"] = gender
    ltrb = data.get("ltrb")
    out["ltrb"] = None if ltrb is None else tuple(int(round(float(x))) for x in np.asarray(ltrb).reshape(-1))
    if out["ltrb"] is not None and len(out["ltrb"]) != 4:
        raise ValueError(f"{source}: ltrb must be 4 numbers (left, top, right, bottom), got {ltrb}")
    return out


def _fit_width(value: torch.Tensor, width: int, name: str, what: str) -> torch.Tensor:
    """Pad a shape / expression vector with zeros up to `width`; more values than the body has is an error."""
    if value.shape[1] > width:
        raise ValueError(f"the fit has {value.shape[1]} {name} but the body uses {width}: build the SMPL-X body "
                         f"with {what}={value.shape[1]}")
    return torch.nn.functional.pad(value, (0, width - value.shape[1]))


def pose_smplx(body, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A fit (`read_smplx_params`) on an `SMPLXBody`: (1, V, 3) vertices with the pelvis at the
    origin (the zoo's body output) and (1, 3) the pelvis in SMPL-X's own frame (`root_joint`)."""
    if not hasattr(body, "root_joint") or not hasattr(body, "hand_pose_dim"):
        raise TypeError(f"an SMPLXBody is needed to pose SMPL-X fits, got {type(body).__name__}")
    for side in ("left_hand_pose", "right_hand_pose"):
        if params[side].shape[1] != body.hand_pose_dim:
            raise ValueError(f"{side} has {params[side].shape[1]} values, the body expects {body.hand_pose_dim} "
                             f"({'PCA components: num_pca_comps' if body.use_pca else 'axis-angle 15 x 3 (use_pca=False)'})")
    betas = _fit_width(params["betas"], body.num_betas, "betas", "num_betas")
    expression = _fit_width(params["expression"], body.num_expression_coeffs, "expression coefficients",
                            "num_expression_coeffs")
    extra = {k: params[k] for k in ("leye_pose", "reye_pose") if k in params}
    out = body(betas=betas, global_orient=params["global_orient"], body_pose=params["body_pose"],
               left_hand_pose=params["left_hand_pose"], right_hand_pose=params["right_hand_pose"],
               jaw_pose=params["jaw_pose"], expression=expression, **extra)
    return out.vertices, body.root_joint(betas, expression)


def smplx_camera_vertices(body, params: dict) -> torch.Tensor:
    """(1, V, 3) camera-space vertices of a fit (`read_smplx_params`) on an `SMPLXBody`.

    The zoo's body output has its pelvis at the origin; smplx's has it at `body.root_joint`
    (posing turns about it), and the fit adds `transl`: camera space = ours + root + transl."""
    vertices, root = pose_smplx(body, params)
    return vertices + root[:, None] + params["transl"][:, None].to(vertices.dtype)


__all__ = ["read_smplx_params", "pose_smplx", "smplx_camera_vertices", "REQUIRED"]
