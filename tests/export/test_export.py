"""Exports: the rigged GLB read back with pygltflib and skinned per the glTF spec in numpy must
reproduce AnnyBody's posed mesh; trimesh loads the textured GLB; motion files; videos."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.export import (
    export_rigged_glb,
    export_textured_glb,
    load_motion,
    motion_frames,
    save_gif,
    save_motion,
    save_mp4,
    walk_cycle,
)

pygltflib = pytest.importorskip("pygltflib")
COMPONENTS = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _read(gltf, blob, index):
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = COMPONENTS[acc.componentType]
    start = view.byteOffset + (acc.byteOffset or 0)
    data = np.frombuffer(blob, dtype=dtype, count=acc.count * WIDTH[acc.type], offset=start)
    return data.reshape(acc.count, WIDTH[acc.type])


def _trs(node):
    m = np.eye(4)
    x, y, z, w = node.rotation or (0, 0, 0, 1)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = node.translation or (0, 0, 0)
    return m


def _skinned_positions(path):
    """Decode the GLB and skin its mesh per the glTF spec: sum_k w_k * G(joint_k) @ IBM_k @ p."""
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    prim = gltf.meshes[0].primitives[0]
    pos = _read(gltf, blob, prim.attributes.POSITION).astype(np.float64)
    joints = np.concatenate([_read(gltf, blob, prim.attributes.JOINTS_0), _read(gltf, blob, prim.attributes.JOINTS_1)], 1)
    weights = np.concatenate([_read(gltf, blob, prim.attributes.WEIGHTS_0), _read(gltf, blob, prim.attributes.WEIGHTS_1)], 1)
    skin = gltf.skins[0]
    ibm = _read(gltf, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    parent = {c: i for i, n in enumerate(gltf.nodes) for c in (n.children or [])}
    cache = {}

    def world(i):
        if i not in cache:
            cache[i] = (world(parent[i]) if i in parent else np.eye(4)) @ _trs(gltf.nodes[i])
        return cache[i]

    mats = np.stack([world(j) @ ibm[k] for k, j in enumerate(skin.joints)])
    homo = np.concatenate([pos, np.ones((len(pos), 1))], 1)
    per = np.einsum("vkij,vj->vki", mats[joints], homo)[..., :3]
    return gltf, pos, (weights[..., None] * per).sum(1), weights


def test_rigged_glb_skins_back_to_the_posed_body(anny_body, tmp_path):
    scipy_spatial = pytest.importorskip("scipy.spatial")
    body = anny_body
    betas = body.betas_from_phenotype(weight=0.7, height=0.3)
    pose = body.pose_from_controls(1, walk_phase_deg=90, stride_deg=25, arm_swing_deg=20, elbow_bend_deg=40)
    texture = torch.rand(3, 32, 32)
    path = export_rigged_glb(tmp_path / "rigged.glb", body, betas, texture, pose=pose)
    gltf, bind_pos, skinned, weights = _skinned_positions(path)
    assert len(gltf.skins[0].joints) == len(body.joint_names) == 104
    assert [gltf.nodes[j].name for j in gltf.skins[0].joints] == body.joint_names
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    with torch.no_grad():
        rig = body.rig(betas=betas, pose=pose)
        posed = body(betas=betas, pose=pose).vertices[0].double().numpy()
    # Which Anny vertex each GLB vertex is (seams split vertices): nearest bind-pose vertex.
    dist, source = scipy_spatial.cKDTree(rig["bind_vertices"][0].double().numpy()).query(bind_pos)
    assert dist.max() < 1e-6 and len(np.unique(source)) == posed.shape[0]
    err = np.abs(skinned - posed[source]).max()
    assert err < 5e-4, err  # 8 of at most 9 influences kept: sub-millimetre


def test_rig_reproduces_forward(anny_body):
    body = anny_body
    pose = body.pose_from_controls(2, walk_phase_deg=torch.tensor([0.0, 120.0]), stride_deg=20.0)
    betas = body.betas_from_phenotype(muscle=0.8)
    with torch.no_grad():
        rig = body.rig(betas=betas, pose=pose)
        out = body(betas=betas, pose=pose)
    bind = rig["bind_vertices"].double()
    mats = rig["bone_poses"].double() @ torch.linalg.inv(rig["bind_bone_poses"].double())
    homo = torch.cat([bind, torch.ones_like(bind[..., :1])], -1)
    lbs = torch.einsum("vk,bkij,bvj->bvi", rig["weights"].double(), mats, homo)[..., :3]
    assert (lbs - out.vertices.double()).abs().max() < 1e-4
    torch.testing.assert_close(rig["bone_poses"][..., :3, 3], out.joints)


def test_animation_and_textured_glb_load_with_trimesh(anny_body, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    body = anny_body
    motion = walk_cycle(body, frames=6)
    texture = torch.rand(3, 16, 16)
    betas = torch.zeros(1, body.num_betas)
    path = export_rigged_glb(tmp_path / "walk.glb", body, betas, texture,
                             motion=torch.from_numpy(motion["pose"]), fps=30.0,
                             motion_translation=torch.from_numpy(motion["transl"]))
    gltf = pygltflib.GLTF2().load(str(path))
    animation = gltf.animations[0]
    assert len(animation.channels) == 104 + 1
    times = _read(gltf, gltf.binary_blob(), animation.samplers[0].input)[:, 0]
    np.testing.assert_allclose(times, np.arange(6) / 30.0, atol=1e-6)
    scene = trimesh.load(path)
    assert sum(len(g.vertices) for g in scene.geometry.values()) >= body.template_vertices.shape[0]
    with torch.no_grad():
        verts = body(betas=betas).vertices[0]
    static = export_textured_glb(tmp_path / "static.glb", verts, body.faces, body.corner_uvs, texture)
    mesh = trimesh.load(static, force="mesh")
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.material.baseColorTexture.size == (16, 16)
    assert abs(mesh.vertices[:, 1].max() - float(verts[:, 1].max())) < 1e-5


def test_motion_files(anny_body, tmp_path):
    body = anny_body
    path = save_motion(tmp_path / "walk.npz", walk_cycle(body, frames=4, forward_speed=1.0))
    motion = load_motion(path, body)
    assert motion["pose"].shape == (4, body.num_pose_params) and motion["fps"] == 30.0
    assert motion["transl"][-1, 2] == pytest.approx(3 / 30.0)
    np.savez(tmp_path / "smplx.npz", pose=np.zeros((4, 63), np.float32))
    with pytest.raises(ValueError, match="SMPL-X"):
        load_motion(tmp_path / "smplx.npz", body)
    np.savez(tmp_path / "none.npz", poses=np.zeros((4, 312), np.float32))
    with pytest.raises(ValueError, match="mocap_framerate"):  # read as AMASS, which needs its frame rate
        load_motion(tmp_path / "none.npz", body)
    np.savez(tmp_path / "empty.npz", fps=np.float64(30))
    with pytest.raises(ValueError, match="no 'pose'"):
        load_motion(tmp_path / "empty.npz", body)
    with pytest.raises(FileNotFoundError, match="format"):
        load_motion(tmp_path / "missing.npz", body)


def test_motion_video_frames(anny_body, tmp_path):
    body = anny_body
    motion = walk_cycle(body, frames=3, stride_deg=30)
    texture = torch.rand(3, 16, 16)
    frames = motion_frames(body, torch.zeros(1, body.num_betas), torch.from_numpy(motion["pose"]), texture, size=64)
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 0  # the body moves
    assert (frames[0] < 250).any()  # the body is in view over the white background
    gif = save_gif(frames, tmp_path / "walk.gif")
    from PIL import Image

    with Image.open(gif) as img:
        assert img.n_frames == 3


def test_mp4_decodes_to_the_frames_written(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    rng = np.random.default_rng(0)
    # 7 frames of smooth colour fields (a moving gradient) at an odd size: padded to 64 x 66
    y, x = np.mgrid[0:65, 0:63]
    frames = [np.stack([(x * 4 + 20 * k) % 256, (y * 3) % 256, np.full_like(x, 40 * k)], -1).astype(np.uint8)
              for k in range(7)]
    path = save_mp4(frames, tmp_path / "clip.mp4", fps=12)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (64, 66) and meta["fps"] == pytest.approx(12)
    decoded = [np.frombuffer(f, np.uint8).reshape(66, 64, 3) for f in reader]
    assert len(decoded) == 7
    for want, got in zip(frames, decoded):
        assert np.abs(got[:65, :63].astype(int) - want).mean() < 6  # lossy H.264, but the same pictures
    assert np.abs(decoded[0].astype(int) - decoded[6].astype(int)).mean() > 30
    with pytest.raises(ValueError, match="one .H, W, 3. shape"):
        save_mp4([frames[0], rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)], tmp_path / "bad.mp4")


def test_motion_command_writes_a_walk(anny_body, tmp_path):
    from zoo.export.motion import main

    assert main(["walk", "--out", str(tmp_path / "walk.npz"), "--frames", "4", "--stride", "20"]) == 0
    motion = load_motion(tmp_path / "walk.npz", anny_body)
    assert motion["pose"].shape == (4, anny_body.num_pose_params)
    assert not torch.allclose(motion["pose"][0], motion["pose"][2])  # the legs swing between frames
