"""`AnnyBody`: the default body of the zoo, Anny (NAVER, Apache-2.0; CC0 MakeHuman assets).

Anny is a MakeHuman-based body: shape is a handful of "phenotype" sliders in [0, 1] (gender,
age, muscle, weight, height, proportions; optionally cup size, firmness and three ethnicity
weights), pose is one rigid delta per bone of its 104-bone rig (fingers and toes included), and
the mesh carries the MakeHuman UV atlas. Everything ships with the `anny` package: no download.

Frames: Anny works in Blender's frame (z up, the person faces -y, metres) with, for identity
deltas, the root bone (pelvis) at the origin. `BODY_FROM_ANNY` rotates that into the zoo body
frame (y up, facing +z); poses given in body axes are conjugated back for Anny.

Cost: the first build on a machine assembles the model from MakeHuman targets (3-4 minutes on 2
CPU cores, ~800 MB written to Anny's cache, `$ANNY_CACHE_DIR` or `~/.cache/anny`, keyed by the
options); later builds read the cache (~2 s). A file lock under `zoo_home()/body` keeps parallel
processes (pytest-xdist, data-loader workers) from building it twice at once.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from zoo.body.base import BodyModel, BodyOutput
from zoo.body.controls import ControlRig, axis_angle_to_matrix
from zoo.utils.paths import zoo_home

logger = logging.getLogger(__name__)

BODY_FROM_ANNY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Coarse part of each bone, by name prefix (first match wins); bones of other rigs fall back to
# the part of their nearest classified ancestor.
_COARSE_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("head", 1), ("neck", 1), ("eye", 1), ("jaw", 1), ("tongue", 1),
    ("root", 2), ("pelvis", 2), ("spine", 2), ("clavicle", 2), ("shoulder", 2), ("breast", 2),
    ("upperarm", 3),
    ("lowerarm", 4), ("wrist", 4), ("metacarpal", 4), ("finger", 4),
    ("upperleg", 5),
    ("lowerleg", 6),
    ("foot", 7), ("toe", 7),
)
_HEAD_PREFIXES = ("head", "eye", "jaw", "tongue")
_HAND_PREFIXES = ("wrist", "metacarpal", "finger")


@contextlib.contextmanager
def _build_lock():
    """Inter-process lock around Anny's (non-atomic) cache writes; a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder = zoo_home() / "body"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "anny-build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_anny(phenotypes: str = "default", topology: str = "anny", cache_dir: str | None = None):
    """Build (or load from Anny's cache) an `anny.Anny` in float32 with plain torch skinning."""
    import anny
    import anny.paths

    previous = anny.paths.get_anny_cache_path()
    if cache_dir is not None:
        anny.paths.set_anny_cache_path(Path(cache_dir).expanduser())
    try:
        with _build_lock():
            logger.info("building Anny (topology=%s, phenotypes=%s); the first build takes minutes, "
                        "then it is read from %s", topology, phenotypes, anny.paths.get_anny_cache_path())
            model = anny.Anny(rig="anny", topology=topology, phenotypes=phenotypes, skinning_method="lbs",
                              pose_parameterization="local-ref")
    finally:
        anny.paths.set_anny_cache_path(previous)
    return model.to(torch.float32)


def _triangles(faces: torch.Tensor, uv_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fan quads (F, 4) into triangles; drop triangles that repeat a vertex (padded polygons)."""
    if faces.shape[1] == 3:
        return faces, uv_index
    tris = [faces[:, [0, i, i + 1]] for i in range(1, faces.shape[1] - 1)]
    uvs = [uv_index[:, [0, i, i + 1]] for i in range(1, faces.shape[1] - 1)]
    tris, uvs = torch.cat(tris), torch.cat(uvs)
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    return tris[keep], uvs[keep]


def _coarse_of_bones(labels: list[str], parents: list[int]) -> list[int]:
    def direct(label: str) -> int | None:
        for prefix, part in _COARSE_BY_PREFIX:
            if label.startswith(prefix):
                return part
        return None

    out = []
    for index, label in enumerate(labels):
        part, cursor = direct(label), index
        while part is None and parents[cursor] >= 0:
            cursor = parents[cursor]
            part = direct(labels[cursor])
        out.append(part if part is not None else 2)
    return out


class AnnyBody(BodyModel):
    """Anny behind the zoo body interface (the default body).

    Shape: `betas` (B, num_betas) are Anny's phenotype sliders minus 0.5 (so 0 is Anny's default
    body and each slider spans [-0.5, 0.5]; order in `phenotype_labels`). Pose: (B, 3 * 104)
    axis-angle, one block per bone of `joint_names` (root first), each the bone's rotation about
    body axes at its head in the zero pose (Anny's "local-ref" deltas, conjugated to body axes).
    The zero pose is Anny's reference pose: standing, arms in an A-pose with bent elbows.

    Fine parts: the dominant skinning bone of each face (`fine_part_names` = bone labels).
    Coarse parts: bones mapped by name to `COARSE_PARTS`. Face region: the forward-facing front
    half of the head bones' faces plus the eyes; hands: wrist, metacarpal and finger bones.

    Args:
        phenotypes: "default" (6 sliders: gender, age, muscle, weight, height, proportions) or
            "all" (adds cupsize, firmness, african, asian, caucasian).
        topology: Anny topology name; "anny" (default: MakeHuman base mesh with eyes and tongue,
            triangulated, 13718 vertices, 27420 faces). Topologies without UVs are rejected.
        cache_dir: Anny's cache folder for this build; None uses `$ANNY_CACHE_DIR` or
            `~/.cache/anny`.
    """

    def __init__(self, phenotypes: str = "default", topology: str = "anny", cache_dir: str | None = None) -> None:
        super().__init__()
        if phenotypes not in ("default", "all"):
            raise ValueError(f"phenotypes must be 'default' or 'all', got {phenotypes!r}")
        if not isinstance(topology, str) or not topology:
            raise ValueError(f"topology must be an Anny topology name, got {topology!r}")
        self.anny = build_anny(phenotypes, topology, cache_dir)
        if self.anny.texture_coordinates is None or self.anny.face_texture_coordinate_indices is None:
            raise ValueError(f"Anny topology {topology!r} has no UV coordinates; use 'anny' (the default)")
        self.phenotype_labels = list(self.anny.phenotype_labels)
        self.joint_names = list(self.anny.bone_labels)
        self.fine_part_names = list(self.anny.bone_labels)
        self.num_betas = len(self.phenotype_labels)
        self.num_pose_params = 3 * len(self.joint_names)
        self.register_buffer("_body_from_anny", BODY_FROM_ANNY.clone(), persistent=False)

        faces, uv_index = _triangles(self.anny.faces.long(), self.anny.face_texture_coordinate_indices.long())
        uv = self.anny.texture_coordinates.double()[uv_index]  # OBJ convention: v up
        corner_uvs = torch.stack([uv[..., 0], 1.0 - uv[..., 1]], dim=-1)
        weights = self.anny.dense_vertex_bone_weights  # (V, bones)
        fine = weights[faces].sum(dim=1).argmax(dim=1)
        coarse_of_bone = torch.tensor(_coarse_of_bones(self.joint_names, list(self.anny.bone_parents)))
        labels = self.joint_names
        index = {name: i for i, name in enumerate(labels)}
        self.control_rig = ControlRig(
            hip=(index["upperleg01.L"], index["upperleg01.R"]), knee=(index["lowerleg01.L"], index["lowerleg01.R"]),
            ankle=(index["foot.L"], index["foot.R"]), shoulder=(index["upperarm01.L"], index["upperarm01.R"]),
            elbow=(index["lowerarm01.L"], index["lowerarm01.R"]), wrist=(index["wrist.L"], index["wrist.R"]),
            spine=tuple(index[n] for n in ("spine04", "spine03", "spine02", "spine01")),
            neck=tuple(index[n] for n in ("neck01", "neck02", "neck03", "head")))
        self._set_mesh(
            faces, corner_uvs.float(), coarse_of_bone[fine], fine,
            head_fine=[i for i, n in enumerate(labels) if n.startswith(_HEAD_PREFIXES)],
            hand_fine=[i for i, n in enumerate(labels) if n.startswith(_HAND_PREFIXES)],
            face_fine=[i for i, n in enumerate(labels) if n.startswith("eye")])

    def betas_from_phenotype(self, **sliders: float | torch.Tensor) -> torch.Tensor:
        """(B, num_betas) betas from Anny slider values in [0, 1] by name (missing ones: 0.5)."""
        unknown = set(sliders) - set(self.phenotype_labels)
        if unknown:
            raise ValueError(f"unknown phenotype sliders {sorted(unknown)}; known: {self.phenotype_labels}")
        columns = [torch.as_tensor(sliders.get(n, 0.5), dtype=torch.float32).reshape(-1) for n in self.phenotype_labels]
        batch = max(c.numel() for c in columns)
        return torch.stack([c.expand(batch) for c in columns], dim=1) - 0.5

    def _anny_forward(self, betas: torch.Tensor | None, pose: torch.Tensor | None) -> tuple[dict, int]:
        """Anny's raw output (Anny's frame) for validated zoo betas / pose, and the batch size."""
        betas = self._check_params("betas", betas, self.num_betas, " (Anny phenotype sliders minus 0.5)")
        pose = self._check_params("pose", pose, self.num_pose_params, f" ({len(self.joint_names)} bones x 3 axis-angle)")
        batch = self._batch_size(betas=betas, pose=pose)
        deltas = None
        if pose is not None:
            c = self._body_from_anny
            rot = c.T @ axis_angle_to_matrix(pose.reshape(pose.shape[0], -1, 3)) @ c
            deltas = torch.zeros(*rot.shape[:2], 4, 4, dtype=rot.dtype, device=rot.device)
            deltas[..., :3, :3] = rot
            deltas[..., 3, 3] = 1.0
        phenotype = None if betas is None else betas + 0.5
        return self.anny(pose_parameters=deltas, phenotype_kwargs=phenotype), batch

    def forward(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None, **extra) -> BodyOutput:
        """Vertices (B, 13718, 3) and bone heads (B, 104, 3) in the body frame (see class doc)."""
        if extra:
            raise TypeError(f"AnnyBody.forward takes no extra inputs, got {sorted(extra)}")
        out, batch = self._anny_forward(betas, pose)
        vertices = out["vertices"] @ self._body_from_anny.T
        joints = out["bone_poses"][..., :3, 3] @ self._body_from_anny.T
        if vertices.shape[0] != batch:
            vertices, joints = vertices.expand(batch, -1, -1), joints.expand(batch, -1, -1)
        return BodyOutput(vertices=vertices, joints=joints)

    def rig(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The skeleton and skinning of Anny in the body frame (for rigged exports).

        Linear blend skinning reproduces `forward`: vertices = sum_k weights[:, k] *
        (bone_poses[k] @ inverse(bind_bone_poses[k])) applied to bind_vertices.

        Returns a dict of: bind_vertices (B, V, 3) the mesh in Anny's bind (rest) pose;
        bind_bone_poses (B, J, 4, 4) bone frames (rotation + head position) in that pose;
        bone_poses (B, J, 4, 4) the bone frames of `pose`; vertices (B, V, 3) the posed mesh;
        weights (V, J) skinning weights (rows sum to 1); parents (J,) int64, -1 for the root.
        """
        out, batch = self._anny_forward(betas, pose)
        c = torch.eye(4, dtype=out["vertices"].dtype, device=out["vertices"].device)
        c[:3, :3] = self._body_from_anny
        frame = lambda m: (c @ m @ c.T).expand(batch, -1, -1, -1)
        return {
            "bind_vertices": (out["rest_vertices"] @ self._body_from_anny.T).expand(batch, -1, -1),
            "bind_bone_poses": frame(out["rest_bone_poses"]),
            "bone_poses": frame(out["bone_poses"]),
            "vertices": (out["vertices"] @ self._body_from_anny.T).expand(batch, -1, -1),
            "weights": self.anny.dense_vertex_bone_weights,
            "parents": torch.as_tensor(list(self.anny.bone_parents), dtype=torch.int64),
        }
