"""A tiny DINAR input folder (rgb/, segm/, smplx/*.pkl) written by the tests themselves.

The body is the tiny SMPL-X of `tests.body.synthetic_smpl` with its cubes enlarged 4x. The
camera-space vertices of each frame come from the `smplx` package itself (its forward adds
`transl`), not from the zoo's SMPLXBody, so the loader's posing is checked independently.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.body.synthetic_smpl import write_smplx, write_uv_obj
from tests.datamodules.fixtures import write_pickle

ORIGINAL_SIZE = (240, 180)  # H, W of the "photos"
FOCAL = 5000.0


def write_tiny_smplx(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    data = write_smplx(folder / "SMPLX_NEUTRAL.npz")
    v = data["v_template"]
    owner = data["weights"].argmax(1)
    centres = data["J_regressor"] @ v
    data["v_template"] = centres[owner] + 4.0 * (v - centres[owner])
    np.savez(folder / "SMPLX_NEUTRAL.npz", **data)
    write_uv_obj(folder / "smplx_uv.obj", data["v_template"], np.asarray(data["f"], dtype=np.int64))
    return {"model_path": str(folder / "SMPLX_NEUTRAL.npz"), "uv_path": str(folder / "smplx_uv.obj")}


def frame_params(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "betas": rng.normal(0, 0.5, (1, 10)).astype(np.float32),
        # the fits face the camera: OpenCV's y down / z forward is SMPL-X's frame turned 180 degrees about x
        "global_orient": np.array([[np.pi, 0.0, 0.0]], dtype=np.float32) + rng.normal(0, 0.05, (1, 3)).astype(np.float32),
        "body_pose": rng.normal(0, 0.15, (1, 63)).astype(np.float32),
        "left_hand_pose": rng.normal(0, 0.5, (1, 6)).astype(np.float32),
        "right_hand_pose": rng.normal(0, 0.5, (1, 6)).astype(np.float32),
        "jaw_pose": rng.normal(0, 0.05, (1, 3)).astype(np.float32),
        "expression": rng.normal(0, 0.5, (1, 10)).astype(np.float32),
        "transl": np.array([[0.05 * seed, 0.1, 55.0]], dtype=np.float32),
        "gender": "neutral",
    }


def smplx_reference_vertices(model: dict, params: dict) -> np.ndarray:
    """(V, 3) camera-space vertices by the smplx package (float64)."""
    import smplx

    layer = smplx.SMPLX(model_path=model["model_path"], ext="npz", num_betas=10, num_expression_coeffs=10,
                        num_pca_comps=6, use_pca=True, flat_hand_mean=False, use_face_contour=False).double()
    # The tiny model has none of SMPL-X's landmark vertices: point the extra joints at vertex 0.
    selector = layer.vertex_joint_selector
    selector.extra_joints_idxs = torch.zeros_like(selector.extra_joints_idxs)
    args = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items() if k != "gender"}
    with torch.no_grad():
        return layer(**args).vertices[0].numpy()


def write_dinar_folder(root: Path, model: dict, frames: int = 2) -> dict:
    """rgb/, segm/, smplx/ for `frames` frames; returns {id: (params, reference vertices)}."""
    from zoo.body import SMPLXBody
    from zoo.render import intrinsics, rasterize, render_uv

    body = SMPLXBody(**model)
    H, W = ORIGINAL_SIZE
    out = {}
    for name in ("rgb", "segm", "smplx"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for k in range(frames):
        frame = f"frame{k:02d}"
        params = frame_params(k)
        verts = torch.tensor(smplx_reference_vertices(model, params), dtype=torch.float32)
        frags = rasterize(verts[None], body.faces, intrinsics(FOCAL, (H, W)), (H, W))
        uv, mask = render_uv(frags, body.corner_uvs)
        colour = torch.stack([(uv[0, ..., 0] + 1) / 2, (uv[0, ..., 1] + 1) / 2, torch.full_like(uv[0, ..., 0], 0.5)], -1)
        image = np.where(mask[0, 0, ..., None].numpy() > 0, colour.numpy(), 0.2)
        Image.fromarray((image * 255).round().astype(np.uint8)).save(root / "rgb" / f"{frame}.png")
        Image.fromarray((mask[0, 0].numpy() * 255).astype(np.uint8)).save(root / "segm" / f"{frame}.png")
        write_pickle(params, root / "smplx" / f"{frame}.pkl")
        out[frame] = (params, verts.numpy())
    return out
