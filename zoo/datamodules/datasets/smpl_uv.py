"""SMPL topology for datasets of real photos with SMPL fits, and the per-item UV render.

Real datasets (SMPLMarket, DeepFashion) store one fitted SMPL mesh per photo, as camera-space
vertices or as SMPL parameters. What the RefineTex systems consume is that mesh rendered into the
photo: per-pixel UV coordinates (a `grid_sample` grid, -2 on background), the silhouette and, when
the model is known, per-pixel part labels. This module turns the user's licensed SMPL files into
the topology the render needs and renders one item with the zoo's exact rasteriser.

Where the topology comes from:
- `smpl_model_path` + `smpl_uv_path`: a `zoo.body.SMPLBody` (the model's faces, corner UVs matched
  to them by vertices, face part labels 1..7 from the skinning weights, and the body itself, which
  fits stored as parameters need).
- `smpl_uv_path` alone: the official `smpl_uv.obj` lists SMPL's triangles as `f v/vt` lines over
  SMPL's vertex indices, so faces and corner UVs both come from it (no part labels, no
  parameters). An `.npz` UV file then needs `f` (F, 3) besides `vt` and `ft`.

Cameras are OpenCV pinholes with pixel centres at integer coordinates (`zoo.render.camera`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.body.uv import corner_uvs_from_layout, read_obj
from zoo.render import rasterize, render_labels, render_uv, texformer_intrinsics

SMPL_MODEL_HOWTO = ("SMPL is licensed: register at https://smpl.is.tue.mpg.de, accept the licence and download "
                    "'SMPL for Python' (e.g. basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl, or an .npz with the same "
                    "keys).")
SMPL_UV_HOWTO = ("Download the SMPL UV map (smpl_uv.obj, the 'UV map' download on https://smpl.is.tue.mpg.de, "
                 "same licence); an .npz with vt (T, 2), ft (F, 3) and, without a model file, f (F, 3) works too.")


def require_file(path: Path, what: str, how: str, key: str, inside: bool = False) -> Path:
    """`path` if it is a file, else a FileNotFoundError naming it, what to get and the config key
    (`inside`: the key is a data folder the file belongs in, not the file itself)."""
    path = Path(path)
    if not path.is_file():
        where = "to the folder that holds it" if inside else "to it"
        raise FileNotFoundError(f"{what} not found: {path}. {how} Set `{key}` (YAML: init_args.{key}) {where}. "
                                "The zoo never downloads or ships these files.")
    return path


@dataclass
class SMPLTopology:
    """What rendering a fitted SMPL mesh needs.

    faces: (F, 3) int64 vertex indices. corner_uvs: (F, 3, 2) float32 in [0, 1], v down.
    face_parts: (F,) int64 coarse parts 1..7 (`zoo.body.COARSE_PARTS`), None without a model.
    body: the `SMPLBody` when a model file was given (fits stored as parameters need it).
    """

    faces: torch.Tensor
    corner_uvs: torch.Tensor
    face_parts: torch.Tensor | None = None
    body: torch.nn.Module | None = None
    source: str = ""

    @property
    def min_vertices(self) -> int:
        return int(self.faces.max()) + 1 if self.faces.numel() else 0


def load_smpl_topology(smpl_model_path: str | None, smpl_uv_path: str | None, uv_v_up: bool = True) -> SMPLTopology:
    """Faces + corner UVs (+ part labels and the body with a model file); see the module doc.

    `smpl_uv_path=None` means `zoo_home()/body/smpl/smpl_uv.obj` (where `SMPLBody` looks too).
    """
    from zoo.body.smpl_body import default_paths

    uv_file = Path(smpl_uv_path).expanduser() if smpl_uv_path else default_paths()["smpl_uv"]
    require_file(uv_file, "SMPL UV layout file", SMPL_UV_HOWTO, "smpl_uv_path")
    if smpl_model_path:
        from zoo.body import SMPLBody

        model_file = require_file(Path(smpl_model_path).expanduser(), "SMPL model file", SMPL_MODEL_HOWTO,
                                  "smpl_model_path")
        body = SMPLBody(str(model_file), str(uv_file), uv_v_up=uv_v_up).eval()
        return SMPLTopology(body.faces.clone(), body.corner_uvs.clone(), body.face_parts.clone(), body,
                            f"{model_file} + {uv_file}")
    if uv_file.suffix == ".npz":
        with np.load(uv_file) as data:
            missing = [k for k in ("vt", "ft", "f") if k not in data.files]
            if missing:
                raise ValueError(f"{uv_file} lacks {missing}: without `smpl_model_path` the UV .npz must hold "
                                 f"vt (T, 2), ft (F, 3) and the faces f (F, 3); found {data.files}")
            vt, ft, fv = data["vt"], data["ft"].astype(np.int64), data["f"].astype(np.int64)
    elif uv_file.suffix == ".obj":
        vt, ft, fv = read_obj(uv_file)
        if ft is None or not len(vt):
            raise ValueError(f"{uv_file} has no UV layout ('vt' lines and 'f v/vt' faces): is it smpl_uv.obj?")
    else:
        raise ValueError(f"smpl_uv_path must be an .obj or .npz file, got {uv_file}")
    if ft.shape != fv.shape:
        raise ValueError(f"{uv_file}: ft {ft.shape} and f {fv.shape} must both be (F, 3)")
    corner_uvs = corner_uvs_from_layout(vt, ft, v_up=uv_v_up)
    return SMPLTopology(torch.as_tensor(fv, dtype=torch.int64), corner_uvs, None, None, str(uv_file))


def spin_intrinsics(image_size: tuple[int, int]) -> torch.Tensor:
    """(3, 3) Texformer / SPIN camera: focal 5000 px per 224 px of the square render (side = the
    longer image side) at its centre; a narrower image is the centre crop (128x64 of 128x128)."""
    return texformer_intrinsics(tuple(image_size), render_size=max(image_size))[0]


def scale_intrinsics(K: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> torch.Tensor:
    """K of an image of `from_size` (H, W) for the same image resized to `to_size`.

    Pixel centres sit at integers, so a coordinate maps as x' = (x + 0.5) * s - 0.5."""
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    K = K.clone().float()
    K[0, 0], K[0, 1], K[0, 2] = K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return K


def render_fit(topology: SMPLTopology, vertices: torch.Tensor, K: torch.Tensor, image_size: tuple[int, int],
               source: str = "") -> dict[str, torch.Tensor | None]:
    """Render one camera-space mesh (V, 3) with intrinsics K (3, 3) at `image_size` (H, W).

    Returns uv (H, W, 2) grid in [-1, 1] (-2 on background), mask (1, H, W) float and
    mesh_parts (H, W) int64 0..7 (None without face part labels)."""
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"{source}: vertices must be (V, 3), got {tuple(vertices.shape)}")
    if vertices.shape[0] < topology.min_vertices:
        raise ValueError(f"{source}: {vertices.shape[0]} vertices, but the SMPL faces of {topology.source} index "
                         f"{topology.min_vertices}: is the fit an SMPL mesh (6890 vertices)?")
    if not torch.isfinite(vertices).all():
        raise ValueError(f"{source}: the fitted vertices hold NaN or inf")
    frags = rasterize(vertices[None].float(), topology.faces, K[None].float(), tuple(image_size))
    uv, mask = render_uv(frags, topology.corner_uvs)
    parts = render_labels(frags, topology.face_parts)[0] if topology.face_parts is not None else None
    return {"uv": uv[0], "mask": mask[0], "mesh_parts": parts}


def _vector(params: Mapping, key: str, width: int, source: str) -> torch.Tensor | None:
    value = params.get(key)
    if value is None:
        return None
    value = torch.as_tensor(np.asarray(value, dtype=np.float64)).float().reshape(-1)
    if value.numel() != width:
        raise ValueError(f"{source}: {key} must hold {width} values, got {value.numel()}")
    return value


def vertices_from_params(body, params: Mapping, source: str = "") -> torch.Tensor:
    """(V, 3) SMPL vertices of a fit stored as parameters, in the fit's own frame.

    `params`: betas (<= body.num_betas, zero-padded), global_orient (3) and body_pose (69)
    axis-angle, optional transl (3). The result is what `smplx.SMPL` returns for them: the
    zoo body puts the pelvis at the origin, so the pelvis rest position of these betas (the one
    smplx keeps) is added back before `transl`."""
    if body is None:
        raise ValueError(f"{source} stores SMPL parameters: set `smpl_model_path` so the mesh can be built")
    betas = params.get("betas")
    betas = torch.as_tensor(np.asarray([] if betas is None else betas, dtype=np.float64)).float().reshape(-1)
    if betas.numel() > body.num_betas:
        raise ValueError(f"{source}: {betas.numel()} betas, the SMPL body uses {body.num_betas} (num_betas)")
    betas = torch.cat([betas, betas.new_zeros(body.num_betas - betas.numel())])[None]
    global_orient = _vector(params, "global_orient", 3, source)
    body_pose = _vector(params, "body_pose", 69, source)
    transl = _vector(params, "transl", 3, source)
    with torch.no_grad():
        out = body(betas=betas, global_orient=None if global_orient is None else global_orient[None],
                   body_pose=torch.zeros(1, 69) if body_pose is None else body_pose[None])
        shaped = body._v_template + torch.einsum("vck,k->vc", body._shapedirs, betas[0])
        pelvis = body._J_regressor[0] @ shaped
    vertices = out.vertices[0] + pelvis
    return vertices if transl is None else vertices + transl


__all__ = ["SMPLTopology", "load_smpl_topology", "render_fit", "require_file", "scale_intrinsics",
           "spin_intrinsics", "vertices_from_params", "SMPL_MODEL_HOWTO", "SMPL_UV_HOWTO"]
