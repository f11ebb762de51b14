"""benchmarks/gpu.sh --dry-run: every part of the prepared GPU run works, on the CPU at tiny sizes."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_passes(tmp_path):
    report = tmp_path / "gpu.md"
    env = {**os.environ, "GPU_MD": str(report)}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=900, check=False)
    text = report.read_text()
    assert result.returncode == 0, text + result.stderr[-2000:]
    assert "DRY RUN" in text and "FAILED" not in text
    for section in ("gpu-marked tests", "RefineTex training", "DINAR diffusion", "DINAR stage 1", "Rasteriser"):
        assert section in text, section
    assert " passed" in text and "| fp32 |" in text and "dpm++" in text and "| 64x32 | 1 |" in text
    assert not (ROOT / "docs" / "gpu.md").exists() or "DRY RUN" not in (ROOT / "docs" / "gpu.md").read_text()
