"""Rasteriser benchmark: `zoo.render.rasterize` vs an Embree ray caster on the full Anny mesh.

    python benchmarks/rasterize.py [--reps 5] [--threads 2]

Both run in this process on the same posed mesh and cameras, so the ratios are side by side.
The ray caster (trimesh + embreex, a benchmark-only dependency) shoots one ray per pixel centre;
"embree faces" returns the first-hit face only, "embree hits" also the hit points (what a
renderer needs for barycentrics and depth). Our rasteriser returns face ids, perspective-correct
barycentrics and depth. The agreement column is the share of pixels with the same face id.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from zoo.body import AnnyBody
from zoo.render import look_at_body, rasterize, to_camera

SIZES = [(128, 64), (256, 256), (512, 512)]
BATCHES = [1, 16]


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scene(body: AnnyBody, batch: int, size: tuple[int, int], device: str):
    g = torch.Generator().manual_seed(0)
    pose = body.pose_from_controls(batch, walk_phase_deg=360 * torch.rand(batch, generator=g, dtype=torch.float64),
                                   stride_deg=25.0, arm_swing_deg=20.0)
    with torch.no_grad():
        verts = body(pose=pose).vertices
    yaw = 360 * torch.rand(batch, generator=g)
    R, t = look_at_body(yaw, torch.zeros(batch), torch.full((batch,), 4.0))
    cam = to_camera(verts, R, t)
    H, W = size
    height = float(verts[0, :, 1].max() - verts[0, :, 1].min())
    focal = 0.9 * H * 4.0 / height
    K = torch.tensor([[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1.0]]).repeat(batch, 1, 1)
    return cam.to(device), body.faces.to(device), K.to(device)


def embree_casters(cam: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, size: tuple[int, int]):
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    H, W = size
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    meshes, rays = [], []
    for b in range(cam.shape[0]):
        mesh = trimesh.Trimesh(cam[b].cpu().numpy(), faces.cpu().numpy(), process=False)
        meshes.append(RayMeshIntersector(mesh))
        k = K[b].cpu().numpy()
        d = np.stack([(jj - k[0, 2]) / k[0, 0], (ii - k[1, 2]) / k[1, 1], np.ones_like(jj, dtype=float)], -1).reshape(-1, 3)
        rays.append((np.zeros_like(d), d))

    def faces_only():
        return [m.intersects_first(o, d) for m, (o, d) in zip(meshes, rays)]

    def with_hits():
        return [m.intersects_location(o, d, multiple_hits=False) for m, (o, d) in zip(meshes, rays)]

    return faces_only, with_hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    body = AnnyBody()
    print(f"mesh: {body.template_vertices.shape[0]} vertices, {body.faces.shape[0]} faces; "
          f"CPU threads: {args.threads}; median of {args.reps}")
    print()
    header = "| size | batch | device | zoo rasterize ms | embree faces ms | embree hits ms | zoo / embree hits | face-id agreement |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for size in SIZES:
        for batch in BATCHES:
            cam, faces, K = scene(body, batch, size, "cpu")
            faces_only, with_hits = embree_casters(cam, faces, K, size)
            t_faces = timed(faces_only, args.reps)
            t_hits = timed(with_hits, args.reps)
            ray_ids = torch.from_numpy(np.stack(faces_only())).view(batch, *size)
            for device in devices:
                c, f, k = cam.to(device), faces.to(device), K.to(device)

                def run():
                    out = rasterize(c, f, k, size)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return out

                t_zoo = timed(run, args.reps)
                agree = (run().face_index.cpu() == ray_ids).float().mean().item()
                print(f"| {size[0]}x{size[1]} | {batch} | {device} | {t_zoo * 1e3:.1f} | {t_faces * 1e3:.1f} | "
                      f"{t_hits * 1e3:.1f} | {t_zoo / t_hits:.2f} | {agree:.5f} |")


if __name__ == "__main__":
    main()
