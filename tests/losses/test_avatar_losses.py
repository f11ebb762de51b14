"""DINAR's adversarial and reconstruction losses."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zoo.losses.adversarial import LazyR1, logistic_discriminator_loss, nonsaturating_generator_loss, r1_penalty
from zoo.losses.avatar import (
    AvatarReconstructionLoss,
    PerceptualDistance,
    avatar_item_scores,
    crop,
    crop_corners,
    dinar_loss_mask,
    mask_centroids,
    random_mask_centres,
)


class _TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).flatten(1))


def test_r1_matches_float64_per_sample_jacobian():
    torch.manual_seed(0)
    disc = _TinyD().double()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    ours = r1_penalty(disc(x), x)
    # independent: the Jacobian of each sample's logit w.r.t. that sample alone
    norms = []
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda xb: disc(xb[None])[0, 0], x[b].detach())
        norms.append(float((jac ** 2).sum()))
    assert float(ours.detach()) == pytest.approx(sum(norms) / 3, rel=1e-12)


def test_r1_matches_closed_form_and_trains_discriminator():
    w = torch.tensor([0.5, -2.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    logits = (w * x ** 2).sum(1)  # d/dx = 2 w x
    ours = r1_penalty(logits, x)
    expected = ((2 * w * x) ** 2).sum(1).mean()
    torch.testing.assert_close(ours, expected)
    ours.backward()  # create_graph: the penalty has a gradient w.r.t. the discriminator
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_lazy_r1_schedule_and_scale():
    r1 = LazyR1(weight=0.1, interval=16)
    assert [s for s in range(40) if r1.due(s)] == [0, 16, 32]
    x = torch.randn(2, 3, requires_grad=True)
    logits = (x * 3.0).sum(1)
    assert float(r1(logits, x)) == pytest.approx(0.1 / 2 * 16 * 9 * 3)
    assert not LazyR1(interval=0).due(0)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(logits, x.detach())


def test_gan_losses_closed_form():
    real, fake = torch.tensor([0.3, -1.0]), torch.tensor([2.0, 0.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert float(nonsaturating_generator_loss(fake)) == pytest.approx((sp(-2.0) + sp(0.0)) / 2)
    assert float(logistic_discriminator_loss(real, fake)) == pytest.approx(
        (sp(-0.3) + sp(1.0)) / 2 + (sp(2.0) + sp(0.0)) / 2)


def test_loss_mask_ignores_body_outside_person():
    body = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).view(1, 1, 1, 4)
    person = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).view(1, 1, 1, 4)
    assert dinar_loss_mask(body, person).flatten().tolist() == [1.0, 0.0, 1.0, 1.0]
    assert dinar_loss_mask(body, person, intersection=True).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]


def test_item_scores_match_a_float64_loop():
    g = torch.Generator().manual_seed(0)
    render, target = torch.rand(2, 3, 4, 5, generator=g) * 2 - 1, torch.rand(2, 3, 4, 5, generator=g) * 2 - 1
    mask_pred, person = torch.rand(2, 2, 4, 5, generator=g), (torch.rand(2, 1, 4, 5, generator=g) > 0.5).float()
    body = (torch.rand(2, 1, 4, 5, generator=g) > 0.3).float()
    scores = avatar_item_scores(render, mask_pred, target, person, body)
    for b in range(2):
        r, t, m, p, u = (x[b].double().flatten(1).tolist() for x in (render, target, mask_pred, person, body))
        pixels = range(len(r[0]))
        mse = sum(((r[c][i] + 1) / 2 - (t[c][i] + 1) / 2) ** 2 for c in range(3) for i in pixels) / (3 * len(pixels))
        keep = [0.0 if u[0][i] == 1 and p[0][i] == 0 else 1.0 for i in pixels]
        l2 = sum(((r[c][i] - t[c][i]) * keep[i]) ** 2 for c in range(3) for i in pixels) / (3 * len(pixels))
        inter, sums = sum(m[0][i] * p[0][i] for i in pixels), sum(m[0]) + sum(p[0])
        assert scores["psnr"][b].item() == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
        assert scores["l2"][b].item() == pytest.approx(l2, rel=1e-5)
        assert scores["dice"][b].item() == pytest.approx(1 - (2 * inter + 1) / (sums + 1), rel=1e-5)
    assert list(scores) == ["psnr", "l2", "dice"]


def test_crops_and_centres():
    mask = torch.zeros(2, 1, 10, 12)
    mask[0, 0, 2, 3] = 1
    mask[1, 0, 7:9, 9:11] = 1
    centres = random_mask_centres(mask, torch.Generator().manual_seed(0))
    assert centres[0].tolist() == [2.0, 3.0] and 7 <= centres[1, 0] <= 8 and 9 <= centres[1, 1] <= 10
    torch.testing.assert_close(mask_centroids(mask), torch.tensor([[2.0, 3.0], [7.5, 9.5]]))
    corners = crop_corners(centres, 4, 10, 12)
    assert corners[0].tolist() == [0, 1] and (corners[:, 0] <= 6).all() and (corners[:, 1] <= 8).all()
    images = torch.arange(2 * 10 * 12, dtype=torch.float32).view(2, 1, 10, 12)
    patches = crop(images, corners, 4)
    assert patches.shape == (2, 1, 4, 4)
    r, c = corners[1].tolist()
    torch.testing.assert_close(patches[1], images[1, :, r:r + 4, c:c + 4])


class _AbsDistance(nn.Module):
    """Stand-in LPIPS: per-sample mean absolute difference, (B, 1, 1, 1)."""

    def forward(self, a, b):
        return (a - b).abs().mean((1, 2, 3), keepdim=True)


def test_reconstruction_loss_weights_and_gradients():
    torch.manual_seed(0)
    render = torch.rand(2, 3, 16, 16, requires_grad=True)
    target, mask_pred = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16, requires_grad=True)
    person = torch.zeros(2, 1, 16, 16)
    person[:, :, 2:14, 4:12] = 1
    face = torch.zeros(2, 1, 16, 16)
    face[0, :, 2:5, 6:10] = 1  # only the first sample shows a face
    loss = AvatarReconstructionLoss(PerceptualDistance(_AbsDistance(), "lpips"), crop_size=8, face_crop_size=4)
    terms = loss(render, mask_pred, target, person, person, face, torch.Generator().manual_seed(1))
    expected = 2.2 * terms["l2"] + terms["perceptual"] + terms["dice"] + 0.1 * (terms["face_l2"] + terms["face_perceptual"])
    torch.testing.assert_close(terms["total"], expected)
    face_px = face[0].bool().expand(3, -1, -1)
    torch.testing.assert_close(terms["face_l2"], (render[0] - target[0])[face_px].pow(2).mean())
    terms["total"].backward()
    assert render.grad.abs().sum() > 0 and mask_pred.grad.abs().sum() > 0
    no_face = loss(render, mask_pred, target, person, person, None)
    assert "face_l2" not in no_face and "perceptual" in no_face


def test_perceptual_distance_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        PerceptualDistance(_AbsDistance(), "vgg")
