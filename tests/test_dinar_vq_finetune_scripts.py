"""scripts/dinar_vq_finetune_eval.py's BatchNorm probe and scripts/dinar_vq_finetune_doc.py's numbers and
block placement, on tiny inputs against independent references (float64 / scipy)."""
from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from dinar_vq_finetune_doc import AFTER, BEGIN, END, READING, paired, write_doc  # noqa: E402
from dinar_vq_finetune_eval import recalibrated  # noqa: E402

from zoo.modules.dinar import DinarAvatarNet  # noqa: E402
from zoo.modules.neural_renderer import NeuralRenderer  # noqa: E402


def _batch(g: torch.Generator, n: int = 3, side: int = 8):
    tex = torch.randn(n, 5, side, side, generator=g)
    uv = torch.rand(n, side, side, 2, generator=g) * 2 - 1
    return tex, uv


def test_recalibrated_statistics_are_the_average_of_batch_statistics():
    torch.manual_seed(0)
    net = DinarAvatarNet(NeuralRenderer(texture_channels=5, uv_features=2, mask_features=2, base_channels=4,
                                        n_downsampling=1, n_blocks=1, features=4)).eval()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    batches = [_batch(g) for _ in range(3)]
    # reference: the inputs of the first BatchNorm2d, captured in train mode, reduced in float64
    probe = net.renderer.ntex_preproc[0]
    seen = []
    handle = probe.register_forward_hook(lambda m, i, o: seen.append(o.detach().double()))
    out = recalibrated(net, batches)
    handle.remove()
    assert len(seen) == len(batches)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen]).mean(0)
    variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in seen]).mean(0)
    bn = out.renderer.ntex_preproc[1]
    assert isinstance(bn, nn.BatchNorm2d) and not out.training and bn.momentum == 0.1
    torch.testing.assert_close(bn.running_mean.double(), means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), variances, rtol=1e-5, atol=1e-6)
    # weights unchanged, the input network untouched
    for k, v in out.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, original[k]), k
    for k, v in net.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_recalibrated_refuses_a_renderer_without_batch_norm():
    net = DinarAvatarNet(NeuralRenderer(texture_channels=5, uv_features=2, mask_features=2, base_channels=4,
                                        n_downsampling=1, n_blocks=1, features=4, norm="instance"))
    with pytest.raises(SystemExit, match="no BatchNorm2d"):
        recalibrated(net, [_batch(torch.Generator().manual_seed(0))])


def _eval_json(tmp_path: Path, name: str, p: float, before: np.ndarray, after: np.ndarray) -> Path:
    side = ["front", "back"] * (len(before) // 2)
    ckpt = tmp_path / f"{name}.ckpt"
    ckpt.write_bytes(b"")

    def row(values):
        per = {"psnr": values.tolist()}
        return [{w: {"psnr": float(np.mean([v for v, s in zip(values, side) if s == w]))} for w in ("front", "back")}
                | {"per_item": per}]

    data = {"finetuned": str(ckpt), "work": "/stage2", "items": len(before) // 2, "seeds": 1, "bn_recalibrate": 0,
            "side": side, "settings": {"vq_branch_probability": p, "trainable": "renderer", "lr": 4e-4, "disc_lr": 8e-5,
                                       "init_from": "stage1.ckpt", "vqgan": "vqgan", "global_step": 3200},
            "results": {"before": {"Both textures": row(before)}, "after": {"Both textures": row(after)}}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_paired_difference_and_standard_error_match_scipy(tmp_path):
    rng = np.random.default_rng(0)
    before, after = rng.normal(22, 1, 8), rng.normal(22.5, 1, 8)
    data = json.loads(_eval_json(tmp_path, "a", 1.0, before, after).read_text())
    for k, w in enumerate(("front", "back")):
        diff = (after - before)[k::2]
        mean, se = paired(data, "after", "Both textures", w)
        assert mean == pytest.approx(diff.mean()) and se == pytest.approx(stats.sem(diff))


def test_doc_block_goes_after_the_dinar_complete_section_and_keeps_the_reading(tmp_path):
    rng = np.random.default_rng(1)
    before = rng.normal(22, 1, 4)
    evals = [_eval_json(tmp_path, n, p, before, before + d) for n, p, d in (("p1", 1.0, -1.0), ("p05", 0.5, 0.5))]
    doc = tmp_path / "results.md"
    doc.write_text(f"# title\n\n{AFTER}\n\n## Not reached here\n\n- x\n")
    args = Namespace(evals=evals, secondary=[], drivers=[], doc=doc)
    write_doc(args)
    text = doc.read_text()
    assert text.index(AFTER) < text.index(BEGIN) < text.index(END) < text.index("## Not reached here")
    assert "| Both textures | " in text and "after, p = 0.5" in text
    text = text.replace(READING + "\n", READING + "\nhand-written words\n")
    doc.write_text(text)
    write_doc(args)
    again = doc.read_text()
    assert again.count(BEGIN) == 1 and "hand-written words" in again and again.endswith("## Not reached here\n\n- x\n")
