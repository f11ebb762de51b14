#!/usr/bin/env bash
# The prepared GPU run (issue 13): about 8 minutes at most on one GPU; writes docs/gpu.md with the
# device name, each part's table, or the part's failure and last lines.
#
#   benchmarks/gpu.sh             on a machine with CUDA: writes docs/gpu.md
#   benchmarks/gpu.sh --dry-run   every part on the CPU at tiny sizes (< 2 minutes), a check that the
#                                 script works; writes $GPU_MD (default $TMPDIR/gpu-dry-run.md), never
#                                 docs/gpu.md. Exits non-zero when a part fails.
#
# Parts (each under its own time limit): the `gpu`-marked tests (rasteriser device path = CPU result,
# system training steps on the device, bf16 autocast), RefineTex training throughput at the paper's
# size, the DINAR diffusion denoiser and DDIM 200 vs DPM-Solver++ 20 per avatar, DINAR stage-1 step
# time, the rasteriser at 512x512 and 1024x1024.
#
# RASTER_SCENES=FILE: the rasteriser part reads its posed Anny meshes from FILE (written here by
# `python benchmarks/rasterize.py --batches 1 16 --save-scenes FILE`) instead of building Anny, whose
# assets a bare GPU machine lacks.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE=offline WANDB_SILENT=true

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; fi
if [ "$DRY" = 1 ]; then
    OUT="${GPU_MD:-${TMPDIR:-/tmp}/gpu-dry-run.md}"
    export ZOO_TEST_DEVICE=cpu OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    BENCH=(--dry-run)
    RASTER=(--device cpu --no-embree --sizes 64x32 --batches 1 --reps 1)
    LIMIT_TESTS=300 LIMIT_PART=300  # a safety net only: a shared CPU can be many times slower
else
    # A bare machine can lack a package, or hang on an import (session 6's first try came back with
    # no output at all after 9 minutes): check each import within a time limit and say which one.
    echo "python: $(command -v python) ($(python -V 2>&1))" >&2
    for module in torch diffusers kornia numba pytorch_lightning torchmetrics zoo.diffusion zoo.systems; do
        start=$SECONDS
        if ! timeout 120 python -c "import $module"; then
            echo "import $module failed or took over 120 s: see above; carry the missing wheels (device README)" >&2
            exit 1
        fi
        echo "import $module: $((SECONDS - start)) s" >&2
    done
    if ! timeout 120 python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA device (or its start took over 120 s): run with --dry-run on a CPU machine" >&2
        exit 1
    fi
    OUT=docs/gpu.md
    BENCH=(--device cuda)
    RASTER=(--device cuda --no-embree --sizes 512x512 1024x1024 --batches 1 16 --reps 5)
    LIMIT_TESTS=120 LIMIT_PART=90
fi
LOG="$(mktemp -d)"
FAILED=0

{
    echo "# GPU run"
    echo
    if [ "$DRY" = 1 ]; then echo "DRY RUN on the CPU at tiny sizes: a check of the script, not measurements."; echo; fi
    python - <<'PY'
import datetime, os, platform, subprocess, torch
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
# ZOO_COMMIT: for a copy of the tree without its .git folder (the lent GPU machine gets one)
commit = os.environ.get("ZOO_COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                        text=True).stdout.strip()
print(f"- device: {dev}")
print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(f"- commit {commit or 'unknown'}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
print("- command: benchmarks/gpu.sh (tables below are its output; networks have random weights)")
PY
    echo
} > "$OUT"

# part NAME LIMIT_SECONDS COMMAND...: run it, append its output (or its failure) to the report.
part() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name" >&2
    local start=$SECONDS
    timeout "$limit" "$@" > "$LOG/out" 2>&1
    local rc=$?
    {
        echo "## $name"
        echo
        if [ $rc -eq 0 ]; then
            grep -v -E '^(USDT|ERROR:|WARNING:|\s*warnings\.warn)' "$LOG/out"
        else
            FAILED=1
            if [ $rc -eq 124 ]; then echo "FAILED: over its ${limit} s limit. Last lines:"; else echo "FAILED (exit $rc). Last lines:"; fi
            echo
            echo '```'
            tail -n 25 "$LOG/out"
            echo '```'
        fi
        echo
        echo "($((SECONDS - start)) s)"
        echo
    } >> "$OUT"
    [ $rc -eq 0 ] || FAILED=1
}

# Only the files that hold `gpu`-marked tests are collected (collecting every test costs a minute).
mapfile -t GPU_TESTS < <(grep -rlE "mark\.gpu|pytestmark = pytest\.mark\.gpu" tests --include='test_*.py' | sort)
part "gpu-marked tests (${GPU_TESTS[*]})" "$LIMIT_TESTS" python -m pytest -q -m gpu "${GPU_TESTS[@]}" -p no:cacheprovider -W ignore
if [ "$DRY" = 1 ]; then  # one process for the three parts: imports dominate at tiny sizes
    part "RefineTex training, DINAR diffusion, DINAR stage 1 (tiny)" "$LIMIT_PART" \
        python benchmarks/gpu_bench.py refinetex diffusion dinar "${BENCH[@]}"
else
    part "RefineTex training throughput (paper size)" "$LIMIT_PART" python benchmarks/gpu_bench.py refinetex "${BENCH[@]}"
    part "DINAR diffusion: denoiser and samplers" "$LIMIT_PART" python benchmarks/gpu_bench.py diffusion "${BENCH[@]}"
    part "DINAR stage 1 training step" "$LIMIT_PART" python benchmarks/gpu_bench.py dinar "${BENCH[@]}"
fi
if [ -n "${RASTER_SCENES:-}" ]; then RASTER+=(--scenes "$RASTER_SCENES"); fi
part "Rasteriser" "$LIMIT_PART" python benchmarks/rasterize.py "${RASTER[@]}"

echo "wrote $OUT" >&2
exit $FAILED
