"""Image metrics: variants against float64 references, LPIPS availability, CosSim."""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from tests.metrics.ssim_reference import brute_ssim_map
from zoo.metrics import (
    ALEXNET_FILE,
    VARIANTS,
    build_image_metrics,
    lpips_status,
    reid_cosine_similarity,
    standard_psnr,
    standard_ssim,
    texformer_ssim,
    uint8_round_trip,
)
from zoo.modules.reid import SmallReID
from zoo.utils.frozen import freeze

torch.set_num_threads(1)


class StubReID(nn.Module):
    def features(self, image):
        return [image, image.square(), image[:, :2], image.mean(1, keepdim=True)]


def _pair(seed=0, size=(16, 12)):
    torch.manual_seed(seed)
    a = torch.rand(2, 3, *size, dtype=torch.float64) * 2 - 1
    b = (a + 0.4 * torch.randn_like(a)).clamp(-1, 1)
    return a, b


def test_standard_ssim_and_psnr_against_references():
    a, b = _pair()
    expected = brute_ssim_map((a + 1) / 2, (b + 1) / 2, data_range=1.0, padding="reflect").flatten(1).mean(1)
    torch.testing.assert_close(standard_ssim(a, b), expected, rtol=1e-6, atol=1e-9)
    mse = (((a + 1) / 2 - (b + 1) / 2) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(standard_psnr(a, b), 10 * torch.log10(1 / mse))
    flat = torch.zeros(1, 3, 4, 4)
    assert standard_psnr(flat, flat + 0.2).item() == pytest.approx(20.0)  # 0.1 off in [0, 1]: MSE 0.01


def test_texformer_ssim_against_reference():
    a, b = _pair(1)
    expected = brute_ssim_map(a, b, data_range=1.0, padding="zero").flatten(1).mean(1)
    torch.testing.assert_close(texformer_ssim(a, b), expected, rtol=1e-6, atol=1e-9)


def test_uint8_round_trip_truncates_like_numpy():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5])
    # (x + 1) / 2 * 255 -> 0, 0.1275, 127.5, 254.87, 255, clamp -> 255; floor; back to [-1, 1]
    expected = torch.tensor([0.0, 0.0, 127.0, 254.0, 255.0, 255.0]) / 255 * 2 - 1
    torch.testing.assert_close(uint8_round_trip(x), expected)
    torch.testing.assert_close(uint8_round_trip(torch.tensor([0.0, 0.5, 1.0]), low=0.0),
                               torch.tensor([0.0, 127 / 255, 1.0]))


def test_cossim_against_brute_force():
    a, b = _pair(2, (4, 3))
    got = reid_cosine_similarity(StubReID().eval(), a, b)
    for n in range(2):
        sims = []
        for fa, fb in zip(StubReID().features(a[n:n + 1]), StubReID().features(b[n:n + 1])):
            u, v = [float(t) for t in fa.flatten()], [float(t) for t in fb.flatten()]
            sims.append(sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v)))
        assert got[n].item() == pytest.approx(sum(sims) / 4, rel=1e-6)  # torchmetrics works in float32
    assert reid_cosine_similarity(StubReID().eval(), a, a).tolist() == pytest.approx([1.0, 1.0])


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ValueError, match="known variants: standard, texformer"):
        build_image_metrics("paper")
    assert VARIANTS == ("standard", "texformer")


def test_lpips_unavailable_without_backbone_weights(tmp_path):
    assert lpips_status(tmp_path).startswith("unavailable")
    assert str(tmp_path / "checkpoints" / ALEXNET_FILE) in lpips_status(tmp_path)
    metrics = build_image_metrics("standard", hub_dir=tmp_path)
    assert "lpips" in metrics.unavailable and "never downloads" in metrics.unavailable["lpips"]
    a, b = _pair(size=(16, 16))
    out = metrics(a.float(), b.float())
    assert set(out) == {"ssim", "psnr"} and set(metrics.names) == {"ssim", "psnr"}
    assert not any(tmp_path.rglob("*.pth"))  # nothing was fetched


def test_alexnet_file_name_is_torchvision_s():
    from torchvision.models import AlexNet_Weights

    assert os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url) == ALEXNET_FILE


def test_lpips_loads_backbone_strictly_from_the_cache_file(tmp_path):
    # A stand-in file with torchvision's AlexNet layout (random values) checks the loading path only.
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = alexnet(weights=None).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / ALEXNET_FILE)
    assert lpips_status(tmp_path) == "ok"
    metrics = build_image_metrics("standard", hub_dir=tmp_path)
    loaded = metrics.lpips.net.state_dict()
    torch.testing.assert_close(loaded["slice2.3.weight"], state["features.3.weight"])
    torch.testing.assert_close(loaded["slice5.10.bias"], state["features.10.bias"])
    a, b = _pair(size=(32, 32))
    out = metrics(a.float(), b.float())
    assert out["lpips"].shape == (2,) and torch.isfinite(out["lpips"]).all()
    assert metrics(a.float(), a.float())["lpips"].abs().max() < 1e-6
    del state["features.8.weight"]
    torch.save(state, tmp_path / "checkpoints" / ALEXNET_FILE)
    with pytest.raises(KeyError, match="features.8.weight"):
        build_image_metrics("standard", hub_dir=tmp_path)


def test_texformer_variant_composition(tmp_path):
    torch.manual_seed(0)
    render, real = (torch.rand(2, 3, 16, 12) * 2.2 - 1.1 for _ in range(2))
    mask = (torch.rand(2, 1, 16, 12) > 0.4).float()
    background = torch.rand(2, 3, 16, 12) * 2 - 1
    reid = StubReID().eval()
    metrics = build_image_metrics("texformer", reid=reid, hub_dir=tmp_path)
    out = metrics(render, real, mask, background)
    r, t = uint8_round_trip(render), uint8_round_trip(real)
    torch.testing.assert_close(out["ssim"], texformer_ssim(r * mask, t * mask))
    torch.testing.assert_close(out["cossim"], reid_cosine_similarity(reid, r * mask + background * (1 - mask), t))
    with pytest.raises(ValueError, match="render mask"):
        metrics(render, real)
    with pytest.raises(ValueError, match="composite"):
        build_image_metrics("standard", reid=reid, hub_dir=tmp_path)(render, real, mask)


def test_metrics_require_a_frozen_reid(tmp_path):
    reid = SmallReID(num_classes=2, widths=(4, 4, 4, 4), embedding_dim=4, input_size=(16, 8))
    with pytest.raises(ValueError, match="train mode"):
        build_image_metrics("standard", reid=reid, hub_dir=tmp_path)
    metrics = build_image_metrics("standard", reid=freeze(reid), hub_dir=tmp_path)
    metrics.train()
    assert not reid.training
    a, b = _pair(size=(16, 12))
    out = metrics(a.float(), b.float())
    assert out["cossim"].shape == (2,) and (out["cossim"] <= 1 + 1e-6).all()
