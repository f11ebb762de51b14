"""Rasteriser benchmark: `zoo.render.rasterize` vs an Embree ray caster on the full Anny mesh.

    python benchmarks/rasterize.py [--reps 7] [--sizes 128x64 256x256 512x512] [--batches 1 16]

Both run in this process, one thread, on the same posed meshes and cameras, interleaved, so the
ratios are side by side. Times are process CPU time (robust on a shared machine where wall time
mostly measures the other jobs), medians over `--reps`. The ray caster (trimesh + embreex, a
benchmark-only dependency) shoots one ray per pixel centre: "embree faces" returns the first-hit
face only, "embree hits" also the hit points (what a renderer needs for barycentrics and depth),
both with the acceleration structure (BVH) already built; "hits + BVH" also builds it, which a
ray caster has to do for every new pose. Our rasteriser returns face ids, perspective-correct
barycentrics and depth, and needs no acceleration structure. "agree" is the share of pixels with
the same face id as the ray caster.

The second table splits the rasteriser's CPU time into its stages (see zoo/render/rasterize.py):
set-up (projection, integer cull, survivor set-up), candidate enumeration and edge tests,
z-buffer, barycentrics of the visible pixels; on CUDA the split is not meaningful (asynchronous).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from zoo.body import AnnyBody
from zoo.render import look_at_body, rasterize, to_camera

STAGES = ("setup", "candidates", "zbuffer", "barycentrics")  # stage functions of zoo/render/rasterize.py


def interleaved(contenders: dict, reps: int) -> dict[str, float]:
    """Median process CPU milliseconds of each callable: one warm-up call each, then `reps`
    rounds that call every contender once, so that load from other processes hits all alike."""
    times = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(reps):
        for name, fn in contenders.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


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
    """(faces only, with hits, with hits including the BVH build) callables for the batch."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    H, W = size
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    meshes, rays = [], []
    for b in range(cam.shape[0]):
        meshes.append(trimesh.Trimesh(cam[b].cpu().numpy(), faces.cpu().numpy(), process=False))
        k = K[b].cpu().numpy()
        d = np.stack([(jj - k[0, 2]) / k[0, 0], (ii - k[1, 2]) / k[1, 1], np.ones_like(jj, dtype=float)], -1).reshape(-1, 3)
        rays.append((np.zeros_like(d), d))
    built = [RayMeshIntersector(m) for m in meshes]

    def faces_only():
        return [m.intersects_first(o, d) for m, (o, d) in zip(built, rays)]

    def with_hits():
        return [m.intersects_location(o, d, multiple_hits=False) for m, (o, d) in zip(built, rays)]

    def with_build():
        return [RayMeshIntersector(m).intersects_location(o, d, multiple_hits=False) for m, (o, d) in zip(meshes, rays)]

    return faces_only, with_hits, with_build


def stage_shares(fn, reps: int) -> dict[str, float]:
    """Share of `fn`'s process CPU time spent in each stage function of the rasteriser (the
    module's `_setup`, `_candidates`, `_zbuffer`, `_barycentrics`, wrapped with timers for the
    duration of the measurement); "other" is the rest (input checks, buffers, chunking)."""
    module = sys.modules[rasterize.__module__]
    spent = dict.fromkeys(STAGES, 0.0)
    originals = {stage: getattr(module, f"_{stage}") for stage in STAGES}

    def timer(stage, original):
        def wrapped(*args, **kwargs):
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start
        return wrapped

    fn()
    for stage, original in originals.items():
        setattr(module, f"_{stage}", timer(stage, original))
    try:
        start = time.process_time()
        for _ in range(reps):
            fn()
        whole = time.process_time() - start
    finally:
        for stage, original in originals.items():
            setattr(module, f"_{stage}", original)
    shares = {stage: t / whole for stage, t in spent.items()}
    shares["other"] = 1.0 - sum(shares.values())
    return shares


def device_table(body: AnnyBody, sizes, batches, device: str, reps: int) -> None:
    """Our rasteriser on `device` (wall clock, synchronised) against its own CPU path (one call)."""
    print(f"mesh: {body.template_vertices.shape[0]} vertices, {body.faces.shape[0]} faces; zoo on {device} "
          f"(wall clock, median of {reps}) vs zoo on the CPU (one thread, one call)")
    print()
    print("| size | batch | zoo device ms | zoo CPU ms | speed-up | face ids equal to CPU | max bary diff |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        for batch in batches:
            cam, faces, K = scene(body, batch, size, "cpu")
            start = time.perf_counter()
            ref = rasterize(cam, faces, K, size)
            t_cpu = 1e3 * (time.perf_counter() - start)
            c, f, k = cam.to(device), faces.to(device), K.to(device)

            def ours(c=c, f=f, k=k, size=size):
                out = rasterize(c, f, k, size)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                return out

            ours()
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                out = ours()
                times.append(1e3 * (time.perf_counter() - start))
            same = (out.face_index.cpu() == ref.face_index).float().mean().item()
            diff = (out.bary.cpu() - ref.bary).abs().max().item()
            t = statistics.median(times)
            print(f"| {size[0]}x{size[1]} | {batch} | {t:.2f} | {t_cpu:.0f} | {t_cpu / t:.0f}x | {same:.6f} | {diff:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sizes", nargs="+", default=["128x64", "256x256", "512x512"], help="HxW")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--device", default="cpu", help="where our rasteriser runs (cpu or cuda)")
    parser.add_argument("--no-embree", action="store_true",
                        help="only our rasteriser on --device, against its own CPU result (the GPU run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    body = AnnyBody()
    sizes = [tuple(int(s) for s in size.split("x")) for size in args.sizes]
    if args.no_embree:
        device_table(body, sizes, args.batches, args.device, args.reps)
        return
    print(f"mesh: {body.template_vertices.shape[0]} vertices, {body.faces.shape[0]} faces; one CPU thread; "
          f"process CPU time, median of {args.reps}; zoo on {args.device}")
    print()
    print("| size | batch | zoo ms | embree faces ms | embree hits ms | hits + BVH ms | zoo / hits | zoo / hits + BVH | agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    shares = []
    for size in sizes:
        for batch in args.batches:
            cam, faces, K = scene(body, batch, size, "cpu")
            faces_only, with_hits, with_build = embree_casters(cam, faces, K, size)
            c, f, k = cam.to(args.device), faces.to(device=args.device), K.to(args.device)

            def ours(c=c, f=f, k=k, size=size):
                out = rasterize(c, f, k, size)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                return out

            t = interleaved({"zoo": ours, "faces": faces_only, "hits": with_hits, "build": with_build}, args.reps)
            ray_ids = torch.from_numpy(np.stack(faces_only())).view(batch, *size)
            agree = (ours().face_index.cpu() == ray_ids).float().mean().item()
            print(f"| {size[0]}x{size[1]} | {batch} | {t['zoo']:.2f} | {t['faces']:.2f} | {t['hits']:.2f} | "
                  f"{t['build']:.2f} | {t['zoo'] / t['hits']:.2f} | {t['zoo'] / t['build']:.2f} | {agree:.5f} |")
            shares.append((size, batch, stage_shares(ours, 3)))
    print()
    print("Where the rasteriser's time goes (share of its CPU time):")
    print()
    columns = (*STAGES, "other")
    print("| size | batch | " + " | ".join(f"{s} %" for s in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for size, batch, share in shares:
        print(f"| {size[0]}x{size[1]} | {batch} | " + " | ".join(f"{100 * share[s]:.0f}" for s in columns) + " |")


if __name__ == "__main__":
    main()
