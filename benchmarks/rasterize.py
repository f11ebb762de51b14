"""Rasteriser benchmark: `zoo.render.rasterize` vs an Embree ray caster on the full Anny mesh.

    python benchmarks/rasterize.py [--reps 7] [--sizes 128x64 256x256 512x512] [--batches 1 16]
    python benchmarks/rasterize.py --batches 1 16 --save-scenes scenes.pt   # the posed meshes, for
    python benchmarks/rasterize.py --scenes scenes.pt ...                    # a machine without Anny

Our rasteriser's two CPU backends (the compiled numba kernel, the default for CPU tensors, and the
whole-tensor torch path, the one CUDA runs) and the ray caster run in this process, one thread, on
the same posed meshes and cameras, interleaved, so the ratios are side by side. Times are process
CPU time (robust on a shared machine where wall time mostly measures the other jobs), medians over
`--reps`. The ray caster (trimesh + embreex, a benchmark-only dependency) shoots one ray per pixel
centre: "embree faces" returns the first-hit face only, "embree hits" also the hit points (what a
renderer needs for barycentrics and depth), both with the acceleration structure (BVH) already
built; "hits + BVH" also builds it, which a ray caster has to do for every new pose. Our
rasteriser returns face ids, perspective-correct barycentrics and depth, and needs no acceleration
structure. "agree" is the share of pixels with the same face id as the ray caster; "numba = torch"
says whether the backends' face ids are equal.

Further tables: where each backend's CPU time goes (torch path: set-up, candidate enumeration
and edge tests, z-buffer, barycentrics, see zoo/render/rasterize.py; numba kernel: the input
checks and tensors around it, projection, faces and their pixels, final pass), and the numba
kernel's one-off cost in a new process: its first call compiles it (empty disk cache) or loads it
from numba's disk cache. On CUDA the stage split is not meaningful (asynchronous).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's zoo, wherever the script is run from

import numpy as np  # noqa: E402
import torch  # noqa: E402

from zoo.body import AnnyBody  # noqa: E402
from zoo.render import look_at_body, rasterize, to_camera  # noqa: E402
from zoo.render import rasterize_cpu as kernel  # noqa: E402

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


def posed(body: AnnyBody, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertices (B, V, 3), camera yaw (B,)) of `batch` walking poses, seeded: the same every run."""
    g = torch.Generator().manual_seed(0)
    pose = body.pose_from_controls(batch, walk_phase_deg=360 * torch.rand(batch, generator=g, dtype=torch.float64),
                                   stride_deg=25.0, arm_swing_deg=20.0)
    with torch.no_grad():
        verts = body(pose=pose).vertices
    return verts, 360 * torch.rand(batch, generator=g)


def framed(verts: torch.Tensor, yaw: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space vertices and intrinsics that frame the body at `size` (H, W)."""
    batch = verts.shape[0]
    R, t = look_at_body(yaw, torch.zeros(batch), torch.full((batch,), 4.0))
    cam = to_camera(verts, R, t)
    H, W = size
    height = float(verts[0, :, 1].max() - verts[0, :, 1].min())
    focal = 0.9 * H * 4.0 / height
    K = torch.tensor([[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1.0]]).repeat(batch, 1, 1)
    return cam, K


class Scenes:
    """The posed meshes of each batch size: built from Anny, or read from a file written by
    `--save-scenes` (a machine without Anny's assets, e.g. the lent GPU, gets the same meshes)."""

    def __init__(self, batches, scenes_file: str | None = None):
        if scenes_file is None:
            body = AnnyBody()
            self.faces = body.faces
            self.meshes = {batch: posed(body, batch) for batch in batches}
            return
        path = Path(scenes_file)
        if not path.is_file():
            raise FileNotFoundError(f"--scenes {path}: no such file (write it with --save-scenes on a machine with Anny)")
        data = torch.load(path, weights_only=True)
        missing = [batch for batch in batches if f"verts_b{batch}" not in data]
        if missing:
            raise ValueError(f"--scenes {path} holds no meshes for batch sizes {missing}; it has {sorted(data)}")
        self.faces = data["faces"]
        self.meshes = {batch: (data[f"verts_b{batch}"], data[f"yaw_b{batch}"]) for batch in batches}

    def save(self, path: str) -> None:
        data = {"faces": self.faces}
        for batch, (verts, yaw) in self.meshes.items():
            data[f"verts_b{batch}"], data[f"yaw_b{batch}"] = verts.contiguous(), yaw
        torch.save(data, path)

    @property
    def num_vertices(self) -> int:
        return next(iter(self.meshes.values()))[0].shape[1]

    def __call__(self, batch: int, size: tuple[int, int]):
        """(camera-space vertices, faces, intrinsics) on the CPU."""
        cam, K = framed(*self.meshes[batch], size)
        return cam, self.faces, K


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


def numba_stages(cam: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, size: tuple[int, int], reps: int) -> dict[str, float]:
    """Median CPU ms of the numba backend's whole call and of the kernel's jitted functions,
    called one by one from Python on the same arrays (what `zoo.render.rasterize_cpu` runs in
    one compiled loop); "rest" is the call minus the parts: the output buffers (allocation, first
    touch, reset), conversions, dispatch."""
    H, W = size
    B = cam.shape[0]
    verts, fcs, Ks = cam.contiguous().numpy(), faces.long().contiguous().numpy(), K.to(torch.float64).numpy()
    face_out = np.full((B, H * W), -1, dtype=np.int64)
    bary_out, zbuf = np.zeros((B, H * W, 3), dtype=np.float32), np.zeros((B, H * W), dtype=np.float32)
    V = verts.shape[1]
    u, v, inv_z, box = np.empty(V), np.empty(V), np.empty(V), np.empty((V, 4), dtype=np.int32)
    coord = np.arange(max(H, W)).astype(np.float32)

    def reset():  # the buffers a call starts from
        face_out.fill(-1)
        zbuf.fill(0)

    def project():
        for i in range(B):
            kernel._project(verts[i], Ks[i], H, W, 1e-4, u, v, inv_z, box)

    def faces_pixels():  # on the last image's projection: the same work per image
        reset()
        for i in range(B):
            kernel._raster_image(fcs, u, v, inv_z, box, W, coord, face_out[i], bary_out[i], zbuf[i])

    def final():  # the same work whatever the values it finds
        for i in range(B):
            kernel._finalise(face_out[i], bary_out[i], zbuf[i])

    project()
    faces_pixels()
    t = interleaved({"call": lambda: rasterize(cam, faces, K, size, backend="numba"),
                     "value checks": lambda: kernel._values_valid(verts, fcs, Ks), "projection": project,
                     "faces + pixels": faces_pixels, "reset": reset, "final pass": final}, reps)
    t["faces + pixels"] -= t.pop("reset")  # counted in "rest"
    t["rest"] = t["call"] - sum(ms for name, ms in t.items() if name != "call")
    return t


JIT_PROBE = """
import time, torch
start = time.process_time()
from zoo.render import rasterize
from zoo.render import rasterize_cpu  # imports numba
t_import = time.process_time() - start
v = torch.tensor([[[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0]]])
K = torch.tensor([[[20.0, 0.0, 7.5], [0.0, 20.0, 7.5], [0.0, 0.0, 1.0]]])
f = torch.tensor([[0, 1, 2]])
times = []
for _ in range(2):
    start = time.process_time()
    rasterize(v, f, K, (16, 16), backend="numba")
    times.append(time.process_time() - start)
print(t_import, times[0], times[1])
"""


def jit_cost() -> dict[str, float]:
    """CPU seconds in a new process: importing the kernel module (numba), the first float32 call
    with an empty numba cache (compilation), the first call with the cache it wrote (loading),
    and a second call (a 16x16 image: the run time itself)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for label in ("empty cache", "disk cache"):
            probe = subprocess.run([sys.executable, "-c", JIT_PROBE], env=env, capture_output=True, text=True, check=True)
            t_import, first, second = (float(x) for x in probe.stdout.split()[-3:])
            out["import numba kernel module"] = t_import
            out[f"first call, {label}"] = first
            out["later call"] = second
    return out


def device_table(scenes: Scenes, sizes, batches, device: str, reps: int) -> None:
    """Our rasteriser's torch path on `device` (wall clock, synchronised) against the CPU
    default (the numba kernel, one call after a warm-up call)."""
    print(f"mesh: {scenes.num_vertices} vertices, {scenes.faces.shape[0]} faces; zoo (torch backend) on {device} "
          f"(wall clock, median of {reps}) vs zoo's CPU default (numba backend, one thread, one call)")
    print()
    print("| size | batch | zoo device ms | zoo CPU ms | speed-up | face ids equal to CPU | max bary diff |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        for batch in batches:
            cam, faces, K = scenes(batch, size)
            rasterize(cam, faces, K, size, backend="numba")  # compiles (or loads) the kernel
            start = time.perf_counter()
            ref = rasterize(cam, faces, K, size, backend="numba")
            t_cpu = 1e3 * (time.perf_counter() - start)
            c, f, k = cam.to(device), faces.to(device), K.to(device)

            def ours(c=c, f=f, k=k, size=size):
                out = rasterize(c, f, k, size, backend="torch")
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
            print(f"| {size[0]}x{size[1]} | {batch} | {t:.2f} | {t_cpu:.1f} | {t_cpu / t:.1f}x | {same:.6f} | {diff:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sizes", nargs="+", default=["128x64", "256x256", "512x512"], help="HxW")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--device", default="cpu", help="where our rasteriser's torch path runs (cpu or cuda)")
    parser.add_argument("--no-embree", action="store_true",
                        help="only our rasteriser's torch path on --device, against the CPU default (the GPU run)")
    parser.add_argument("--scenes", help="read the posed meshes from this file (written by --save-scenes) instead of Anny")
    parser.add_argument("--save-scenes", help="write the posed meshes of --batches to this file and stop")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenes = Scenes(args.batches, args.scenes)
    if args.save_scenes:
        scenes.save(args.save_scenes)
        return
    sizes = [tuple(int(s) for s in size.split("x")) for size in args.sizes]
    if args.no_embree:
        device_table(scenes, sizes, args.batches, args.device, args.reps)
        return
    jit = jit_cost()  # first: a new process, before this one loads the machine's caches
    print(f"mesh: {scenes.num_vertices} vertices, {scenes.faces.shape[0]} faces; one CPU thread; "
          f"process CPU time, median of {args.reps}; zoo's torch backend on {args.device}")
    print()
    print("| size | batch | zoo numba ms | zoo torch ms | embree faces ms | embree hits ms | hits + BVH ms | numba / hits "
          "| torch / hits | numba / hits + BVH | agree | numba = torch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    shares, parts = [], []
    for size in sizes:
        for batch in args.batches:
            cam, faces, K = scenes(batch, size)
            faces_only, with_hits, with_build = embree_casters(cam, faces, K, size)
            c, f, k = cam.to(args.device), faces.to(device=args.device), K.to(args.device)

            def ours(c=c, f=f, k=k, size=size):
                out = rasterize(c, f, k, size, backend="torch")
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                return out

            def compiled(size=size):
                return rasterize(cam, faces, K, size, backend="numba")

            t = interleaved({"numba": compiled, "torch": ours, "faces": faces_only, "hits": with_hits,
                             "build": with_build}, args.reps)
            ray_ids = torch.from_numpy(np.stack(faces_only())).view(batch, *size)
            fast = compiled()
            agree = (fast.face_index == ray_ids).float().mean().item()
            equal = torch.equal(fast.face_index, ours().face_index.cpu())
            print(f"| {size[0]}x{size[1]} | {batch} | {t['numba']:.2f} | {t['torch']:.2f} | {t['faces']:.2f} | "
                  f"{t['hits']:.2f} | {t['build']:.2f} | {t['numba'] / t['hits']:.2f} | {t['torch'] / t['hits']:.2f} | "
                  f"{t['numba'] / t['build']:.2f} | {agree:.5f} | {'yes' if equal else 'NO'} |")
            shares.append((size, batch, stage_shares(ours, 3)))
            parts.append((size, batch, numba_stages(cam, faces, K, size, args.reps)))
    print()
    print("Where the numba backend's time goes (median CPU ms; its jitted functions timed one by one):")
    print()
    columns = list(parts[0][2])
    print("| size | batch | " + " | ".join(f"{s} ms" for s in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for size, batch, part in parts:
        print(f"| {size[0]}x{size[1]} | {batch} | " + " | ".join(f"{part[s]:.2f}" for s in columns) + " |")
    print()
    print("Where the torch backend's time goes (share of its CPU time):")
    print()
    columns = (*STAGES, "other")
    print("| size | batch | " + " | ".join(f"{s} %" for s in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for size, batch, share in shares:
        print(f"| {size[0]}x{size[1]} | {batch} | " + " | ".join(f"{100 * share[s]:.0f}" for s in columns) + " |")
    print()
    print("The numba kernel's one-off cost in a new process (CPU seconds; float32 inputs, a 16x16 image):")
    print()
    print("| what | s |")
    print("|---|---|")
    for name, seconds in jit.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
