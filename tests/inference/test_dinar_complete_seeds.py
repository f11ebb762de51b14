"""scripts/dinar_complete_results.py --train_seeds: seed 0 keeps the run's file names (its cached
results stay valid), other seeds sit beside it; scripts/dinar_complete_seeds.py's doc lines (row means
per training seed, their difference, each step's paired difference and verdict) against statistics
computed here independently."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(SCRIPTS))
    import dinar_complete_doc
    import dinar_complete_results
    import dinar_complete_seeds
    yield dinar_complete_results, dinar_complete_seeds, dinar_complete_doc
    sys.path.remove(str(SCRIPTS))


def test_seed_files(scripts, tmp_path):
    results, _, _ = scripts
    assert results.diffusion_file(tmp_path, 0) == tmp_path / "diffusion.pt"
    assert results.diffusion_file(tmp_path, 0, resume=True) == tmp_path / "diffusion_resume.pt"
    assert results.diffusion_file(tmp_path, 1) == tmp_path / "diffusion_seed1.pt"
    assert results.diffusion_file(tmp_path, 3, resume=True) == tmp_path / "diffusion_resume_seed3.pt"


@pytest.mark.parametrize("diffs, answer", [
    ([(-1.7, 0.4), (-1.5, 0.3)], "beyond both"),  # mean -1.6: > 0.8 (2 SE) and > 0.2 (spread)
    ([(-1.7, 0.4), (-0.5, 0.1)], "beyond 2 SE, within the training-seed spread"),  # mean -1.1 < spread 1.2
    ([(0.1, 0.07), (0.12, 0.08)], "beyond the training-seed spread, within 2 SE"),
    ([(0.1, 0.2), (-0.1, 0.2)], "sign differs between training seeds"),
    ([(0.1, 0.2), (0.4, 0.2)], "within both"),
])
def test_verdict(scripts, diffs, answer):
    assert scripts[1].verdict(diffs) == answer


def per(values: dict[str, list[float]], side: list[str]) -> dict:
    out = {"per_item": values}
    for which in ("front", "back"):
        out[which] = {k: statistics.fmean(v[i] for i in range(len(side)) if side[i] == which) for k, v in values.items()}
    return out


def test_seed_lines(scripts):
    _, seeds, doc = scripts
    side = ["front", "back"] * 3
    keys = ("psnr", "ms_ssim", "reid_cos", "rgb_l1_unseen")

    def row(psnr):
        return per({k: [p / (1 if k == "psnr" else 100) for p in psnr] for k in keys}, side)
    both = row([23.0, 23.5, 22.0, 22.4, 24.0, 24.2])
    inp0 = [row([21.0, 22.0, 20.5, 21.0, 22.6, 22.2]), row([21.2, 21.8, 20.3, 21.2, 22.4, 22.0])]
    inp1 = [row([21.5, 22.1, 20.0, 21.4, 22.9, 22.5]), row([21.1, 22.3, 20.6, 21.1, 22.7, 22.6])]
    info = {"steps": 10, "wall": 1.0}
    ctx = {"table2": {"Both textures": [both], "Both + inpainting": inp0}, "side": side,
           "diffusion_info": info, "diffusion_curve": [0.5, 0.1],
           "train_seeds": {"1": {"diffusion": {"info": info, "curve": [0.5, 0.2]}, "table2": {"Both + inpainting": inp1}}}}
    text = "\n".join(seeds.train_seed_lines(ctx))
    # row means over sampler seeds per training seed, front inputs (items 0, 2, 4), and their difference
    m0 = statistics.fmean([21.0, 20.5, 22.6, 21.2, 20.3, 22.4])
    m1 = statistics.fmean([21.5, 20.0, 22.9, 21.1, 20.6, 22.7])
    assert f"| front | Both + inpainting | {m0:.2f} / {m1:.2f} / {m1 - m0:+.2f} |" in text
    # paired step vs Both on sampler seed 0, back inputs (items 1, 3, 5): mean +- SE per training seed
    d0 = [22.0 - 23.5, 21.0 - 22.4, 22.2 - 24.2]
    d1 = [22.1 - 23.5, 21.4 - 22.4, 22.5 - 24.2]
    se = [statistics.stdev(d) / len(d) ** 0.5 for d in (d0, d1)]
    m = [statistics.fmean(d) for d in (d0, d1)]
    assert (f"- back: Both + inpainting - Both textures: PSNR seed 0 {m[0]:+.2f} +- {se[0]:.2f}, seed 1 {m[1]:+.2f} "
            f"+- {se[1]:.2f}, spread {max(m) - min(m):.2f}: beyond both") in text
    assert "Both + inpainting + occlusion" not in text
    # the section's Table 2 text: the seed part only when a second training seed was evaluated
    assert "#### Training-seed spread" in "\n".join(doc.table2_lines(ctx))
    del ctx["train_seeds"]
    assert "Training-seed spread" not in "\n".join(doc.table2_lines(ctx))
