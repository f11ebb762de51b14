"""Tiny SMPL / SMPL-X model files in the official formats, written by the tests themselves.

The "body" is one small cube per joint (8 vertices, 12 triangles) centred on the joint's rest
position (T-pose, y up, facing +z, left on +x), rigidly skinned to that joint; the joint
regressor averages the cube, so the regressed joints are exactly the rest positions. No pose
correctives (posedirs = 0), small random shape directions. The UV OBJ maps every cube side to
its own cell of a grid atlas (seams everywhere) and lists the triangles shuffled, with rotated
corners, so the loader must match them to the model's faces by vertices.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

_BODY = {  # joint: (parent, rest position)
    0: (-1, (0.0, 0.0, 0.0)), 1: (0, (0.09, -0.08, 0.0)), 2: (0, (-0.09, -0.08, 0.0)), 3: (0, (0.0, 0.1, -0.02)),
    4: (1, (0.1, -0.48, 0.0)), 5: (2, (-0.1, -0.48, 0.0)), 6: (3, (0.0, 0.22, -0.02)), 7: (4, (0.1, -0.88, -0.02)),
    8: (5, (-0.1, -0.88, -0.02)), 9: (6, (0.0, 0.28, -0.01)), 10: (7, (0.1, -0.93, 0.1)), 11: (8, (-0.1, -0.93, 0.1)),
    12: (9, (0.0, 0.48, -0.02)), 13: (9, (0.07, 0.4, -0.02)), 14: (9, (-0.07, 0.4, -0.02)), 15: (12, (0.0, 0.6, 0.01)),
    16: (13, (0.18, 0.42, -0.02)), 17: (14, (-0.18, 0.42, -0.02)), 18: (16, (0.44, 0.42, -0.02)),
    19: (17, (-0.44, 0.42, -0.02)), 20: (18, (0.68, 0.42, -0.02)), 21: (19, (-0.68, 0.42, -0.02)),
}
_SMPL_HANDS = {22: (20, (0.77, 0.42, -0.02)), 23: (21, (-0.77, 0.42, -0.02))}
_CUBE_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def _smplx_joints() -> dict:
    joints = dict(_BODY)
    joints[22] = (15, (0.0, 0.55, 0.05))  # jaw
    joints[23] = (15, (0.03, 0.63, 0.08))  # left eye
    joints[24] = (15, (-0.03, 0.63, 0.08))  # right eye
    for side, wrist, start in ((1.0, 20, 25), (-1.0, 21, 40)):
        for finger in range(5):
            for k in range(3):
                j = start + 3 * finger + k
                parent = wrist if k == 0 else j - 1
                joints[j] = (parent, (side * (0.74 + 0.03 * k), 0.42, -0.05 + 0.025 * finger))
    return joints


def _mesh(joints: dict, half: float = 0.015):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * half
    n = len(joints)
    centres = np.array([joints[j][1] for j in range(n)])
    vertices = (centres[:, None] + corners[None]).reshape(-1, 3)
    faces = (np.arange(n)[:, None, None] * 8 + _CUBE_FACES[None]).reshape(-1, 3)
    weights = np.repeat(np.eye(n), 8, axis=0)
    regressor = weights.T / 8.0
    parents = np.array([joints[j][0] for j in range(n)], dtype=np.int64)
    parents[0] = 4294967295  # what the official files store for the root
    kintree = np.stack([parents, np.arange(n)]).astype(np.int64)
    return vertices, faces, weights, regressor, kintree


def _common(joints: dict, n_shape: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    vertices, faces, weights, regressor, kintree = _mesh(joints)
    n = len(joints)
    return {
        "v_template": vertices, "f": faces.astype(np.uint32), "weights": weights, "J_regressor": regressor,
        "kintree_table": kintree, "shapedirs": rng.normal(0.0, 0.003, size=(len(vertices), 3, n_shape)),
        "posedirs": np.zeros((len(vertices), 3, 9 * (n - 1))),
    }


def write_smpl(path: Path) -> dict:
    """A tiny SMPL .pkl (24 joints, 10 shape components); returns the dict written."""
    data = _common({**_BODY, **_SMPL_HANDS}, 10, seed=0)
    with open(path, "wb") as handle:
        pickle.dump(data, handle)
    return data


def write_smplx(path: Path) -> dict:
    """A tiny SMPL-X .npz (55 joints, 10 shape + 10 expression components, hand PCA, landmarks)."""
    data = _common(_smplx_joints(), 20, seed=1)
    rng = np.random.default_rng(2)
    basis, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    data.update(hands_componentsl=basis * 0.3, hands_componentsr=basis[::-1] * 0.3,
                hands_meanl=rng.normal(0.0, 0.05, 45), hands_meanr=rng.normal(0.0, 0.05, 45),
                lmk_faces_idx=np.arange(51) % len(data["f"]), lmk_bary_coords=np.full((51, 3), 1.0 / 3.0))
    np.savez(path, **data)
    return data


def write_uv_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, seed: int = 0) -> np.ndarray:
    """Grid-atlas UV OBJ for the cube mesh; returns the expected (F, 3, 2) corner UVs, v DOWN."""
    rng = np.random.default_rng(seed)
    sides = len(faces) // 2  # two triangles per cube side
    grid = int(np.ceil(np.sqrt(sides)))
    cell = 1.0 / grid
    square = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]) * cell  # v up, in a cell
    vt, ft = [], []
    for s in range(sides):
        origin = np.array([(s % grid) * cell, (s // grid) * cell])
        base = len(vt)
        vt.extend(origin + square)
        a, b = faces[2 * s], faces[2 * s + 1]
        quad = list(dict.fromkeys([*a, *b]))  # the side's 4 vertices, in first-seen order
        ft.append([base + quad.index(v) for v in a])
        ft.append([base + quad.index(v) for v in b])
    vt, ft = np.array(vt), np.array(ft)
    expected = np.stack([vt[ft][..., 0], 1.0 - vt[ft][..., 1]], axis=-1)
    order = rng.permutation(len(faces))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# tiny synthetic UV layout\n")
        for v in vertices:
            handle.write(f"v {v[0]:.6f} {v[1]:.6f} {v[2]:.6f}\n")
        for t in vt:
            handle.write(f"vt {t[0]:.6f} {t[1]:.6f}\n")
        for k in order:
            shift = rng.integers(3)
            corners = [(faces[k][(i + shift) % 3], ft[k][(i + shift) % 3]) for i in range(3)]
            handle.write("f " + " ".join(f"{v + 1}/{t + 1}" for v, t in corners) + "\n")
    return expected
