"""Every system on 2 CPU processes (DDP, gloo): it fits, and its validation / test metrics equal the
1-process values over the same items (no padded duplicates, item means summed over processes).

Slow (each case starts 5-7 Python processes): deselect with -m 'not slow'.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.robustness.test_resume import SYSTEMS

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("ddp_run.py")
ROOT = Path(__file__).resolve().parents[2]
# Batch statistics, not item means: they depend on how the items are batched (docs/multi_gpu.md).
BATCH_STATISTICS = {"val/codebook_usage", "val/perplexity", "val/loss"}
WITH_TEST_STEP = ("quickstart", "refinetex")  # the systems with a test_step


def _run(system: str, devices: int, mode: str, data_dir, out: Path, ckpt: Path | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(SCRIPT), system, str(devices), mode, str(data_dir), str(out)]
    command += [str(ckpt)] if ckpt is not None else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_ddp_fit_and_metrics_equal_one_process(system, tiny_data_dir, tmp_path):
    fitted = _run(system, 2, "fit", tiny_data_dir, tmp_path / "fit")
    assert fitted["world_size"] == 2
    ckpt = tmp_path / "fit" / "model.ckpt"
    modes = ["validate", "test"] if system in WITH_TEST_STEP else ["validate"]
    for mode in modes:
        one = _run(system, 1, mode, tiny_data_dir, tmp_path / f"{mode}1", ckpt)["metrics"]
        two = _run(system, 2, mode, tiny_data_dir, tmp_path / f"{mode}2", ckpt)["metrics"]
        assert one and set(one) == set(two)
        exact = {k for k in one if k not in BATCH_STATISTICS}
        assert exact, one
        for key in sorted(exact):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), (mode, key, one[key], two[key])
