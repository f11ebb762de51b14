"""`SMPLBody` / `SMPLXBody`: SMPL and SMPL-X (through `smplx`) from the user's own licensed files.

Nothing here is shipped or downloaded: SMPL and SMPL-X are licensed (non-commercial research
licence, registration on their sites). Files the user provides:
- model file: SMPL `.pkl` (e.g. `basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl`, `SMPL_NEUTRAL.pkl`;
  the original `.pkl` files pickle chumpy arrays, so either `pip install chumpy` or strip them
  with smplx's `tools/clean_ch.py`) or an `.npz` with the same keys (`v_template`, `shapedirs`,
  `posedirs`, `J_regressor`, `weights`, `kintree_table`, `f`); SMPL-X `.npz` or `.pkl`
  (`SMPLX_NEUTRAL.npz`, the same keys plus `hands_components{l,r}`, `hands_mean{l,r}`,
  `lmk_faces_idx`, `lmk_bary_coords`).
- UV file: an OBJ with `vt` lines and `f v/vt ...` faces (the official `smpl_uv.obj` /
  `smplx_uv.obj`; its triangles are matched to the model's faces by their vertices, whatever
  their order), or an `.npz` with `vt` (T, 2) and `ft` (F, 3) aligned with the model's `f`
  (SMPL-X `.npz` releases that carry `vt` / `ft` themselves can serve as their own UV file). UVs
  are read v-up (OBJ convention) and flipped to the zoo's v-down unless `uv_v_up=False`.

Defaults (`None`) resolve under `zoo_home()/body/smpl` and `zoo_home()/body/smplx`.
Part labels come from the model itself: each face takes the joint with the largest summed
skinning weight over its corners (`fine_part_names` = joint names), mapped to `COARSE_PARTS`.
Output: smplx's linear blend skinning, then the root joint is moved to the origin (SMPL's
canonical frame already is y up, facing +z, metres).
"""
from __future__ import annotations

import contextlib
import io
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from zoo.body.base import BodyModel, BodyOutput
from zoo.body.controls import ControlRig
from zoo.body.uv import corner_uvs_from_layout, read_obj
from zoo.utils.paths import zoo_home

logger = logging.getLogger(__name__)

_BODY_JOINTS = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
]
SMPL_JOINT_NAMES = _BODY_JOINTS + ["left_hand", "right_hand"]
_FINGERS = [f"{finger}{k}" for finger in ("index", "middle", "pinky", "ring", "thumb") for k in (1, 2, 3)]
SMPLX_JOINT_NAMES = (_BODY_JOINTS + ["jaw", "left_eye", "right_eye"]
                     + [f"left_{f}" for f in _FINGERS] + [f"right_{f}" for f in _FINGERS])
_COARSE_BY_KEYWORD = (  # first keyword found in the joint name wins
    ("collar", 2), ("pelvis", 2), ("spine", 2), ("neck", 1), ("head", 1), ("jaw", 1), ("eye", 1),
    ("shoulder", 3), ("elbow", 4), ("wrist", 4), ("hand", 4), ("index", 4), ("middle", 4),
    ("pinky", 4), ("ring", 4), ("thumb", 4), ("hip", 5), ("knee", 6), ("ankle", 7), ("foot", 7),
)
_RIG = ControlRig(hip=(1, 2), knee=(4, 5), ankle=(7, 8), shoulder=(16, 17), elbow=(18, 19), wrist=(20, 21),
                  spine=(3, 6, 9), neck=(12, 15))
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_SMPLX_REQUIRED = _REQUIRED + ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
                               "lmk_faces_idx", "lmk_bary_coords")
_VPOSER_HINT = ("; a 32-dim body pose looks like a VPoser latent: decode it with VPoser to "
                "axis-angle (21 joints x 3 = 63) first")


def _hint(value, offset: int) -> str:
    """Name the usual cause of a wrong pose width (offset: 3 when global_orient is included)."""
    width = value.shape[-1] - offset if torch.is_tensor(value) and value.ndim == 2 else None
    if width == 32 or (width is not None and width + offset == 32):
        return _VPOSER_HINT
    if width == 63:
        return "; 63 = 21 joints x 3 is an SMPL-X / SMPL-H body_pose (SMPL has 23 body joints)"
    if width == 69:
        return "; 69 = 23 joints x 3 is an SMPL body_pose (SMPL-X has 21 body joints + separate hands)"
    return ""


def _coarse_of(name: str) -> int:
    for keyword, part in _COARSE_BY_KEYWORD:
        if keyword in name:
            return part
    raise ValueError(f"no coarse part for joint {name!r}")


def _require_file(path: Path, what: str, how: str, arg: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found: {path}. {how} Put it at {path}, or set `{arg}` (YAML: init_args.{arg}) "
            "to where it is. The zoo never downloads or ships these files.")


def _load_model_dict(path: Path) -> dict:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=True) as data:
            return {k: data[k] for k in data.files}
    try:
        with open(path, "rb") as handle:
            return dict(pickle.load(handle, encoding="latin1"))
    except ModuleNotFoundError as err:
        raise ImportError(
            f"{path} pickles {err.name!r} objects (the original SMPL files use chumpy): `pip install chumpy`, "
            "or convert the file once with smplx's tools/clean_ch.py") from err


class _SMPLFamily(BodyModel):
    """Shared loading, part labels and skinning of SMPL and SMPL-X."""

    _KIND = ""
    _JOINTS: list[str] = []
    _MODEL_HOWTO = ""
    _UV_HOWTO = ""

    def _load(self, model_path: str | None, uv_path: str | None, gender: str, uv_v_up: bool,
              default_model: str, default_uv: str) -> tuple[dict, Path]:
        if gender not in ("neutral", "male", "female"):
            raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}")
        folder = zoo_home() / "body" / self._KIND.lower().replace("-", "")
        model_file = Path(model_path).expanduser() if model_path else folder / default_model.format(gender.upper())
        uv_file = Path(uv_path).expanduser() if uv_path else folder / default_uv
        _require_file(model_file, f"{self._KIND} model file", self._MODEL_HOWTO, "model_path")
        _require_file(uv_file, f"{self._KIND} UV layout file", self._UV_HOWTO, "uv_path")
        if model_file.suffix not in (".pkl", ".npz"):
            raise ValueError(f"model file must be .pkl or .npz, got {model_file}")
        data = _load_model_dict(model_file)
        required = _SMPLX_REQUIRED if self._KIND == "SMPL-X" else _REQUIRED
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{model_file} is not a {self._KIND} model file: missing keys {missing}")
        joints = np.asarray(data["kintree_table"]).shape[-1]
        if joints != len(self._JOINTS) or np.asarray(data["weights"]).shape[-1] != joints:
            raise ValueError(f"{model_file}: {self._KIND} has {len(self._JOINTS)} joints, the file has "
                             f"kintree {np.asarray(data['kintree_table']).shape}, weights {np.asarray(data['weights']).shape}")
        self._uv_file, self._uv_v_up = uv_file, uv_v_up
        return data, model_file

    def _corner_uvs(self, faces: np.ndarray) -> torch.Tensor:
        """Per-corner UVs of the model's faces from the UV file (OBJ matched by vertices, or npz)."""
        path = self._uv_file
        if path.suffix == ".npz":
            with np.load(path) as data:
                if "vt" not in data.files or "ft" not in data.files:
                    raise ValueError(f"{path} must hold 'vt' (T, 2) and 'ft' (F, 3), found {data.files}")
                vt, ft = data["vt"], data["ft"].astype(np.int64)
            if ft.shape != faces.shape:
                raise ValueError(f"{path}: ft {ft.shape} must match the model's faces {faces.shape}")
            return corner_uvs_from_layout(vt, ft, v_up=self._uv_v_up)
        if path.suffix != ".obj":
            raise ValueError(f"UV file must be .obj or .npz, got {path}")
        vt, ft, fv = read_obj(path)
        if ft is None or not len(vt):
            raise ValueError(f"{path} has no UV layout ('vt' lines and 'f v/vt' faces)")
        if len(fv) != len(faces):
            raise ValueError(f"{path} has {len(fv)} triangles, the {self._KIND} model has {len(faces)}: "
                             f"is it the {self._KIND} UV file?")
        lookup = {tuple(sorted(tri)): k for k, tri in enumerate(fv.tolist())}
        ft_model = np.empty_like(faces)
        for k, tri in enumerate(faces.tolist()):
            match = lookup.get(tuple(sorted(tri)))
            if match is None:
                raise ValueError(f"{path}: no triangle over vertices {tri} (face {k} of the model); "
                                 f"is it the {self._KIND} UV file?")
            corner = {v: t for v, t in zip(fv[match], ft[match])}
            ft_model[k] = [corner[v] for v in tri]
        return corner_uvs_from_layout(vt, ft_model, v_up=self._uv_v_up)

    def _finish(self, smpl, corner_uvs: torch.Tensor, hand_pca: bool) -> None:
        """Copy what skinning needs into non-persistent buffers (never saved: licensed data)."""
        names = ["v_template", "shapedirs", "posedirs", "J_regressor", "parents", "lbs_weights"]
        if hand_pca:
            names += ["left_hand_components", "right_hand_components"]
        if hasattr(smpl, "pose_mean"):
            names += ["pose_mean", "expr_dirs"]
        for name in names:
            value = getattr(smpl, name)
            value = value.float() if value.is_floating_point() else value.long()
            self.register_buffer(f"_{name}", value.clone(), persistent=False)
        faces = smpl.faces_tensor.long()
        weights = self._lbs_weights[faces].sum(dim=1)  # (F, J)
        fine = weights.argmax(dim=1)
        coarse = torch.tensor([_coarse_of(n) for n in self._JOINTS])[fine]
        index = {n: i for i, n in enumerate(self._JOINTS)}
        self.fine_part_names = list(self._JOINTS)
        self.joint_names = list(self._JOINTS)
        self.control_rig = _RIG
        hands = [i for n, i in index.items() if _coarse_of(n) == 4 and "elbow" not in n]
        self._set_mesh(faces, corner_uvs, coarse, fine, head_fine=[index["head"]], hand_fine=hands,
                       face_fine=[i for n, i in index.items() if n in ("jaw", "left_eye", "right_eye")])

    def _skin(self, shape: torch.Tensor, full_pose: torch.Tensor, shapedirs: torch.Tensor) -> BodyOutput:
        from smplx.lbs import lbs

        vertices, joints = lbs(shape, full_pose, self._v_template, shapedirs, self._posedirs,
                               self._J_regressor, self._parents, self._lbs_weights, pose2rot=True)
        root = joints[:, :1]
        return BodyOutput(vertices=vertices - root, joints=joints - root)

    def _split_pose(self, pose, extra, body_width: int) -> torch.Tensor | None:
        """`pose` (B, 3 + body_width), or `global_orient` (B, 3) + `body_pose` (B, body_width) in extra."""
        global_orient, body_pose = extra.pop("global_orient", None), extra.pop("body_pose", None)
        if pose is not None:
            if global_orient is not None or body_pose is not None:
                raise ValueError("pass either pose or global_orient + body_pose, not both")
            return self._check_params("pose", pose, 3 + body_width,
                                      f" (global_orient 3 + body_pose {body_width}){_hint(pose, 3)}")
        if global_orient is None and body_pose is None:
            return None
        body_pose = self._check_params("body_pose", body_pose, body_width,
                                       f" ({body_width // 3} joints x 3 axis-angle){_hint(body_pose, 0)}")
        global_orient = self._check_params("global_orient", global_orient, 3)
        batch = self._batch_size(global_orient=global_orient, body_pose=body_pose)
        ref = body_pose if body_pose is not None else global_orient
        go = global_orient if global_orient is not None else ref.new_zeros(batch, 3)
        bp = body_pose if body_pose is not None else ref.new_zeros(batch, body_width)
        return torch.cat([go.expand(batch, -1), bp.expand(batch, -1)], dim=1)

    @staticmethod
    def _no_more(extra: dict) -> None:
        if extra:
            raise TypeError(f"unexpected inputs {sorted(extra)}")


def _build_quietly(factory, **kwargs):
    """smplx prints warnings (few shape components): send them to the log instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        model = factory(**kwargs)
    if buffer.getvalue().strip():
        logger.info("smplx: %s", buffer.getvalue().strip())
    return model


class SMPLBody(_SMPLFamily):
    """SMPL (6890 vertices, 13776 faces, 24 joints) behind the zoo body interface.

    forward(betas (B, num_betas), pose (B, 72) = global_orient 3 + body_pose 69 axis-angle), or
    `global_orient=` / `body_pose=` keyword tensors instead of `pose`.

    Args:
        model_path: SMPL model file (.pkl or .npz, see the module doc); None:
            `zoo_home()/body/smpl/SMPL_<GENDER>.pkl`.
        uv_path: UV layout (.obj with vt + f v/vt, or .npz with vt/ft); None:
            `zoo_home()/body/smpl/smpl_uv.obj`.
        gender: "neutral", "male" or "female" (only used to name the default model file).
        num_betas: shape components used (at most what the file has; 10 in SMPL 1.x files).
        uv_v_up: whether the UV file stores v up (OBJ convention; flipped to the zoo's v down).
    """

    _KIND, _JOINTS = "SMPL", SMPL_JOINT_NAMES
    _MODEL_HOWTO = ("SMPL is licensed: register at https://smpl.is.tue.mpg.de, accept the licence and download "
                    "'SMPL for Python' (e.g. basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl, renamed SMPL_NEUTRAL.pkl).")
    _UV_HOWTO = ("Download the SMPL UV map (smpl_uv.obj, 'UV map' on https://smpl.is.tue.mpg.de, same licence); "
                 "an .npz with vt (T, 2) and ft (F, 3) works too.")

    def __init__(self, model_path: str | None = None, uv_path: str | None = None, gender: str = "neutral",
                 num_betas: int = 10, uv_v_up: bool = True) -> None:
        super().__init__()
        import smplx
        from smplx.utils import Struct

        data, model_file = self._load(model_path, uv_path, gender, uv_v_up, "SMPL_{}.pkl", "smpl_uv.obj")
        available = np.asarray(data["shapedirs"]).shape[-1]
        if not 1 <= num_betas <= available:
            raise ValueError(f"num_betas must be in 1..{available} ({model_file} has {available} shape components), got {num_betas}")
        smpl = _build_quietly(smplx.SMPL, model_path=str(model_file), data_struct=Struct(**data), num_betas=num_betas,
                              create_betas=False, create_global_orient=False, create_body_pose=False,
                              create_transl=False, gender=gender)
        self.num_betas = smpl.num_betas
        self.num_pose_params = 72
        self._finish(smpl, self._corner_uvs(np.asarray(data["f"], dtype=np.int64)), hand_pca=False)

    def forward(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None, **extra) -> BodyOutput:
        """Vertices (B, V, 3) and the 24 joints (B, 24, 3), body frame, pelvis at the origin."""
        extra = dict(extra)
        pose = self._split_pose(pose, extra, 69)
        self._no_more(extra)
        betas = self._check_params("betas", betas, self.num_betas)
        batch = self._batch_size(betas=betas, pose=pose)
        dev = self._v_template
        pose = dev.new_zeros(batch, 72) if pose is None else pose.expand(batch, -1)
        betas = dev.new_zeros(batch, self.num_betas) if betas is None else betas.expand(batch, -1)
        return self._skin(betas, pose, self._shapedirs)


class SMPLXBody(_SMPLFamily):
    """SMPL-X (10475 vertices, 20908 faces, 55 joints; UV atlas 11438 vertices) behind the zoo interface.

    forward(betas (B, num_betas), pose (B, 66) = global_orient 3 + body_pose 63 axis-angle,
    **extra) with optional extra tensors `left_hand_pose` / `right_hand_pose` (B, num_pca_comps)
    (or (B, 45) axis-angle when `use_pca=False`), `jaw_pose`, `leye_pose`, `reye_pose` (B, 3),
    `expression` (B, num_expression_coeffs); `global_orient=` + `body_pose=` may replace `pose`.
    A 32-dim body pose is rejected as a VPoser latent.

    Args:
        model_path: SMPL-X model file (.npz or .pkl); None: `zoo_home()/body/smplx/SMPLX_<GENDER>.npz`.
        uv_path: UV layout (.obj or .npz); None: `zoo_home()/body/smplx/smplx_uv.obj`.
        gender: "neutral", "male" or "female" (names the default model file).
        num_betas: shape components (10 for files with 10 + 10 components, up to 300 otherwise).
        num_expression_coeffs: expression components (at most 10 or 100 as for betas).
        num_pca_comps: hand pose PCA components (DINAR uses 6, see the implementation notes).
        use_pca: hand poses as PCA coefficients (True) or 15 x 3 axis-angle.
        flat_hand_mean: zero hand pose = flat hand (True) or the file's mean hand pose (False).
        uv_v_up: whether the UV file stores v up (OBJ convention).
    """

    _KIND, _JOINTS = "SMPL-X", SMPLX_JOINT_NAMES
    _MODEL_HOWTO = ("SMPL-X is licensed: register at https://smpl-x.is.tue.mpg.de, accept the licence and "
                    "download the SMPL-X model (SMPLX_NEUTRAL.npz from models_smplx_v1_1.zip).")
    _UV_HOWTO = ("Download the SMPL-X UV map (smplx_uv.obj in smplx_uv.zip on https://smpl-x.is.tue.mpg.de, "
                 "same licence); an .npz with vt (T, 2) and ft (F, 3) works too.")

    def __init__(self, model_path: str | None = None, uv_path: str | None = None, gender: str = "neutral",
                 num_betas: int = 10, num_expression_coeffs: int = 10, num_pca_comps: int = 6,
                 use_pca: bool = True, flat_hand_mean: bool = False, uv_v_up: bool = True) -> None:
        super().__init__()
        import smplx

        data, model_file = self._load(model_path, uv_path, gender, uv_v_up, "SMPLX_{}.npz", "smplx_uv.obj")
        components = np.asarray(data["shapedirs"]).shape[-1]
        max_betas, max_expr = (300, 100) if components >= 400 else (10, 10)
        if not 1 <= num_betas <= max_betas or not 0 <= num_expression_coeffs <= max_expr:
            raise ValueError(f"{model_file} has {components} shape+expression components: num_betas must be in "
                             f"1..{max_betas} (got {num_betas}), num_expression_coeffs in 0..{max_expr} (got {num_expression_coeffs})")
        if use_pca and not 1 <= num_pca_comps <= 45:
            raise ValueError(f"num_pca_comps must be in 1..45, got {num_pca_comps}")
        smpl = _build_quietly(
            smplx.SMPLX, model_path=str(model_file), ext=model_file.suffix[1:], gender=gender, num_betas=num_betas,
            num_expression_coeffs=num_expression_coeffs, num_pca_comps=num_pca_comps, use_pca=use_pca,
            flat_hand_mean=flat_hand_mean, use_face_contour=False, create_betas=False, create_global_orient=False,
            create_body_pose=False, create_transl=False, create_left_hand_pose=False, create_right_hand_pose=False,
            create_expression=False, create_jaw_pose=False, create_leye_pose=False, create_reye_pose=False)
        self.num_betas = smpl.num_betas
        self.num_expression_coeffs = smpl.num_expression_coeffs
        self.hand_pose_dim = num_pca_comps if use_pca else 45
        self.use_pca = use_pca
        self.num_pose_params = 66
        self._finish(smpl, self._corner_uvs(np.asarray(data["f"], dtype=np.int64)), hand_pca=use_pca)

    def forward(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None, **extra) -> BodyOutput:
        """Vertices (B, V, 3) and the 55 skeleton joints (B, 55, 3), body frame, pelvis at the origin."""
        extra = dict(extra)
        pose = self._split_pose(pose, extra, 63)
        betas = self._check_params("betas", betas, self.num_betas)
        widths = {"left_hand_pose": self.hand_pose_dim, "right_hand_pose": self.hand_pose_dim, "jaw_pose": 3,
                  "leye_pose": 3, "reye_pose": 3, "expression": self.num_expression_coeffs}
        parts = {k: self._check_params(k, extra.pop(k, None), w) for k, w in widths.items()}
        self._no_more(extra)
        batch = self._batch_size(betas=betas, pose=pose, **parts)
        ref = self._v_template
        full = {k: (ref.new_zeros(batch, w) if parts[k] is None else parts[k].expand(batch, -1)) for k, w in widths.items()}
        pose = ref.new_zeros(batch, 66) if pose is None else pose.expand(batch, -1)
        betas = ref.new_zeros(batch, self.num_betas) if betas is None else betas.expand(batch, -1)
        left, right = full["left_hand_pose"], full["right_hand_pose"]
        if self.use_pca:
            left, right = left @ self._left_hand_components, right @ self._right_hand_components
        full_pose = torch.cat([pose, full["jaw_pose"], full["leye_pose"], full["reye_pose"], left, right], dim=1)
        full_pose = full_pose + self._pose_mean
        shape = torch.cat([betas, full["expression"]], dim=1)
        return self._skin(shape, full_pose, torch.cat([self._shapedirs, self._expr_dirs], dim=-1))

    def root_joint(self, betas: torch.Tensor | None = None, expression: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3) the pelvis of the shaped rest mesh in SMPL-X's own frame: what `forward`
        subtracts. smplx's vertices (its `transl` = 0) are ours + this (posing turns about it)."""
        betas = self._check_params("betas", betas, self.num_betas)
        expression = self._check_params("expression", expression, self.num_expression_coeffs)
        batch = self._batch_size(betas=betas, expression=expression)
        ref = self._v_template
        betas = ref.new_zeros(batch, self.num_betas) if betas is None else betas.expand(batch, -1)
        expression = ref.new_zeros(batch, self.num_expression_coeffs) if expression is None else expression.expand(batch, -1)
        shape = torch.cat([betas, expression], dim=1)
        dirs = torch.cat([self._shapedirs, self._expr_dirs], dim=-1)
        shaped = ref[None] + torch.einsum("bl,vcl->bvc", shape, dirs)
        return torch.einsum("v,bvc->bc", self._J_regressor[0], shaped)


def default_paths() -> dict[str, Path]:
    """Where `SMPLBody` / `SMPLXBody` look for their files when given no paths (neutral gender)."""
    base = zoo_home() / "body"
    return {"smpl_model": base / "smpl" / "SMPL_NEUTRAL.pkl", "smpl_uv": base / "smpl" / "smpl_uv.obj",
            "smplx_model": base / "smplx" / "SMPLX_NEUTRAL.npz", "smplx_uv": base / "smplx" / "smplx_uv.obj"}


