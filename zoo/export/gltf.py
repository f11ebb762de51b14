"""Binary glTF 2.0 (.glb) writing with numpy alone: textured meshes, skins and animations.

Just the parts of the format the avatar needs (https://registry.khronos.org/glTF/specs/2.0/):
one buffer, float32 / uint16 / uint32 accessors, a PNG texture, a skin with inverse bind
matrices, node TRS and linear animation channels. Axes are glTF's: +y up, +z forward, metres,
which is the zoo body frame (`zoo.body`); texture v runs down, as in the zoo's UVs.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.utils.files import atomic_file

FLOAT, USHORT, UINT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


class GLBWriter:
    """Accumulates buffer views, accessors, nodes ... and writes one .glb."""

    def __init__(self) -> None:
        self.gltf: dict = {"asset": {"version": "2.0", "generator": "zoo.export"}, "buffers": [], "bufferViews": [],
                           "accessors": [], "nodes": [], "meshes": [], "scenes": [{"nodes": []}], "scene": 0}
        self.blob = bytearray()

    def _view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob.extend(data)
        self.gltf["bufferViews"].append(view)
        return len(self.gltf["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, component: int, target: int | None = None, bounds: bool = False) -> int:
        """Add an accessor over `array` (N, width) or (N,) (MAT4: (N, 4, 4), written column-major)."""
        dtype = {FLOAT: np.float32, USHORT: np.uint16, UINT: np.uint32}[component]
        array = np.asarray(array)
        if array.ndim == 3:  # matrices: glTF stores them column-major
            array = array.transpose(0, 2, 1).reshape(len(array), -1)
        array = np.ascontiguousarray(array.astype(dtype))
        width = 1 if array.ndim == 1 else array.shape[1]
        entry = {"bufferView": self._view(array.tobytes(), target), "componentType": component,
                 "count": int(array.shape[0]), "type": _TYPES[width]}
        if bounds:
            flat = array.reshape(len(array), -1)
            entry["min"], entry["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.gltf["accessors"].append(entry)
        return len(self.gltf["accessors"]) - 1

    def texture(self, rgb: np.ndarray) -> int:
        """A PNG texture from an (H, W, 3) uint8 image; returns the material index."""
        png = io.BytesIO()
        Image.fromarray(rgb).save(png, format="PNG")
        gltf = self.gltf
        gltf.setdefault("images", []).append({"bufferView": self._view(png.getvalue()), "mimeType": "image/png"})
        gltf.setdefault("samplers", []).append({"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
        gltf.setdefault("textures", []).append({"source": len(gltf["images"]) - 1, "sampler": len(gltf["samplers"]) - 1})
        gltf.setdefault("materials", []).append({
            "name": "avatar", "doubleSided": False,
            "pbrMetallicRoughness": {"baseColorTexture": {"index": len(gltf["textures"]) - 1},
                                     "metallicFactor": 0.0, "roughnessFactor": 1.0}})
        return len(gltf["materials"]) - 1

    def mesh(self, attributes: dict[str, int], indices: int, material: int | None = None, name: str = "body") -> int:
        primitive = {"attributes": attributes, "indices": indices, "mode": 4}
        if material is not None:
            primitive["material"] = material
        self.gltf["meshes"].append({"name": name, "primitives": [primitive]})
        return len(self.gltf["meshes"]) - 1

    def node(self, **fields) -> int:
        self.gltf["nodes"].append({k: v for k, v in fields.items() if v is not None})
        return len(self.gltf["nodes"]) - 1

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf["buffers"] = [{"byteLength": len(self.blob)}]
        text = json.dumps(self.gltf, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + len(self.blob)
        with atomic_file(path) as temporary, open(temporary, "wb") as handle:  # never half-written
            handle.write(struct.pack("<4sII", b"glTF", 2, total))
            handle.write(struct.pack("<I4s", len(text), b"JSON") + text)
            handle.write(struct.pack("<I4s", len(self.blob), b"BIN\x00") + bytes(self.blob))
        return path


def split_seams(faces: np.ndarray, corner_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """glTF keeps one UV per vertex: split vertices along UV seams.

    Returns (source vertex of each new vertex (N,), its UV (N, 2), new faces (F, 3))."""
    corners = np.concatenate([faces.reshape(-1, 1), np.round(corner_uvs.reshape(-1, 2) * 2**20)], 1)
    unique, inverse = np.unique(corners, axis=0, return_inverse=True)
    uv = np.zeros((len(unique), 2), np.float64)
    uv[inverse.reshape(-1)] = corner_uvs.reshape(-1, 2)
    return unique[:, 0].astype(np.int64), uv, inverse.reshape(-1, 3)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (x, y, z, w), glTF's order."""
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    q = np.zeros((len(R), 4))
    for i, m in enumerate(R):
        trace = np.trace(m)
        if trace > 0:
            s = 2.0 * np.sqrt(trace + 1.0)
            q[i] = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
        else:
            k = int(np.argmax(np.diag(m)))
            a, b = (k + 1) % 3, (k + 2) % 3
            s = 2.0 * np.sqrt(1.0 + m[k, k] - m[a, a] - m[b, b])
            out = np.zeros(4)
            out[k], out[a], out[b] = 0.25 * s, (m[a, k] + m[k, a]) / s, (m[b, k] + m[k, b]) / s
            out[3] = (m[b, a] - m[a, b]) / s
            q[i] = out
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    # Keep consecutive quaternions in one hemisphere (smooth interpolation along an animation).
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


__all__ = ["GLBWriter", "matrix_to_quaternion", "split_seams", "vertex_normals"]
