"""Write a body fit where the zoo's loaders read it, and an overlay picture.

Image-folder layout (`zoo.datamodules.image_folder`, `body: anny`), which is also the rgb/ + segm/
part of DINAR's input folder layout:

    <root>/rgb/<id>.png     the square crop of the photo
    <root>/segm/<id>.png    the person mask (0 / 255)
    <root>/smpl/<id>.pkl    {"vertices": (V, 3) camera space, "focal", "centre": (cx, cy) px of the
                            crop, "body": "anny", "betas", "pose", "R", "t"} (the loader's vertices
                            + camera format; the parameters rebuild the body with `AnnyBody`)
    <root>/anny/<id>.json   the same parameters as JSON (betas, pose, R, t, K, image_size)
    <root>/overlay/<id>.png the fitted body shaded over the crop

A fit of the user's SMPL-X body (`fit_body` on an `SMPLXBody`) goes to DINAR's input layout with
`write_smplx_fit`: rgb/<id>.png, segm/<id>.png, smplx/<id>.pkl (`zoo.body.smplx_params`).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from zoo.fit.anny_fit import FitResult
from zoo.render import rasterize, render_normals
from zoo.utils.files import atomic_file
from zoo.utils.images import save_png


def shade(result: FitResult, faces: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 grey-shaded render of the fitted mesh (light from the camera) and its mask."""
    H, W = result.image_size
    frags = rasterize(result.vertices[None], faces, result.K[None], (H, W))
    normals = render_normals(frags, result.vertices[None], faces)[0]
    light = (-normals[2]).clamp(min=0) * 0.75 + 0.25
    image = (light[..., None] * torch.tensor([0.85, 0.8, 1.0]) * 255).clamp(0, 255).byte().numpy()
    return image, frags.mask[0].numpy()


def overlay(crop: np.ndarray, result: FitResult, faces: torch.Tensor, alpha: float = 0.6) -> np.ndarray:
    """The shaded fitted body blended over the crop (H, W, 3) uint8."""
    image, mask = shade(result, faces)
    out = crop.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * image[mask]
    return out.round().astype(np.uint8)


def fit_to_dict(result: FitResult) -> dict:
    """The fit's parameters and camera as plain lists (JSON)."""
    return {"body": "anny", "betas": result.betas[0].tolist(), "pose": result.pose[0].tolist(),
            "R": result.R.tolist(), "t": result.t.tolist(), "K": result.K.tolist(),
            "image_size": list(result.image_size), "keypoint_px": result.keypoint_px, "iou": result.iou}


def _save_pickle(data: dict, path: Path) -> None:
    with atomic_file(path) as temporary, open(temporary, "wb") as handle:
        pickle.dump(data, handle)


def write_fit(root: str | Path, key: str, crop: np.ndarray, mask: np.ndarray, result: FitResult,
              faces: torch.Tensor) -> dict[str, Path]:
    """Write one photo's crop, mask, fit and overlay under `root` (module doc); returns the paths."""
    root = Path(root)
    paths = {name: root / name / f"{key}{suffix}" for name, suffix in
             (("rgb", ".png"), ("segm", ".png"), ("smpl", ".pkl"), ("anny", ".json"), ("overlay", ".png"))}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    save_png(crop, paths["rgb"])
    save_png(((mask > 0.5) * 255).astype(np.uint8), paths["segm"])
    K = result.K
    fit = {"vertices": result.vertices.numpy().astype(np.float32), "focal": float(K[0, 0]),
           "centre": (float(K[0, 2]), float(K[1, 2])), "body": "anny", "betas": result.betas[0].numpy(),
           "pose": result.pose[0].numpy(), "R": result.R.numpy(), "t": result.t.numpy()}
    _save_pickle(fit, paths["smpl"])
    with atomic_file(paths["anny"]) as temporary:
        temporary.write_text(json.dumps(fit_to_dict(result)))
    save_png(overlay(crop, result, faces), paths["overlay"])
    return paths


def smplx_fit_params(result: FitResult, body) -> dict[str, np.ndarray]:
    """A fit on an `SMPLXBody` as DINAR's SMPL-X parameters (`zoo.body.smplx_params`): camera-space
    vertices = smplx(params) + transl, with the fit's camera rotation folded into global_orient.

    The zoo's body output has its pelvis at the origin and turns about it, so R_cam * body(R_root)
    = body(R_cam R_root); smplx puts the pelvis at `body.root_joint(betas)`, which transl removes."""
    from zoo.body.controls import axis_angle_to_matrix, matrix_to_axis_angle

    if not hasattr(body, "root_joint") or not hasattr(body, "hand_pose_dim"):
        raise TypeError(f"SMPL-X parameters need an SMPLXBody fit, got {type(body).__name__}")
    pose = result.pose.double()
    root = axis_angle_to_matrix(pose[:, :3].reshape(1, 1, 3))[0, 0]
    global_orient = matrix_to_axis_angle((result.R.double() @ root)[None, None])[0]
    transl = result.t.double() - body.root_joint(result.betas.float())[0].double()
    as_row = lambda x: np.asarray(x, dtype=np.float32).reshape(1, -1)  # noqa: E731
    return {"betas": as_row(result.betas), "global_orient": as_row(global_orient), "body_pose": as_row(pose[:, 3:66]),
            "left_hand_pose": np.zeros((1, body.hand_pose_dim), np.float32),
            "right_hand_pose": np.zeros((1, body.hand_pose_dim), np.float32), "jaw_pose": np.zeros((1, 3), np.float32),
            "expression": np.zeros((1, body.num_expression_coeffs), np.float32), "transl": as_row(transl),
            "focal": float(result.K[0, 0]), "centre": (float(result.K[0, 2]), float(result.K[1, 2]))}


def write_smplx_fit(root: str | Path, key: str, crop: np.ndarray, mask: np.ndarray, result: FitResult,
                    body) -> dict[str, Path]:
    """DINAR's input folder for one photo: rgb/<id>.png, segm/<id>.png, smplx/<id>.pkl."""
    root = Path(root)
    paths = {"rgb": root / "rgb" / f"{key}.png", "segm": root / "segm" / f"{key}.png",
             "smplx": root / "smplx" / f"{key}.pkl"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    save_png(crop, paths["rgb"])
    save_png(((mask > 0.5) * 255).astype(np.uint8), paths["segm"])
    _save_pickle(smplx_fit_params(result, body), paths["smplx"])
    return paths


def read_fit_json(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an `anny/<id>.json` fit: betas (1, B), pose (1, P), R, t, K."""
    data = json.loads(Path(path).read_text())
    if data.get("body") != "anny":
        raise ValueError(f"{path} is not an Anny fit (body={data.get('body')!r})")
    out = {k: torch.tensor(data[k], dtype=torch.float32) for k in ("betas", "pose", "R", "t", "K")}
    out["betas"], out["pose"] = out["betas"][None], out["pose"][None]
    out["image_size"] = tuple(data["image_size"])
    return out


__all__ = ["fit_to_dict", "overlay", "read_fit_json", "shade", "write_fit"]
