"""One interface for parametric human bodies (Anny by default; SMPL / SMPL-X from user files).

Every backend returns vertices in metres in the BODY frame: y up, the person faces +z, their
left hand is on +x, origin at the root joint (pelvis). Meshes are triangles; UVs are per face
corner in the zoo convention (u right, v DOWN, texel row = v * H), so atlas seams are kept.

Coarse parts follow Texformer's 7 labels (EANet parser classes). Texformer maps the 12 SMPL
part labels of its `SMPL_RSC/parts` images with `TEXFORMER_SMPL12_TO_COARSE`; read off that
mapping, the SMPL labels are 3 head, 6 torso, 1/2 upper arms, 7/8 lower arms, 4/5 upper legs,
9/10 lower legs, 11/12 feet. Our choices where the 7 classes are silent: the neck belongs to the
head, hands to the lower arms, the collar / shoulder-top region and the hips to the torso.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from zoo.body.controls import NATURAL_ARM_ABDUCTION_DEG, NATURAL_ELBOW_BEND_DEG, ControlRig, controls_to_rotations, matrix_to_axis_angle
from zoo.body.uv import rasterize_uv_mask
from zoo.pretrained import PretrainedMixin

COARSE_PARTS: dict[int, str] = {
    1: "head",        # head and neck
    2: "torso",       # chest, belly, back, hips/pelvis, collar and shoulder top
    3: "upper_arms",  # shoulder joint to elbow
    4: "lower_arms",  # elbow to fingertips (hands included)
    5: "upper_legs",  # thighs
    6: "lower_legs",  # knee to ankle
    7: "feet",        # ankle, foot and toes
}
TEXFORMER_SMPL12_TO_COARSE: dict[int, int] = {3: 1, 6: 2, 1: 3, 2: 3, 7: 4, 8: 4, 4: 5, 5: 5, 9: 6, 10: 6, 11: 7, 12: 7}
REGIONS = ("face", "hands", "face_hands", *COARSE_PARTS.values())


def coarse_from_smpl12(labels: torch.Tensor) -> torch.Tensor:
    """Map Texformer's SMPL part label images (0 background, 1..12) to the coarse parts 0..7."""
    table = torch.zeros(13, dtype=torch.int64, device=labels.device)
    for fine, coarse in TEXFORMER_SMPL12_TO_COARSE.items():
        table[fine] = coarse
    if labels.min() < 0 or labels.max() > 12:
        raise ValueError(f"SMPL part labels must be in 0..12, got [{int(labels.min())}, {int(labels.max())}]")
    return table[labels.long()]


@dataclass
class BodyOutput:
    """What every body model returns.

    vertices: (B, V, 3) metres, body frame (y up, facing +z, origin at the root joint).
    joints: (B, J, 3) the backend's skeleton joints in the same frame (J = len(joint_names)).
    """

    vertices: torch.Tensor
    joints: torch.Tensor | None = None


class BodyModel(PretrainedMixin, nn.Module, abc.ABC):
    """Abstract parametric body: shape `betas` (B, num_betas) + pose (B, num_pose_params) -> mesh.

    Subclasses build their backend, then call `_set_mesh(...)` once. Public buffers (never
    trained, rebuilt from the constructor arguments, so not saved): `faces` (F, 3) int64,
    `corner_uvs` (F, 3, 2), `face_parts` (F,) in 1..7 (see `COARSE_PARTS`), `face_parts_fine`
    (F,) indices into `fine_part_names`, `template_vertices` (V, 3) (the zero-shape, zero-pose
    output) and `template_joints` (J, 3).
    """

    num_betas: int
    num_pose_params: int
    fine_part_names: list[str]
    joint_names: list[str]
    control_rig: ControlRig

    # -- construction helpers ---------------------------------------------------------------
    def _set_mesh(self, faces: torch.Tensor, corner_uvs: torch.Tensor, face_parts: torch.Tensor,
                  face_parts_fine: torch.Tensor, head_fine: Sequence[int], hand_fine: Sequence[int],
                  face_fine: Sequence[int] = ()) -> None:
        """Register the topology buffers, then the zero-pose template and the UV regions.

        `head_fine` / `hand_fine` / `face_fine` are fine-part indices: the face region is the
        front of the `head_fine` faces (`_front_of_head`) plus every `face_fine` face (eyes)."""
        faces = faces.long()
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3) triangles, got {tuple(faces.shape)}")
        if corner_uvs.shape != (faces.shape[0], 3, 2):
            raise ValueError(f"corner_uvs must be ({faces.shape[0]}, 3, 2), got {tuple(corner_uvs.shape)}")
        if face_parts.shape != (faces.shape[0],) or face_parts.min() < 1 or face_parts.max() > len(COARSE_PARTS):
            raise ValueError("face_parts must be (F,) labels in 1..7")
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("corner_uvs", corner_uvs.float().clamp(0.0, 1.0), persistent=False)
        self.register_buffer("face_parts", face_parts.long(), persistent=False)
        self.register_buffer("face_parts_fine", face_parts_fine.long(), persistent=False)
        with torch.no_grad():
            rest = self.forward()
        self.register_buffer("template_vertices", rest.vertices[0].detach().clone(), persistent=False)
        self.register_buffer("template_joints", rest.joints[0].detach().clone(), persistent=False)
        head = torch.isin(self.face_parts_fine, torch.as_tensor(head_fine, dtype=torch.long))
        hands = torch.isin(self.face_parts_fine, torch.as_tensor(hand_fine, dtype=torch.long))
        always = torch.isin(self.face_parts_fine, torch.as_tensor(list(face_fine), dtype=torch.long))
        self.register_buffer("_face_region", self._front_of_head(head) | always, persistent=False)
        self.register_buffer("_hand_region", hands, persistent=False)

    def _front_of_head(self, head: torch.Tensor) -> torch.Tensor:
        """Head faces in front of the head's centre whose normal points forward (our face region)."""
        tri = self.template_vertices[self.faces]  # (F, 3, 3)
        centroid = tri.mean(dim=1)
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        # Winding-agnostic: flip the normals if the mesh's signed volume says they point inward.
        signed_volume = (torch.linalg.cross(tri[:, 0], tri[:, 1]) * tri[:, 2]).sum()
        normal = normal * torch.where(signed_volume < 0, -1.0, 1.0)
        if not head.any():
            return head
        centre_z = centroid[head, 2].mean()
        return head & (centroid[:, 2] > centre_z) & (normal[:, 2] > 0.2)

    # -- public API --------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None, **extra) -> BodyOutput:
        """Pose and shape the body.

        Args:
            betas: (B, num_betas) shape parameters; None = zeros (the template shape).
            pose: (B, num_pose_params) axis-angle blocks of `joint_names_posed`; None = zero pose.
            **extra: backend-specific inputs (e.g. SMPL-X hands, jaw, expression); unknown names
                raise TypeError. A batch of 1 broadcasts against the others.
        Returns:
            BodyOutput with vertices (B, V, 3) and joints (B, J, 3), float32, body frame.
        """

    def region_faces(self, region: str = "face_hands") -> torch.Tensor:
        """(F,) bool faces of a named region: "face", "hands", "face_hands" or a `COARSE_PARTS` name."""
        if region == "face":
            return self._face_region
        if region == "hands":
            return self._hand_region
        if region == "face_hands":
            return self._face_region | self._hand_region
        for label, name in COARSE_PARTS.items():
            if region == name:
                return self.face_parts == label
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")

    def uv_region_mask(self, region: str = "face_hands", size: int = 128) -> torch.Tensor:
        """(size, size) bool texels covered by the faces of `region` (see `zoo.body.uv.rasterize_uv`)."""
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        return rasterize_uv_mask(self.corner_uvs[self.region_faces(region)], size)

    def pose_from_controls(self, batch_size: int | None = None, *, walk_phase_deg: float | torch.Tensor = 0.0,
                           stride_deg: float | torch.Tensor = 0.0, knee_swing_deg: float | torch.Tensor | None = None,
                           knee_bend_deg: float | torch.Tensor = 0.0, arm_swing_deg: float | torch.Tensor = 0.0,
                           arm_abduction_deg: float | torch.Tensor = NATURAL_ARM_ABDUCTION_DEG,
                           elbow_bend_deg: float | torch.Tensor = NATURAL_ELBOW_BEND_DEG,
                           torso_twist_deg: float | torch.Tensor = 0.0,
                           head_turn_deg: float | torch.Tensor = 0.0) -> torch.Tensor:
        """A batch of poses (B, num_pose_params) from semantic controls, all in degrees.

        Each control is a float or a (B,) tensor (B from the tensors or `batch_size`). The
        defaults give a natural standing pose: everything zero except the arms hanging
        `NATURAL_ARM_ABDUCTION_DEG` away from the body with slightly bent elbows. Walking:
        `walk_phase_deg` in [0, 360) (90: left leg forward), `stride_deg` the hip swing
        amplitude (about 20-30 for a walk), `knee_swing_deg` the extra knee bend of the forward
        swinging leg (None: 2 x stride), `arm_swing_deg` the shoulder swing amplitude. Sign
        conventions and the geometry are documented in `zoo.body.controls`.
        """
        knee_swing = 2.0 * torch.as_tensor(stride_deg, dtype=torch.float64) if knee_swing_deg is None else knee_swing_deg
        rotations = controls_to_rotations(
            self.control_rig, self.template_joints, len(self.joint_names_posed), batch_size,
            walk_phase_deg=walk_phase_deg, stride_deg=stride_deg, knee_swing_deg=knee_swing,
            knee_bend_deg=knee_bend_deg, arm_swing_deg=arm_swing_deg, arm_abduction_deg=arm_abduction_deg,
            elbow_bend_deg=elbow_bend_deg, torso_twist_deg=torso_twist_deg, head_turn_deg=head_turn_deg)
        pose = matrix_to_axis_angle(rotations).reshape(rotations.shape[0], -1)
        return pose.to(self.template_vertices.dtype).to(self.template_vertices.device)

    @property
    def joint_names_posed(self) -> list[str]:
        """Names of the joints of the `pose` vector, 3 axis-angle values each, in order."""
        return self.joint_names[: self.num_pose_params // 3]

    # -- input validation --------------------------------------------------------------------
    def _check_params(self, name: str, value: torch.Tensor | None, width: int, hint: str = "") -> torch.Tensor | None:
        """Validate a (B, width) float tensor; returns it as the model's float dtype."""
        if value is None:
            return None
        if not torch.is_tensor(value):
            raise ValueError(f"{name} must be a torch.Tensor of shape (B, {width}), got {type(value).__name__}")
        if value.ndim != 2 or value.shape[1] != width:
            raise ValueError(f"{name} must be (B, {width}), got {tuple(value.shape)}{hint}")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype} with shape {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            rows = (~torch.isfinite(value)).any(-1).nonzero().flatten().tolist()[:4]
            raise ValueError(f"{name} holds NaN or inf (batch rows {rows}): the body would be NaN everywhere; "
                             "check the fit or the optimisation that produced these parameters")
        return value.to(self._param_dtype)

    @staticmethod
    def _batch_size(**tensors: torch.Tensor | None) -> int:
        sizes = {k: v.shape[0] for k, v in tensors.items() if v is not None}
        distinct = set(sizes.values()) - {1}
        if len(distinct) > 1:
            shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
            raise ValueError(f"batch sizes disagree (only 1 broadcasts): {shapes}")
        return distinct.pop() if distinct else 1

    @property
    def _param_dtype(self) -> torch.dtype:
        """Inputs are cast to the model's float dtype (float32 unless the module was converted)."""
        template = dict(self.named_buffers(recurse=False)).get("template_vertices")
        return template.dtype if template is not None else torch.float32

    def extra_repr(self) -> str:
        n_faces = self.faces.shape[0] if hasattr(self, "faces") else "?"
        n_verts = self.template_vertices.shape[0] if hasattr(self, "template_vertices") else "?"
        return f"V={n_verts}, F={n_faces}, num_betas={self.num_betas}, num_pose_params={self.num_pose_params}"
