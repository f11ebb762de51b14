"""Procedural identities for the synthetic people: UV textures and backgrounds.

Everything is a pure function of a `torch.Generator`, so a seed reproduces a dataset. Clothing
regions and patterns are defined on the body's rest-pose surface (the `position` map of
`zoo.render.body_maps.body_uv_maps`), not in UV coordinates, so stripes and checks run
continuously across the atlas seams, as printed cloth does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Coarse part labels (zoo.body.COARSE_PARTS).
HEAD, TORSO, UPPER_ARMS, LOWER_ARMS, UPPER_LEGS, LOWER_LEGS, FEET = range(1, 8)

SKIN_TONES = torch.tensor([
    [0.98, 0.87, 0.78], [0.94, 0.78, 0.66], [0.87, 0.69, 0.55], [0.76, 0.57, 0.42],
    [0.62, 0.44, 0.31], [0.47, 0.32, 0.22], [0.35, 0.24, 0.17],
])
HAIR_COLOURS = torch.tensor([
    [0.05, 0.04, 0.04], [0.18, 0.11, 0.07], [0.35, 0.22, 0.12], [0.62, 0.45, 0.25],
    [0.85, 0.72, 0.45], [0.55, 0.18, 0.08], [0.6, 0.6, 0.6],
])
PATTERNS = ("solid", "striped", "checked", "printed")


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _choice(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=g))


def _colour(g: torch.Generator) -> torch.Tensor:
    """A garment colour: random hue, saturation and value, biased away from pure grey."""
    hsv = torch.tensor([_uniform(g, 0, 1), _uniform(g, 0.15, 0.95), _uniform(g, 0.15, 0.95)])
    return _hsv_to_rgb(hsv)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.tolist()
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h * 6.0) % 6.0
    return v - v * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _pattern(g: torch.Generator, kind: str, pos: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(3, H, W) garment colour field of a pattern kind on surface positions `pos` (3, H, W)."""
    x, y, z = pos
    second = _colour(g)
    theta = torch.atan2(x, z)  # angle around the body's vertical axis
    if kind == "solid":
        mix = torch.zeros_like(y)
    elif kind == "striped":
        freq = _uniform(g, 12.0, 40.0)
        coord = y if torch.rand((), generator=g) < 0.7 else theta / (2 * math.pi) * 1.2
        mix = (torch.sin(2 * math.pi * freq * coord + _uniform(g, 0, 6.3)) > _uniform(g, -0.4, 0.4)).float()
    elif kind == "checked":
        freq = _uniform(g, 8.0, 24.0)
        a = torch.sin(2 * math.pi * freq * y + _uniform(g, 0, 6.3))
        b = torch.sin(2 * math.pi * freq * theta / (2 * math.pi) * 1.2 + _uniform(g, 0, 6.3))
        mix = ((a * b) > 0).float()
    elif kind == "printed":
        # A few soft blobs ("prints") placed on the surface, plus a low-frequency weave.
        mix = torch.zeros_like(y)
        for _ in range(int(torch.randint(2, 6, (), generator=g))):
            centre = torch.tensor([_uniform(g, -0.2, 0.2), _uniform(g, -0.3, 0.5), _uniform(g, -0.2, 0.2)])
            radius = _uniform(g, 0.03, 0.10)
            d2 = ((pos - centre[:, None, None]) ** 2).sum(0)
            mix = torch.maximum(mix, (d2 < radius**2).float())
    else:
        raise ValueError(f"unknown pattern {kind!r}; expected one of {PATTERNS}")
    return base[:, None, None] * (1 - mix) + second[:, None, None] * mix


def paint_texture(maps: dict[str, torch.Tensor], g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One identity's UV texture (3, H, W) in [0, 1] (0 off the atlas) and its description.

    Args:
        maps: `body_uv_maps(body, size)` of the body the texture is for.
        g: the identity's generator.
    """
    pos, parts, mask = maps["position"], maps["parts"], maps["mask"][0] > 0
    y = pos[1]
    lo, hi = y[mask].min(), y[mask].max()
    height = (y - lo) / (hi - lo)  # 0 at the soles, 1 at the top of the head

    skin = SKIN_TONES[_choice(g, len(SKIN_TONES))] * _uniform(g, 0.92, 1.05)
    texture = skin[:, None, None].expand(3, *y.shape).clone()

    # Lower garment: hips and legs, trousers (to the ankle) or shorts (to above the knee).
    lower_kind, upper_kind = PATTERNS[_choice(g, 4)], PATTERNS[_choice(g, 4)]
    waist = _uniform(g, 0.52, 0.58)
    hem = _uniform(g, 0.05, 0.08) if torch.rand((), generator=g) < 0.7 else _uniform(g, 0.33, 0.42)
    legs = (parts == UPPER_LEGS) | (parts == LOWER_LEGS) | (parts == TORSO)
    lower = legs & (height < waist) & (height > hem)
    texture = torch.where(lower, _pattern(g, lower_kind, pos, _colour(g)), texture)

    # Upper garment: torso above the waist, sleeves short or long.
    sleeve = _choice(g, 3)  # 0 sleeveless, 1 short, 2 long
    neckline = _uniform(g, 0.80, 0.84)
    upper = (parts == TORSO) & (height >= waist - 0.02) & (height < neckline)
    if sleeve >= 1:
        upper |= parts == UPPER_ARMS
    if sleeve == 2:
        hands = maps["face_hands"] & (parts == LOWER_ARMS)
        upper |= (parts == LOWER_ARMS) & ~hands
    texture = torch.where(upper, _pattern(g, upper_kind, pos, _colour(g)), texture)

    # Shoes.
    shoe = torch.tensor([_uniform(g, 0.02, 0.5)] * 3) * torch.tensor([1.0, _uniform(g, 0.8, 1.0), _uniform(g, 0.7, 1.0)])
    texture = torch.where(parts == FEET, shoe[:, None, None], texture)

    # Hair: the top and back of the head above a random hairline.
    hair_colour = HAIR_COLOURS[_choice(g, len(HAIR_COLOURS))]
    head = parts == HEAD
    head_top = height[head].max() if head.any() else torch.tensor(1.0)
    front = maps["normal"][2] > 0.3
    hairline = head_top - _uniform(g, 0.02, 0.05)
    nape = head_top - _uniform(g, 0.07, 0.13)
    hair = head & ((height > hairline) | (~front & (height > nape)))
    texture = torch.where(hair, hair_colour[:, None, None], texture)

    # Cloth and skin grain: low-amplitude, low-frequency noise, so texels are not flat.
    noise = F.interpolate(torch.randn(1, 1, 16, 16, generator=g), size=y.shape, mode="bilinear", align_corners=False)[0]
    texture = (texture * (1 + 0.06 * noise)).clamp(0, 1) * mask
    description = {"lower": lower_kind, "upper": upper_kind, "sleeve": ["none", "short", "long"][sleeve],
                   "shorts": bool(hem > 0.2)}
    return texture, description


def background(g: torch.Generator, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) in [0, 1]: a vertical gradient (sky / wall / floor) with a few blocks and noise."""
    H, W = size
    top, bottom = _colour(g), _colour(g)
    t = torch.linspace(0, 1, H)[:, None].expand(H, W)
    image = top[:, None, None] * (1 - t) + bottom[:, None, None] * t
    for _ in range(int(torch.randint(0, 5, (), generator=g))):
        h, w = int(_uniform(g, 0.1, 0.6) * H), int(_uniform(g, 0.1, 0.6) * W)
        r, c = _choice(g, max(H - h, 1)), _choice(g, max(W - w, 1))
        image[:, r:r + h, c:c + w] = _colour(g)[:, None, None]
    coarse = torch.randn(1, 3, max(H // 8, 2), max(W // 8, 2), generator=g)
    noise = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)[0]
    return (image + 0.05 * noise).clamp(0, 1)
