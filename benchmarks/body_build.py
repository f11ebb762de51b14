"""Timings of the body models on this machine: build/load, forward, controls, UV masks.

    python benchmarks/body_build.py            # AnnyBody (builds Anny's cache on the first run)
    python benchmarks/body_build.py --repeat 5

Prints one table; the first AnnyBody build on a machine is minutes (Anny's one-time cache),
later loads are seconds.
"""
from __future__ import annotations

import argparse
import time

import torch


def _time(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    from zoo.body import AnnyBody
    from zoo.body.uv import rasterize_uv

    start = time.perf_counter()
    body = AnnyBody()
    rows = [("AnnyBody() build/load", time.perf_counter() - start)]
    rows.append(("AnnyBody() second load", _time(AnnyBody, 1)))
    for batch in (1, 16):
        pose = body.pose_from_controls(batch, walk_phase_deg=torch.linspace(0, 360, batch), stride_deg=25.0)
        betas = torch.zeros(batch, body.num_betas)
        rows.append((f"forward B={batch}", _time(lambda: body(betas, pose), args.repeat)))
    rows.append(("pose_from_controls B=16", _time(lambda: body.pose_from_controls(16, stride_deg=20.0), args.repeat)))
    for size in (128, 256, 512):
        rows.append((f"rasterize_uv all faces {size}px", _time(lambda: rasterize_uv(body.corner_uvs, size), args.repeat)))
    rows.append(("uv_region_mask face_hands 128px", _time(lambda: body.uv_region_mask("face_hands", 128), args.repeat)))

    print(f"AnnyBody: V={body.template_vertices.shape[0]}, F={body.faces.shape[0]}, "
          f"num_betas={body.num_betas}, num_pose_params={body.num_pose_params}, threads={torch.get_num_threads()}")
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:8.4f}")


if __name__ == "__main__":
    main()
