"""Tiny SMPLMarket and DeepFashion folders in the real formats, written by the tests themselves.

The body is the tiny SMPL of `tests.body.synthetic_smpl` (one cube per joint, a shuffled grid-atlas
UV OBJ) with its cubes enlarged 4x so that they cover several pixels at Texformer's camera. Every
label image is a known pattern, so a test can compare the loader's output with what was written.
`ray_cast` is the independent reference for the UV render: float64 ray / triangle intersection per
pixel centre (Moller-Trumbore), nearest hit wins.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from tests.body.synthetic_smpl import write_smpl, write_uv_obj

MARKET_SIZE = (128, 64)
MARKET_FOCAL = 5000.0 * 128 / 224  # Texformer: 5000 px per 224 px of the 128x128 render
MARKET_CENTRE = (63.5 - 32.0, 63.5)  # render centre (pixel centres at integers), 32 columns cropped
SMPL12_TO_7 = {3: 1, 6: 2, 1: 3, 2: 3, 7: 4, 8: 4, 4: 5, 5: 5, 9: 6, 10: 6, 11: 7, 12: 7}


def write_pickle(obj, path: Path) -> None:
    """`obj` pickled to `path` (parent folders created): a body model or a fit file in its real format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def write_tiny_smpl(folder: Path) -> dict:
    """Tiny SMPL .pkl (cubes 12 cm wide) + UV OBJ; returns paths, model dict, faces, corner UVs (v down)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_smpl(folder / "SMPL_NEUTRAL.pkl")
    v = data["v_template"]
    centres = data["J_regressor"] @ v  # the regressor averages each cube
    owner = data["weights"].argmax(1)
    data["v_template"] = centres[owner] + 4.0 * (v - centres[owner])
    with open(folder / "SMPL_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(data, handle)
    faces = np.asarray(data["f"], dtype=np.int64)
    corner_uvs = write_uv_obj(folder / "smpl_uv.obj", data["v_template"], faces)
    return {"model": str(folder / "SMPL_NEUTRAL.pkl"), "uv": str(folder / "smpl_uv.obj"), "data": data,
            "faces": faces, "corner_uvs": corner_uvs}


def camera_vertices(template: np.ndarray, yaw_deg: float, translation) -> np.ndarray:
    """Body frame (y up, facing +z) -> OpenCV camera (y down, facing the camera), then translate."""
    a = np.deg2rad(yaw_deg)
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    flip = np.diag([1.0, -1.0, -1.0])
    return template @ (flip @ yaw).T + np.asarray(translation, dtype=np.float64)


def parser_pattern(size, seed: int) -> np.ndarray:
    """Labels 0..7 in horizontal bands shifted by the seed."""
    rows = (np.arange(size[0])[:, None] * 8 // size[0] + seed) % 8
    return np.broadcast_to(rows, size).astype(np.uint8).copy()


def smpl12_pattern(size, seed: int) -> np.ndarray:
    """Labels 0..12 in diagonal stripes."""
    i, j = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    return ((i + 2 * j + seed) % 13).astype(np.uint8)


def photo(size, seed: int) -> np.ndarray:
    """A smooth RGB picture (JPEG keeps it within a few levels)."""
    i, j = np.meshgrid(np.linspace(0, 1, size[0]), np.linspace(0, 1, size[1]), indexing="ij")
    rgb = np.stack([i, j, 0.5 + 0.0 * i], -1) * 160 + 40 + 10 * (seed % 5)
    return rgb.round().astype(np.uint8)


def _save(array: np.ndarray, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def write_pools(folder: Path) -> dict:
    """backgrounds/ (two jpgs, one nested, not 128x64) and textures/ (one 'nongrey' texture, one grey)."""
    _save(photo((40, 30), 1), folder / "backgrounds" / "a.jpg", quality=95)
    _save(photo((50, 20), 2), folder / "backgrounds" / "deeper" / "b.jpg", quality=95)
    _save(photo((64, 64), 3), folder / "textures" / "female" / "nongrey_female_0001.jpg", quality=95)
    _save(np.full((64, 64, 3), 128, np.uint8), folder / "textures" / "female" / "grey_female_0001.jpg", quality=95)
    return {"backgrounds": str(folder / "backgrounds"), "textures": str(folder / "textures")}


def write_smpl_market(root: Path, smpl: dict, train_pids=(2, 7, 11, 15), test_pids=(3, 20),
                      views: int = 3) -> dict:
    """An SMPLMarket folder; returns {rel path: what was written} plus the index dicts.

    Quirks covered: one SMPL_RSC/parts file is the uncropped 128x128 render; one parser file uses
    the `.png.png` name Texformer falls back to; train pids are ints, one test pid is in eval only."""
    root.mkdir(parents=True, exist_ok=True)
    template = smpl["data"]["v_template"]
    written, out_train, out_test = {}, {}, {}
    k = 0
    splits = ((train_pids, "bounding_box_train", out_train), (test_pids, "bounding_box_test", out_test))
    for pids, folder, out in splits:
        for pid in pids:
            for view in range(views):
                rel = f"{folder}/{pid:04d}_c{view + 1}s1_{100 * k:06d}_01.jpg"
                name = rel.split("/")[-1][:-4]
                vertices = camera_vertices(template, yaw_deg=40.0 * k, translation=(0.02 * view, -0.17, 44.0 + k))
                cam_t = np.array([0.01 * k, -0.02, 0.5])
                fit = [(vertices - cam_t).astype(np.float32), cam_t.astype(np.float32)]
                with open(_mkdir(root / "SMPL_RSC" / "pkl") / f"{name}.pkl", "wb") as handle:
                    pickle.dump(fit, handle)
                square = k == 1
                smpl12 = smpl12_pattern((128, 128) if square else MARKET_SIZE, k)
                _save(smpl12, root / "SMPL_RSC" / "parts" / f"{name}.png")
                parser = parser_pattern(MARKET_SIZE, k)
                seg_name = f"{rel[:-4]}.png.png" if k == 2 else f"{rel[:-4]}.png"
                _save(parser, root / "part_seg_EANet" / seg_name)
                image = photo(MARKET_SIZE, k)
                _save(image, root / rel, quality=95)
                written[rel] = {"image": image, "parser": parser, "smpl12": smpl12[:, 32:96] if square else smpl12,
                                "vertices": vertices, "pid": pid}
                out.setdefault(pid, []).append(rel)
                k += 1
    with open(root / "train_test_img_paths_pid.pkl", "wb") as handle:
        pickle.dump({"out_dict_train": out_train, "out_dict_test": out_test}, handle)
    eval_list = [paths[0] for paths in out_test.values()]
    with open(root / "eval_list.pkl", "wb") as handle:
        pickle.dump(eval_list, handle)
    return {"written": written, "out_dict_train": out_train, "out_dict_test": out_test, "eval_list": eval_list}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


DEEPFASHION_STORED = (96, 96)
PARAMS_FOCAL, PARAMS_CENTRE = 150.0, (47.0, 48.5)  # in stored-image pixels


def write_deepfashion(root: Path, smpl: dict, split_format: str = "pkl") -> dict:
    """A DeepFashion folder: 3 train identities (3, 2, 2 images) + 1 test identity (2 images), 96x96.

    Fits alternate between SMPLMarket's [vertices, cam_t] (SPIN camera) and SMPL parameters with
    an explicit focal / centre; every image also gets smpl_parts/<key>.png."""
    data = smpl["data"]
    train = [("MEN/Denim/id_00000080", "01", 3), ("WOMEN/Dresses/id_00000002", "02", 2),
             ("WOMEN/Dresses/id_00000002", "03", 2)]
    test = [("WOMEN/Tees_Tanks/id_00000150", "01", 2)]
    written, lists = {}, {"train_list": [], "test_list": []}
    k = 0
    for split, people in (("train_list", train), ("test_list", test)):
        for folder, outfit, n in people:
            for view in range(n):
                key = f"{folder}/{outfit}_{view + 1}_{('front', 'side', 'back')[view]}"
                entry = f"img/{key}.jpg"
                image = photo(DEEPFASHION_STORED, k)
                _save(image, root / entry, quality=95)
                parser = parser_pattern(DEEPFASHION_STORED, k)
                _save(parser, root / "parts" / f"{key}.png")
                smpl12 = smpl12_pattern(DEEPFASHION_STORED, k)
                _save(smpl12, root / "smpl_parts" / f"{key}.png")
                if k % 2 == 0:
                    vertices = camera_vertices(data["v_template"], yaw_deg=30.0 * k, translation=(0.0, -0.17, 44.0))
                    fit = [vertices.astype(np.float32), np.zeros(3, np.float32)]
                else:
                    betas = 0.5 * np.sin(np.arange(10) + k)
                    fit = {"betas": betas, "global_orient": np.array([np.pi, 0.0, 0.0]), "body_pose": np.zeros(69),
                           "transl": np.array([0.05, -0.17, 3.3 + 0.1 * k]), "focal": PARAMS_FOCAL,
                           "centre": np.array(PARAMS_CENTRE)}
                    vertices = params_reference(data, fit)
                _mkdir((root / "smpl" / key).parent)
                with open(root / "smpl" / f"{key}.pkl", "wb") as handle:
                    pickle.dump(fit, handle)
                lists[split].append(entry)
                written[key] = {"image": image, "parser": parser, "smpl12": smpl12, "vertices": vertices,
                                "params": isinstance(fit, dict), "identity": f"{folder}/{outfit}"}
                k += 1
    if split_format == "json":
        (root / "train_test_list.json").write_text(json.dumps(lists))
    else:
        with open(root / "train_test_list.pkl", "wb") as handle:
            pickle.dump(lists, handle)
    return {"written": written, **lists}


def params_reference(data: dict, fit: dict) -> np.ndarray:
    """What smplx.SMPL gives for zero body pose on the cube model, by hand: shape, then the global
    rotation about the pelvis (the average of cube 0, which the regressor takes), then transl."""
    shaped = data["v_template"] + data["shapedirs"] @ fit["betas"]
    pelvis = shaped[:8].mean(0)
    axis = np.asarray(fit["global_orient"], dtype=np.float64)
    angle = np.linalg.norm(axis)
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / angle
    R = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
    return (shaped - pelvis) @ R.T + pelvis + fit["transl"]


def ray_cast(vertices: np.ndarray, faces: np.ndarray, fx: float, fy: float, cx: float, cy: float, size,
             chunk: int = 512, tie: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Nearest face hit by the ray through each pixel centre: (H, W) index, -1 for none, and (H, W)
    bool `ambiguous` where another face is hit within `tie` (relative) of that depth (coplanar or
    interpenetrating faces, e.g. where two cubes of the fixture body overlap)."""
    H, W = size
    i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    dirs = np.stack([(j.ravel() - cx) / fx, (i.ravel() - cy) / fy, np.ones(H * W)], -1)
    tri = vertices[faces].astype(np.float64)  # (F, 3, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    out = np.full(H * W, -1, dtype=np.int64)
    ambiguous = np.zeros(H * W, dtype=bool)
    for s in range(0, H * W, chunk):
        d = dirs[s:s + chunk, None, :]  # (P, 1, 3)
        p = np.cross(d, e2[None])
        det = (e1[None] * p).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tvec = -tri[None, :, 0]  # ray origin at the camera centre
        u = (tvec * p).sum(-1) * inv
        q = np.cross(tvec, e1[None])
        v = (d * q).sum(-1) * inv
        t = (e2[None] * q).sum(-1) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t = np.where(hit, t, np.inf)
        nearest = t.min(1)
        out[s:s + chunk] = np.where(np.isfinite(nearest), t.argmin(1), -1)
        ambiguous[s:s + chunk] = (t <= nearest[:, None] * (1 + tie)).sum(1) > 1
    return out.reshape(H, W), ambiguous.reshape(H, W)


def ray_cast_uv(vertices, faces, corner_uvs, fx, fy, cx, cy, size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face index (H, W), uv grid (H, W, 2) in [-1, 1] with -2 off the mesh, ambiguous (H, W))."""
    face, ambiguous = ray_cast(vertices, faces, fx, fy, cx, cy, size)
    H, W = size
    uv = np.full((H, W, 2), -2.0)
    for r, c in zip(*np.nonzero(face >= 0)):
        a, b, cc = vertices[faces[face[r, c]]].astype(np.float64)
        d = np.array([(c - cx) / fx, (r - cy) / fy, 1.0])
        # Solve a + s (b - a) + t (cc - a) = lambda d for the barycentrics (s, t).
        s, t, _ = np.linalg.solve(np.stack([b - a, cc - a, -d], 1), -a)
        uv[r, c] = (np.array([1 - s - t, s, t])[:, None] * corner_uvs[face[r, c]]).sum(0) * 2 - 1
    return face, uv, ambiguous
