"""The one-image DINAR pipeline as a module: the known region through every stage, the stages'
order and timings, and the settings it refuses."""
from __future__ import annotations

import logging

import pytest
import torch

from tests.inference.tiny_dinar import CHANNELS, tiny_networks
from zoo.inference.dinar_pipeline import STAGES, DinarOneImageAvatar
from zoo.pretrained import load_pretrained

S, T = 32, 16


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, S, S, generator=g) * 2 - 1
    person = torch.zeros(batch, 1, S, S)
    person[..., 4:28, 8:24] = 1.0
    ys, xs = torch.meshgrid(torch.linspace(-0.97, 0.97, 24), torch.linspace(-0.97, 0.97, 16), indexing="ij")
    uv = torch.full((batch, S, S, 2), -2.0)
    uv[:, 4:28, 8:24] = torch.stack([xs, ys], dim=-1)
    uv[:, 4:28, 8:24, 0] *= 0.5  # the view sees the left half of the texture
    image = torch.where(person > 0.5, image, torch.full_like(image, -1.0))
    cosines = torch.linspace(1.0, -1.0, T).view(1, 1, 1, T).expand(batch, 1, T, T).contiguous()
    occlusion = torch.zeros(batch, 1, S, S)
    occlusion[:, :, 10:16, 8:24] = 1.0
    return image, person, uv, cosines, occlusion


def _pipeline(**kw) -> DinarOneImageAvatar:
    nets = tiny_networks(S, T)
    settings = dict(sampling_steps=4, rgb_erode=3, finetune={"perceptual_weight": 0.0, "lr": 0.05})
    settings.update(kw)
    return DinarOneImageAvatar(**nets, **settings).eval()


def test_known_region_holds_exactly_through_the_whole_pipeline(caplog):
    pipe = _pipeline(finetune_steps=3, known_paste="hard")
    image, person, uv, cosines, occlusion = _inputs()
    with caplog.at_level(logging.INFO, logger="zoo.inference.dinar_pipeline"):
        out = pipe(image, person, uv, cosines, occlusion, back_visible=False, generator=torch.Generator().manual_seed(0))
    known = out.known > 0.5
    assert out.texture.shape == (2, CHANNELS, T, T)
    assert known.any() and (~known).any()
    # eq. 6: every channel of T^j where B_fill, after diffusion, decoding and paste
    assert torch.equal(torch.where(known, out.inpainted, 0), torch.where(known, out.single_view, 0))
    assert not torch.equal(torch.where(~known, out.inpainted, 0), torch.where(~known, out.single_view, 0))
    # fine-tuning: only the RGB channels of known texels move, and only where the mask allows
    assert torch.equal(out.texture[:, :-5], out.inpainted[:, :-5]) and torch.equal(out.texture[:, -2:], out.inpainted[:, -2:])
    from zoo.inference.dinar_finetune import finetune_gradient_mask

    allowed = known & (finetune_gradient_mask(cosines) > 0)
    changed = (out.texture[:, -5:-2] != out.inpainted[:, -5:-2]).any(dim=1, keepdim=True)
    assert changed.any() and not (changed & ~allowed).any()
    # the known texels the mask blocks hold exactly from the single-view texture to the end
    blocked = known & ~allowed
    assert blocked.any()
    assert torch.equal(torch.where(blocked, out.texture, 0), torch.where(blocked, out.single_view, 0))
    assert set(out.seconds) == set(STAGES) and all(v >= 0 for v in out.seconds.values())
    logged = [r.getMessage() for r in caplog.records]
    for stage in STAGES:
        assert any(m.startswith(f"{stage}: ") and m.endswith(" s") for m in logged), stage


def test_soft_paste_keeps_the_inside_of_the_known_region_exactly():
    from zoo.render import soft_paste_mask

    image, person, uv, cosines, occlusion = _inputs(batch=1)
    atlas = torch.ones(1, 1, T, T)
    atlas[..., :, -2:] = 0.0
    soft = _pipeline(finetune_steps=0)(image, person, uv, cosines, occlusion, atlas=atlas,
                                       generator=torch.Generator().manual_seed(0))
    hard = _pipeline(finetune_steps=0, known_paste="hard")(image, person, uv, cosines, occlusion, atlas=atlas,
                                                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(soft.single_view, hard.single_view)
    w = soft_paste_mask(soft.known, atlas)
    inside, unknown = w == 1, soft.known < 0.5
    rim = (w < 1) & ~unknown
    assert inside.any() and rim.any()
    assert torch.equal(torch.where(inside, soft.inpainted, 0), torch.where(inside, soft.single_view, 0))
    assert torch.equal(torch.where(unknown, soft.inpainted, 0), torch.where(unknown, hard.inpainted, 0))
    assert not torch.equal(torch.where(rim, soft.inpainted, 0), torch.where(rim, hard.inpainted, 0))


def test_occluded_pixels_are_not_sampled():
    pipe = _pipeline(finetune_steps=0)
    image, person, uv, cosines, occlusion = _inputs(batch=1)
    with_detector = pipe.single_view_texture(image, person, uv, occlusion, torch.Generator().manual_seed(0))
    without = pipe.single_view_texture(image, person, uv, None, torch.Generator().manual_seed(0))
    assert torch.equal(with_detector[:, :-5], without[:, :-5])  # generated channels: same noise, same texture
    hit = lambda t: (t[:, -2] - t[:, -1]).sum()  # noqa: E731  texels a pixel landed on
    assert hit(with_detector) < hit(without) and with_detector[:, -2].sum() < without[:, -2].sum()


def test_same_generator_same_avatar_and_save_load_round_trip(tmp_path):
    pipe = _pipeline(finetune_steps=2)
    image, person, uv, cosines, occlusion = _inputs(batch=1)
    a = pipe(image, person, uv, cosines, occlusion, True, generator=torch.Generator().manual_seed(3)).texture
    loaded = load_pretrained(pipe.save_pretrained(tmp_path / "pipe")).eval()
    b = loaded(image, person, uv, cosines, occlusion, True, generator=torch.Generator().manual_seed(3)).texture
    assert isinstance(loaded, DinarOneImageAvatar) and torch.equal(a, b)


def test_settings_are_checked():
    nets = tiny_networks(S, T)
    with pytest.raises(ValueError, match="unknown finetune settings"):
        DinarOneImageAvatar(**nets, finetune={"stepz": 3})
    with pytest.raises(ValueError, match="needs the stage-1 discriminator"):
        DinarOneImageAvatar(**{**nets, "discriminator": None})
    DinarOneImageAvatar(**{**nets, "discriminator": None}, finetune={"adversarial_weight": 0.0})
    with pytest.raises(ValueError, match="denoiser must map"):
        other = type(nets["vqgan"])(in_channels=CHANNELS, base_channels=8, channel_multipliers=[1, 2],
                                    num_res_blocks=1, norm_groups=4, latent_channels=3, code_dim=4, num_codes=16)
        DinarOneImageAvatar(**{**nets, "vqgan": other})
    pipe = DinarOneImageAvatar(**nets, sampling_steps=2)
    image, person, uv, cosines, occlusion = _inputs(batch=1)
    with pytest.raises(ValueError, match="perceptual network"):
        pipe(image, person, uv, cosines, occlusion)


def test_view_inputs_resize_the_camera_with_the_crop():
    """A square facing the camera, fitted on a 64 px crop: its UV render at the encoder's 32 px equals
    rasterising with the 32 px camera written down directly."""
    from zoo.inference.dinar_pipeline import view_inputs
    from zoo.render import intrinsics, rasterize, render_uv

    verts = torch.tensor([[-0.5, -0.5, 3.0], [0.5, -0.5, 3.0], [0.5, 0.5, 3.0], [-0.5, 0.5, 3.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    corner_uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])[faces]
    crop = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 64, 64)
    mask[:, 22:42, 22:42] = 1.0
    out = view_inputs(crop, mask, verts, intrinsics(60.0, (64, 64))[0], faces, corner_uvs, 32, 8)
    uv, uv_mask = render_uv(rasterize(verts[None], faces, intrinsics(30.0, (32, 32)), (32, 32)), corner_uvs)
    assert torch.equal(out["uv"], uv)
    assert out["person_mask"].shape == (1, 1, 32, 32) and out["person_mask"][0, 0, 11:21, 11:21].eq(1).all()
    assert out["person_mask"].sum() == 100 and torch.equal(out["occlusion"], torch.zeros(1, 1, 32, 32))
    outside = out["person_mask"] < 0.5
    assert torch.equal(out["image"][outside.expand(1, 3, 32, 32)], torch.full((3 * (1024 - 100),), -1.0))
    assert out["cosines"].shape == (1, 1, 8, 8)


def test_back_visible_rule_against_a_float64_loop():
    from zoo.inference.dinar_finetune import back_visible

    g = torch.Generator().manual_seed(3)
    cosines = torch.rand(5, 1, T, T, generator=g) * 2 - 1
    cosines[0] = 0.4  # a view facing the camera
    cosines[1] = -0.4  # a view from behind
    face = torch.zeros(T, T, dtype=torch.bool)
    face[2:5, 6:11] = True
    expected = []
    for item in cosines.double():
        values = [float(item[0, r, c]) for r in range(T) for c in range(T) if face[r, c]]
        expected.append(sum(values) / len(values) <= 0)
    assert back_visible(cosines, face).tolist() == expected
    assert expected[:2] == [False, True]
    assert back_visible(cosines, face[None, None].float()).tolist() == expected
    with pytest.raises(ValueError, match="no face texel"):
        back_visible(cosines, torch.zeros(T, T))
    with pytest.raises(ValueError, match="does not fit"):
        back_visible(cosines, torch.ones(T + 1, T + 1))


def test_the_fine_tuning_schedule_follows_the_view_when_back_visible_is_not_given(caplog):
    image, person, uv, _, occlusion = _inputs()
    face = torch.zeros(1, 1, T, T)
    face[..., 2:6, 3:8] = 1.0
    cosines = torch.full((2, 1, T, T), 0.8)
    cosines[1] = -0.8  # the second input shows the back
    pipe = _pipeline(finetune_steps=None)
    with pytest.raises(ValueError, match="face_mask"):
        pipe(image, person, uv, cosines, occlusion)
    with caplog.at_level(logging.INFO, logger="zoo.inference.dinar_pipeline"):
        out = pipe(image, person, uv, cosines, occlusion, generator=torch.Generator().manual_seed(0), face_mask=face)
    assert out.back_visible == [False, True]
    assert [len(steps) for steps in out.finetune_losses] == [64, 128]  # DINAR's 64, 128 when the back is visible
    assert any("back visible" in r.getMessage() for r in caplog.records)
    forced = pipe(image, person, uv, cosines, occlusion, back_visible=False, generator=torch.Generator().manual_seed(0))
    assert forced.back_visible == [False, False] and [len(s) for s in forced.finetune_losses] == [64, 64]
    # without fine-tuning nothing needs deciding
    assert _pipeline(finetune_steps=0)(image, person, uv, cosines, occlusion).back_visible == []
