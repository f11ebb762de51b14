"""DINAR's soft paste weight (`soft_paste_mask`) against SciPy's morphology and box filter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from zoo.render import soft_paste_mask


def dinar_reference(known: np.ndarray, atlas: np.ndarray | None) -> np.ndarray:
    """DINAR's decode(copy_input_part=True) in test phase, in float64 with SciPy: cv2.erode's default
    border leaves edges uneroded (constant border at the maximum), cv2.blur reflects without
    repeating the edge ("mirror" in SciPy)."""
    off = np.zeros_like(known) if atlas is None else 1.0 - atlas
    mask = np.clip(known + off, 0, 1)
    eroded = ndimage.grey_erosion(mask, size=(3, 3), mode="constant", cval=1.0)
    blurred = ndimage.uniform_filter(eroded, size=3, mode="mirror")
    return np.clip(blurred - off, 0, 1)


@pytest.mark.parametrize("with_atlas", [False, True])
def test_soft_paste_mask_matches_dinar_erode_then_blur(with_atlas):
    g = torch.Generator().manual_seed(0)
    known = (torch.rand(3, 1, 13, 11, generator=g) < 0.6).double()
    known[0, 0, 2:9, 1:8] = 1  # a solid block: weight 1 inside, soft on its rim
    known[0, 0, 1] = 0
    atlas = (torch.rand(1, 1, 13, 11, generator=g) < 0.85).double() if with_atlas else None
    if atlas is not None:
        atlas[..., :10, :9] = 1
    out = soft_paste_mask(known, atlas)
    for b in range(3):
        want = dinar_reference(known[b, 0].numpy(), None if atlas is None else atlas[0, 0].numpy())
        np.testing.assert_allclose(out[b, 0].numpy(), want, atol=1e-12)
    assert out[0, 0, 4, 4] == 1 and 0 < out[0, 0, 2, 4] < 1
    unknown = known < 0.5
    assert out[unknown].eq(0).all(), "an unknown texel never takes the (zero) partial colour"


def test_soft_paste_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="known_mask"):
        soft_paste_mask(torch.ones(2, 3, 4, 4))
    with pytest.raises(ValueError, match="atlas_mask"):
        soft_paste_mask(torch.ones(2, 1, 4, 4), torch.ones(1, 1, 5, 4))
