"""DINAR's texture layout of complete and partial textures (what its VQGAN encodes), texel by texel."""
from __future__ import annotations

import torch

from zoo.render import complete_texture_layout, partial_texture_layout


def test_layouts_match_a_texel_loop():
    g = torch.Generator().manual_seed(0)
    texture = torch.rand(2, 3, 4, 5, generator=g) * 2 - 1
    atlas = (torch.rand(2, 1, 4, 5, generator=g) > 0.3).float()
    known = (torch.rand(2, 1, 4, 5, generator=g) > 0.5).float() * atlas
    gap = (torch.rand(2, 1, 4, 5, generator=g) > 0.7).float() * (1 - known)
    complete = complete_texture_layout(texture, atlas)
    partial = partial_texture_layout(texture, known, gap)
    assert complete.shape == partial.shape == (2, 5, 4, 5)
    for b in range(2):
        for y in range(4):
            for x in range(5):
                a, k, f = bool(atlas[b, 0, y, x]), bool(known[b, 0, y, x]), bool(gap[b, 0, y, x])
                assert complete[b, :3, y, x].tolist() == texture[b, :, y, x].tolist()
                assert complete[b, 3:, y, x].tolist() == [float(a), 0.0]
                closed = k or f
                expected = texture[b, :, y, x] if closed else torch.zeros(3)
                assert partial[b, :3, y, x].tolist() == expected.tolist()
                assert partial[b, 3:, y, x].tolist() == [float(closed), float(f)]
    assert torch.equal(complete_texture_layout(texture)[:, 3], torch.ones(2, 4, 5))  # no atlas: every texel
