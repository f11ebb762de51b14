"""ReID perceptual (eq. 2) and part-style (eq. 3) losses against hand / brute-force values."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zoo.losses import (
    PartStyleLoss,
    ReIDPerceptualLoss,
    part_style_loss,
    part_style_loss_from_features,
    reid_perceptual_loss,
)
from zoo.modules.reid import SmallReID
from zoo.utils.frozen import freeze

torch.set_num_threads(1)


class StubReID(nn.Module):
    """No parameters, known features: layer1 = the image itself."""

    def features(self, image):
        return [image, 2 * image + 1, image.square(), image[:, :1]]


def _brute_reid_loss(render, image):
    """Float64 loops: per layer, normalise each sample's flattened features, average the squared diffs."""
    total = 0.0
    for fr, fi in zip(StubReID().features(render), StubReID().features(image)):
        sq = 0.0
        rows = fr.shape[0]
        for b in range(rows):
            a = [float(v) for v in fr[b].flatten()]
            c = [float(v) for v in fi[b].flatten()]
            na, nc = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in c))
            sq += sum((x / na - y / nc) ** 2 for x, y in zip(a, c))
        total += sq / (rows * len(a))
    return total


def test_reid_perceptual_loss_hand_value():
    # One layer by hand: render features (1, 0) and image (1, 1) normalise to (1, 0) and (0.7071, 0.7071).
    class OneLayer(nn.Module):
        def features(self, image):
            return [image[:, :1, :1, :2]]

    render = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    render[0, 0, 0, 0] = 1.0
    image = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    image[0, 0, 0] = 1.0
    r = 1 / math.sqrt(2)
    expected = ((1 - r) ** 2 + r ** 2) / 2
    got = reid_perceptual_loss(OneLayer().eval(), render, image, layer_weights=(1.0,))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_reid_perceptual_loss_brute_force():
    torch.manual_seed(0)
    render = torch.rand(2, 3, 2, 2, dtype=torch.float64) * 2 - 1
    image = torch.rand(2, 3, 2, 2, dtype=torch.float64) * 2 - 1
    got = reid_perceptual_loss(StubReID().eval(), render, image)
    assert got.item() == pytest.approx(_brute_reid_loss(render, image), rel=1e-10)
    weighted = ReIDPerceptualLoss(StubReID())(render, image)
    assert weighted.item() == pytest.approx(5000 * got.item(), rel=1e-10)


def test_reid_perceptual_loss_gradients_with_frozen_small_reid():
    torch.manual_seed(0)
    reid = SmallReID(num_classes=3, widths=(4, 4, 4, 4), embedding_dim=4, input_size=(32, 16))
    loss_fn = ReIDPerceptualLoss(reid)
    loss_fn.train()  # a LightningModule calling train() must not un-freeze the ReID network
    assert not reid.training and not any(p.requires_grad for p in reid.parameters())
    render = (torch.rand(2, 3, 32, 16) * 2 - 1).requires_grad_()
    loss = loss_fn(render, torch.rand(2, 3, 32, 16) * 2 - 1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(render.grad).all() and render.grad.abs().sum() > 0
    assert all(p.grad is None for p in reid.parameters())


def test_unfrozen_reid_is_rejected():
    reid = SmallReID(num_classes=3, widths=(4, 4, 4, 4), embedding_dim=4, input_size=(32, 16))
    image = torch.zeros(1, 3, 32, 16)
    with pytest.raises(ValueError, match="train mode"):
        reid_perceptual_loss(reid, image, image)
    with pytest.raises(ValueError, match="trainable parameters"):
        part_style_loss(reid.eval(), image, torch.zeros(1, 32, 16, dtype=torch.long), image,
                        torch.zeros(1, 32, 16, dtype=torch.long))
    freeze(reid)
    assert torch.isfinite(reid_perceptual_loss(reid, image, image))


# ---------------------------------------------------------------------------------------------


RENDER_F = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]], dtype=torch.float64)
IMAGE_F = torch.tensor([[[[2.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
RENDER_P = torch.tensor([[[1, 1], [0, 2]]])
IMAGE_P = torch.tensor([[[1, 0], [1, 1]]])


def test_part_style_hand_value():
    # Part 1, render: texels (0,0), (0,1): f = [[1, 2], [0, 1]], A = 2 -> G = [[5, 2], [2, 1]] / 2.
    # Part 1, image: texels (0,0), (1,0), (1,1): f = [[2, 1, 1], [1, 0, 0]], A = 3 -> G = [[6, 2], [2, 1]] / 3.
    # Difference [[1/2, 1/3], [1/3, 1/6]]; mean of squares = (1/4 + 1/9 + 1/9 + 1/36) / 4 = 1/8.
    # Part 2 is absent from the image: it does not count.
    got = part_style_loss_from_features(RENDER_F, RENDER_P, IMAGE_F, IMAGE_P, num_parts=2)
    assert got.item() == pytest.approx(1 / 8, rel=1e-12)
    # A second sample where part 1 does not count contributes zero but stays in the batch mean.
    two = part_style_loss_from_features(RENDER_F.repeat(2, 1, 1, 1), RENDER_P.repeat(2, 1, 1),
                                        IMAGE_F.repeat(2, 1, 1, 1), torch.cat([IMAGE_P, torch.zeros_like(IMAGE_P)]),
                                        num_parts=2)
    assert two.item() == pytest.approx(1 / 16, rel=1e-12)


def test_part_style_coverage_threshold():
    feats = torch.arange(256, dtype=torch.float64).view(1, 1, 16, 16) / 256
    parts = torch.ones(1, 16, 16, dtype=torch.long)
    render_parts = torch.zeros(1, 16, 16, dtype=torch.long)
    render_parts[0, 0, 0] = 1  # 1 / 256 = 0.39% < 0.4%: part 1 does not count
    assert part_style_loss_from_features(feats, render_parts, feats, parts).item() == 0.0
    render_parts[0, 0, 1] = 1  # 0.78%: counts
    got = part_style_loss_from_features(feats, render_parts, feats, parts).item()
    g_render = (feats[0, 0, 0, 0] ** 2 + feats[0, 0, 0, 1] ** 2) / 2
    g_image = (feats ** 2).sum() / 256
    assert got == pytest.approx(float((g_render - g_image) ** 2), rel=1e-12)


def test_part_style_labels_are_resized_nearest_to_the_features():
    # 4x4 labels, 2x2 features: nearest picks label rows/cols 0 and 2.
    labels = torch.tensor([[[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]])
    small = labels[:, ::2, ::2]
    a = part_style_loss_from_features(RENDER_F, labels, IMAGE_F, IMAGE_P.repeat_interleave(2, 1).repeat_interleave(2, 2),
                                      num_parts=1)
    b = part_style_loss_from_features(RENDER_F, small, IMAGE_F, IMAGE_P, num_parts=1)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_part_style_through_reid_and_gradients():
    torch.manual_seed(0)
    render = (torch.rand(1, 3, 2, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    image = torch.rand(1, 3, 2, 2, dtype=torch.float64) * 2 - 1
    module = PartStyleLoss(StubReID())
    got = module(render, RENDER_P, image, IMAGE_P)
    expected = 0.4 * part_style_loss_from_features(render.detach(), RENDER_P, image, IMAGE_P)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    got.backward()
    assert torch.isfinite(render.grad).all() and render.grad.abs().sum() > 0


def test_part_style_rejects_float_labels():
    with pytest.raises(ValueError, match="integer part labels"):
        part_style_loss_from_features(RENDER_F, RENDER_P.double(), IMAGE_F, IMAGE_P)
