"""NovelViewMetrics: every ordered pair of views of one person, checked against a brute-force loop."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.metrics import NovelViewMetrics, build_image_metrics
from zoo.metrics.image import standard_psnr, standard_ssim
from zoo.render import composite, sample_texture

H, W, T = 16, 8, 8


def views(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"texture": torch.rand(n, 3, T, T, generator=g) * 2 - 1,
            "image": torch.rand(n, 3, H, W, generator=g) * 2 - 1,
            "uv": torch.rand(n, H, W, 2, generator=g) * 1.8 - 0.9,
            "mask": (torch.rand(n, 1, H, W, generator=g) > 0.3).float(),
            "background": torch.rand(n, 3, H, W, generator=g) * 2 - 1}


def brute_force(v: dict, people: list[int]) -> dict[str, float]:
    ssim, psnr = [], []
    for i in range(len(people)):
        for j in range(len(people)):
            if i == j or people[i] != people[j]:
                continue
            render = composite(sample_texture(v["texture"][i:i + 1], v["uv"][j:j + 1], v["mask"][j:j + 1]),
                               v["mask"][j:j + 1], v["image"][j:j + 1])
            ssim.append(float(standard_ssim(render, v["image"][j:j + 1])))
            psnr.append(float(standard_psnr(render, v["image"][j:j + 1])))
    return {"ssim": sum(ssim) / len(ssim), "psnr": sum(psnr) / len(psnr), "pairs": len(ssim)}


def test_all_ordered_pairs_of_each_person_in_any_batching():
    v = views(6)
    people = [3, 3, 3, 7, 7, 9]  # 6 + 2 pairs; person 9 has a single view and gives none
    expected = brute_force(v, people)
    assert expected["pairs"] == 8
    metric = NovelViewMetrics(build_image_metrics("standard", use_lpips=False))
    for chunk in ([4, 0, 2], [5, 1], [3]):  # views arrive shuffled and split over batches
        idx = torch.tensor(chunk)
        metric.update(v["texture"][idx], v["image"][idx], v["uv"][idx], v["mask"][idx],
                      torch.tensor(people)[idx], idx + 1000, v["background"][idx])
    metric.update(v["texture"][:1], v["image"][:1], v["uv"][:1], v["mask"][:1], torch.tensor([3]),
                  torch.tensor([1000]))  # a repeated view id counts once
    out = metric.compute()
    assert out["pairs"].item() == 8
    assert out["ssim"].item() == pytest.approx(expected["ssim"], abs=1e-5)
    assert out["psnr"].item() == pytest.approx(expected["psnr"], abs=1e-4)
    metric.reset()
    assert metric.compute()["pairs"].item() == 0


def test_texformer_variant_reads_the_protocol_background_and_requires_it():
    class SpyReID(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)
            self.seen = []

        def features(self, image):
            self.seen.append(image.clone())
            return [self.conv(image)] * 4

    reid = SpyReID().eval().requires_grad_(False)
    metrics = build_image_metrics("texformer", reid=reid, use_lpips=False)
    v = views(2)
    v["mask"] = torch.zeros(2, 1, H, W)
    v["mask"][..., 4:12, 2:6] = 1.0
    metric = NovelViewMetrics(metrics)
    metric.update(v["texture"], v["image"], v["uv"], v["mask"], torch.tensor([0, 0]), torch.tensor([0, 1]),
                  v["background"])
    out = metric.compute()
    assert out["pairs"].item() == 2 and math.isfinite(out["cossim"].item())
    outside = (v["mask"] == 0).expand(-1, 3, -1, -1)
    # pair (0 -> 1) then (1 -> 0): the ReID sees render over view j's background (uint8-rounded), image j
    shown = torch.cat([reid.seen[0], reid.seen[2]])
    target = v["background"][[1, 0]]
    assert torch.allclose(shown[outside[[1, 0]]], target[outside[[1, 0]]], atol=1 / 127)
    assert not torch.allclose(shown[outside[[1, 0]]], v["image"][[1, 0]][outside[[1, 0]]], atol=0.1)
    bare = NovelViewMetrics(metrics)
    bare.update(v["texture"], v["image"], v["uv"], v["mask"], torch.tensor([0, 0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="background"):
        bare.compute()
