"""Avatar assets: textured GLB, rigged GLB (Anny's skeleton + skinning, optional animation),
and rendered videos (turntable, motion; GIF and MP4) of a textured body.

The rigged GLB is standard glTF skinning: one node per Anny bone (104, fingers and toes
included) in Anny's hierarchy, inverse bind matrices of the bind pose, up to 8 influences per
vertex (JOINTS_0/1, WEIGHTS_0/1; Anny has at most 9, dropping the smallest moves no vertex more
than 0.1 mm) and the node transforms of the exported pose. Blender, three.js and other glTF
viewers animate it; a motion (`zoo.export.motion`) becomes a glTF animation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zoo.export.gltf import (
    ARRAY_BUFFER,
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    UINT,
    USHORT,
    GLBWriter,
    matrix_to_quaternion,
    split_seams,
    vertex_normals,
)
from zoo.render import (
    look_at_body,
    rasterize,
    render_normals,
    render_uv,
    sample_texture,
    to_camera,
)
from zoo.utils.files import atomic_file

MAX_INFLUENCES = 8


def _texture_uint8(texture: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, T, T) float in [0, 1] or (T, T, 3) uint8 -> (T, T, 3) uint8."""
    if isinstance(texture, torch.Tensor):
        return (texture.detach().float().clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
    return np.asarray(texture, dtype=np.uint8)


def _mesh_arrays(vertices: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray):
    source, uv, new_faces = split_seams(faces, corner_uvs)
    normals = vertex_normals(vertices, faces)[source]
    return source, vertices[source], normals, uv, new_faces


def export_textured_glb(path: str | Path, vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor,
                        texture: torch.Tensor | np.ndarray) -> Path:
    """A static textured mesh: vertices (V, 3) body frame (y up, metres), faces (F, 3), corner_uvs
    (F, 3, 2) (v down), texture (3, T, T) in [0, 1] or (T, T, 3) uint8."""
    writer = GLBWriter()
    _, pos, normals, uv, tris = _mesh_arrays(vertices.detach().double().numpy(), faces.numpy(),
                                             corner_uvs.double().numpy())
    attributes = {"POSITION": writer.accessor(pos, FLOAT, ARRAY_BUFFER, bounds=True),
                  "NORMAL": writer.accessor(normals, FLOAT, ARRAY_BUFFER),
                  "TEXCOORD_0": writer.accessor(uv, FLOAT, ARRAY_BUFFER)}
    mesh = writer.mesh(attributes, writer.accessor(tris.reshape(-1), UINT, ELEMENT_ARRAY_BUFFER),
                       writer.texture(_texture_uint8(texture)))
    writer.gltf["scenes"][0]["nodes"].append(writer.node(name="avatar", mesh=mesh))
    return writer.write(path)


def _local_trs(globals_: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local translations (J, 3) and rotations (J, 3, 3) of global rigid bone frames (J, 4, 4)."""
    local = globals_.copy()
    for j, p in enumerate(parents):
        if p >= 0:
            local[j] = np.linalg.inv(globals_[p]) @ globals_[j]
    return local[:, :3, 3], local[:, :3, :3]


def export_rigged_glb(path: str | Path, body, betas: torch.Tensor, texture: torch.Tensor | np.ndarray,
                      pose: torch.Tensor | None = None, motion: torch.Tensor | None = None, fps: float = 30.0,
                      motion_translation: torch.Tensor | None = None) -> Path:
    """A skinned, textured Anny (`zoo.body.AnnyBody`) of shape `betas` (1, B).

    The nodes hold `pose` (1, P) (None: Anny's zero pose); `motion` (T, P) poses at `fps` become
    the animation "motion" (rotation channels of every bone, plus the root's translation when
    `motion_translation` (T, 3) metres is given)."""
    with torch.no_grad():
        rig = body.rig(betas=betas, pose=pose)
    parents = rig["parents"].numpy()
    bind = rig["bind_bone_poses"][0].double().numpy()
    posed = rig["bone_poses"][0].double().numpy()
    weights = rig["weights"].double().numpy()
    top = np.argsort(-weights, axis=1)[:, :MAX_INFLUENCES]
    top_w = np.take_along_axis(weights, top, 1)
    top_w /= top_w.sum(1, keepdims=True)

    writer = GLBWriter()
    source, pos, normals, uv, tris = _mesh_arrays(rig["bind_vertices"][0].double().numpy(), body.faces.numpy(),
                                                  body.corner_uvs.double().numpy())
    attributes = {"POSITION": writer.accessor(pos, FLOAT, ARRAY_BUFFER, bounds=True),
                  "NORMAL": writer.accessor(normals, FLOAT, ARRAY_BUFFER),
                  "TEXCOORD_0": writer.accessor(uv, FLOAT, ARRAY_BUFFER)}
    for k in range(MAX_INFLUENCES // 4):
        attributes[f"JOINTS_{k}"] = writer.accessor(top[source, 4 * k:4 * k + 4], USHORT, ARRAY_BUFFER)
        attributes[f"WEIGHTS_{k}"] = writer.accessor(top_w[source, 4 * k:4 * k + 4], FLOAT, ARRAY_BUFFER)
    mesh = writer.mesh(attributes, writer.accessor(tris.reshape(-1), UINT, ELEMENT_ARRAY_BUFFER),
                       writer.texture(_texture_uint8(texture)))

    translation, rotation = _local_trs(posed, parents)
    quats = matrix_to_quaternion(rotation)
    names = body.joint_names
    first = len(writer.gltf["nodes"])
    for j in range(len(names)):
        writer.node(name=names[j], translation=translation[j].tolist(), rotation=quats[j].tolist())
    for j, p in enumerate(parents.tolist()):
        if p >= 0:
            writer.gltf["nodes"][first + p].setdefault("children", []).append(first + j)
    joints = list(range(first, first + len(names)))
    ibm = writer.accessor(np.linalg.inv(bind), FLOAT)
    writer.gltf["skins"] = [{"name": "anny", "joints": joints, "inverseBindMatrices": ibm,
                             "skeleton": first + int(np.flatnonzero(parents < 0)[0])}]
    mesh_node = writer.node(name="avatar", mesh=mesh, skin=0)
    roots = [first + int(j) for j in np.flatnonzero(parents < 0)]
    writer.gltf["scenes"][0]["nodes"].extend([*roots, mesh_node])
    if motion is not None:
        _add_animation(writer, body, betas, motion, fps, motion_translation, parents, first)
    return writer.write(path)


def _add_animation(writer: GLBWriter, body, betas, motion, fps, motion_translation, parents, first) -> None:
    if motion.ndim != 2 or motion.shape[1] != body.num_pose_params:
        raise ValueError(f"motion must be (T, {body.num_pose_params}) poses, got {tuple(motion.shape)}")
    with torch.no_grad():
        frames = body.rig(betas=betas, pose=motion.float())["bone_poses"].double().numpy()  # (T, J, 4, 4)
    T = frames.shape[0]
    times = writer.accessor(np.arange(T, dtype=np.float64) / fps, FLOAT, bounds=True)
    samplers, channels = [], []
    locals_ = [_local_trs(frames[i], parents) for i in range(T)]
    for j in range(len(parents)):
        quats = matrix_to_quaternion(np.stack([r[j] for _, r in locals_]))
        samplers.append({"input": times, "output": writer.accessor(quats, FLOAT), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": first + j, "path": "rotation"}})
    root = int(np.flatnonzero(parents < 0)[0])
    if motion_translation is not None:
        shift = np.asarray(motion_translation, dtype=np.float64).reshape(T, 3)
        base = np.stack([t[root] for t, _ in locals_]) + shift
        samplers.append({"input": times, "output": writer.accessor(base, FLOAT), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": first + root, "path": "translation"}})
    writer.gltf["animations"] = [{"name": "motion", "samplers": samplers, "channels": channels}]


def render_textured(vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor, texture: torch.Tensor,
                    yaw_deg: float = 0.0, size: int = 256, background: float = 1.0, centre: torch.Tensor | None = None,
                    height: float | None = None) -> np.ndarray:
    """(size, size, 3) uint8 render of a textured body-frame mesh (V, 3) seen from `yaw_deg`, with
    simple shading (ambient + light from the camera). `centre` / `height` frame the body (default:
    its own bounding box), so a sequence can keep one framing."""
    y = vertices[:, 1]
    centre = centre if centre is not None else torch.tensor([0.0, float(y.max() + y.min()) / 2, 0.0])
    height = height if height is not None else float(y.max() - y.min())
    distance = 6.0
    R, t = look_at_body(torch.tensor([yaw_deg]), torch.tensor([0.0]), torch.tensor([distance]), centre[None])
    focal = 0.85 * size * distance / height
    K = torch.tensor([[[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]]])
    cam = to_camera(vertices[None].float(), R, t)
    frags = rasterize(cam, faces, K, (size, size))
    uv, mask = render_uv(frags, corner_uvs)
    colour = sample_texture(texture[None].float(), uv, mask)
    normals = render_normals(frags, cam, faces)
    light = (0.55 + 0.45 * (-normals[:, 2:3]).clamp(min=0))
    image = colour * light * mask + background * (1 - mask)
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


def save_gif(frames: list[np.ndarray], path: str | Path, fps: float = 15.0) -> Path:
    """An animated GIF of (H, W, 3) uint8 frames (loops forever)."""
    path = Path(path)
    images = [Image.fromarray(f) for f in frames]
    with atomic_file(path) as temporary:  # never half-written
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0)
    return path


def save_mp4(frames: list[np.ndarray], path: str | Path, fps: float = 30.0, quality: int = 20) -> Path:
    """An H.264 MP4 (yuv420p, plays in browsers and players) of (H, W, 3) uint8 frames, through the
    ffmpeg binary that the `imageio-ffmpeg` wheel bundles; odd sides are padded by one pixel
    (edge colour) since yuv420p needs even sizes. `quality`: x264's CRF (lower is better)."""
    import imageio_ffmpeg

    if not frames:
        raise ValueError("save_mp4 needs at least one frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or len(frames[0].shape) != 3 or frames[0].shape[2] != 3:
        raise ValueError(f"frames must share one (H, W, 3) shape, got {sorted(shapes)[:3]}")
    h, w, _ = frames[0].shape
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    path = Path(path)
    with atomic_file(path) as temporary:  # never half-written (ffmpeg picks the container from the suffix)
        writer = imageio_ffmpeg.write_frames(str(temporary), (w + w % 2, h + h % 2), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=2,
                                             output_params=["-crf", str(quality)], ffmpeg_log_level="error")
        writer.send(None)  # start ffmpeg
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(np.pad(np.asarray(frame, dtype=np.uint8), pad, mode="edge")))
        finally:
            writer.close()
    return path


def turntable(body, betas: torch.Tensor, pose: torch.Tensor | None, texture: torch.Tensor, frames: int = 24,
              size: int = 256) -> list[np.ndarray]:
    """Frames of the textured body (`texture` (3, T, T) in [0, 1]) turning once around."""
    with torch.no_grad():
        verts = body(betas=betas, pose=pose).vertices[0]
    return [render_textured(verts, body.faces, body.corner_uvs, texture, 360.0 * i / frames, size)
            for i in range(frames)]


def motion_frames(body, betas: torch.Tensor, motion: torch.Tensor, texture: torch.Tensor, yaw_deg: float = 30.0,
                  size: int = 256, translation: torch.Tensor | None = None) -> list[np.ndarray]:
    """Frames of the textured body driven by `motion` (T, P) poses, one framing for all frames."""
    with torch.no_grad():
        verts = body(betas=betas.expand(motion.shape[0], -1), pose=motion.float()).vertices
    if translation is not None:
        verts = verts + translation.reshape(-1, 1, 3).float()
    y = verts[..., 1]
    centre = torch.tensor([0.0, float(y.max() + y.min()) / 2, 0.0])
    height = float(y.max() - y.min()) * 1.05
    return [render_textured(v, body.faces, body.corner_uvs, texture, yaw_deg, size, centre=centre, height=height)
            for v in verts]


__all__ = ["export_rigged_glb", "export_textured_glb", "motion_frames", "render_textured", "save_gif", "save_mp4",
           "turntable"]
