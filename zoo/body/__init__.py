"""Parametric human bodies behind one interface.

`AnnyBody` (default, embedded, Apache-2.0 / CC0 assets) and `SMPLBody` / `SMPLXBody` (from the
user's own licensed SMPL / SMPL-X files) all return `BodyOutput` in the body frame (metres, y up,
facing +z, origin at the root joint) and expose triangles, per-corner UVs (v down), Texformer's
7 coarse parts (`COARSE_PARTS`), finer parts, UV region masks and `pose_from_controls`.
"""
from zoo.body.anny_body import AnnyBody
from zoo.body.base import COARSE_PARTS, REGIONS, TEXFORMER_SMPL12_TO_COARSE, BodyModel, BodyOutput, coarse_from_smpl12
from zoo.body.smpl_body import SMPLBody, SMPLXBody
from zoo.body.uv import rasterize_uv, rasterize_uv_mask

__all__ = [
    "AnnyBody",
    "BodyModel",
    "BodyOutput",
    "COARSE_PARTS",
    "REGIONS",
    "SMPLBody",
    "SMPLXBody",
    "TEXFORMER_SMPL12_TO_COARSE",
    "coarse_from_smpl12",
    "rasterize_uv",
    "rasterize_uv_mask",
]
