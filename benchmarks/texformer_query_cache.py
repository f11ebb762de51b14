"""Cost of Texformer's constant query branch: batch-of-one broadcast vs per-sample.

The query branch (UV colour code -> query U-Net -> query projections) is the same for every
sample. Two ways to run it, timed in one process on the same weights and inputs:

- batch-1:     recomputed every forward on a batch of one and broadcast (what the module does);
- per-sample:  run on B copies, as a naive implementation would.

"no query" is the rest of the forward alone (the query tokens precomputed outside the timing):
the most a cache kept across calls could save. The module keeps no such cache (it would have to
notice every in-place weight change, e.g. an EMA swap).

FLOPs come from torch's FlopCounterMode (a multiply-add counts 2). Run:

    python benchmarks/texformer_query_cache.py [--batch 4] [--reps 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo.modules.texformer import TexformerBackbone


class PrecomputedQuery(TexformerBackbone):
    """Uses query tokens computed beforehand (`tokens`): the forward without its query branch."""

    tokens: list | None = None

    def _query_tokens(self, batch: int):
        return self.tokens


class PerSampleQuery(TexformerBackbone):
    """Runs the query branch on B copies of the code (the naive way)."""

    def _query_tokens(self, batch: int):
        return self._compute_query_tokens(batch)


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2, help="timed forwards per mode (median)")
    parser.add_argument("--image", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    parser.add_argument("--uv", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    args = parser.parse_args()

    torch.manual_seed(0)
    batch1 = TexformerBackbone(uv_size=tuple(args.uv)).eval()
    cached = PrecomputedQuery(uv_size=tuple(args.uv)).eval()
    per_sample = PerSampleQuery(uv_size=tuple(args.uv)).eval()
    cached.load_state_dict(batch1.state_dict())
    per_sample.load_state_dict(batch1.state_dict())
    modes = {"no query": cached, "batch-1 query": batch1, "per-sample query": per_sample}

    g = torch.Generator().manual_seed(0)
    image = torch.rand(args.batch, 3, *args.image, generator=g) * 2 - 1
    parts = torch.randint(0, 8, (args.batch, *args.image), generator=g)

    with torch.no_grad():
        cached.tokens = cached._compute_query_tokens()
        reference = batch1(image[:1], parts[:1])
        for name, model in modes.items():  # same outputs, checked on a slice to save time
            diff = (model(image[:1], parts[:1]).channels() - reference.channels()).abs().max().item()
            assert diff < 1e-4, f"{name} differs from batch-1 by {diff}"
        query_flops = count_flops(lambda: cached._compute_query_tokens(1))
        rest_flops = count_flops(lambda: cached(image[:1], parts[:1]))  # tokens precomputed
        times = {name: [] for name in modes}
        for _ in range(args.reps):  # interleaved, so background load hits every mode alike
            for name, model in modes.items():
                start = time.perf_counter()
                model(image, parts)
                times[name].append(time.perf_counter() - start)

    b = args.batch
    flops = {"no query": b * rest_flops, "batch-1 query": b * rest_flops + query_flops,
             "per-sample query": b * (rest_flops + query_flops)}
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"Texformer forward, CPU ({torch.get_num_threads()} threads), batch {b}, image "
          f"{args.image[0]}x{args.image[1]} -> UV {args.uv[0]}x{args.uv[1]}, median of {args.reps}")
    print(f"query branch: {query_flops / 1e9:.1f} GFLOP = "
          f"{100 * query_flops / (query_flops + rest_flops):.0f}% of a one-sample forward "
          f"({(query_flops + rest_flops) / 1e9:.1f} GFLOP)")
    print(f"{'mode':<18}{'GFLOP':>9}{'GFLOP/sample':>14}{'time s':>9}{'s/sample':>10}{'time / no query':>17}")
    for name in modes:
        print(f"{name:<18}{flops[name] / 1e9:>9.1f}{flops[name] / b / 1e9:>14.1f}{median[name]:>9.2f}"
              f"{median[name] / b:>10.2f}{median[name] / median['no query']:>17.2f}")
    for name in ("batch-1 query", "per-sample query"):
        saved_flops = (flops[name] - flops["no query"]) / b
        saved_time = (median[name] - median["no query"]) / b
        print(f"a cross-call cache vs {name} would save {saved_flops / 1e9:.1f} GFLOP and {saved_time:.2f} s per sample "
              f"({100 * saved_flops / (flops[name] / b):.0f}% of its FLOPs)")


if __name__ == "__main__":
    main()
