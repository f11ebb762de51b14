"""UV-space operations: rasterising the atlas itself, and scattering image pixels into UV.

`rasterize_uv_atlas` reuses the exact screen rasteriser with each face laid out at its UV
corners (an orthographic view of the atlas), so atlas masks and UV-space attribute maps
(e.g. the rest-pose position code of the Texformer query) share its exactness.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.render.rasterize import Fragments, rasterize
from zoo.render.shading import interpolate


def rasterize_uv_atlas(corner_uvs: torch.Tensor, size: int | tuple[int, int]) -> Fragments:
    """Rasterise the UV layout: texel (i, j) gets the face whose UV triangle covers its centre.

    Args:
        corner_uvs: (F, 3, 2) per-corner UV in [0, 1], u right, v down.
        size: texture size, an int (square) or (H, W).

    Returns:
        `Fragments` of batch 1 whose barycentrics are in UV space (affine, Z = 1).
    """
    H, W = (size, size) if isinstance(size, int) else size
    if corner_uvs.dim() != 3 or corner_uvs.shape[1:] != (3, 2):
        raise ValueError(f"corner_uvs must be (F, 3, 2), got {tuple(corner_uvs.shape)}")
    n = corner_uvs.shape[0]
    uv = corner_uvs.detach().double().reshape(-1, 2)
    # Texel centres are at (j + 0.5) / W in UV: pixel coordinate = u * W - 0.5.
    verts = torch.stack([uv[:, 0] * W - 0.5, uv[:, 1] * H - 0.5, torch.ones_like(uv[:, 0])], -1)
    faces = torch.arange(3 * n, device=corner_uvs.device).view(n, 3)
    K = torch.eye(3, dtype=torch.float64, device=corner_uvs.device)[None]
    frags = rasterize(verts[None], faces, K, (H, W))
    return Fragments(frags.face_index, frags.bary.float(), frags.depth.float())


def uv_attribute_map(corner_uvs: torch.Tensor, face_attributes: torch.Tensor,
                     size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Write per-corner attributes (F, 3, C) into UV space: (C, H, W) map and (1, H, W) mask."""
    frags = rasterize_uv_atlas(corner_uvs, size)
    values = interpolate(frags, face_attributes.float())[0].permute(2, 0, 1)
    return values, frags.mask.float()


def _fill_from_neighbours(texture: torch.Tensor, filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One 3x3 splat: empty texels with filled neighbours take their mean. Returns the texture
    and the mask of texels filled by this step."""
    C = texture.shape[1]
    ones = torch.ones(C + 1, 1, 3, 3, dtype=texture.dtype, device=texture.device)
    acc = F.conv2d(torch.cat([texture * filled, filled], 1), ones, padding=1, groups=C + 1)
    grow = ((acc[:, C:] > 0) & (filled == 0)).to(texture.dtype)
    return texture * filled + grow * acc[:, :C] / acc[:, C:].clamp(min=1), grow


def fill_texture_gaps(texture: torch.Tensor, known_mask: torch.Tensor,
                      atlas_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """DINAR's gap fill (B_fill): close the small gaps a single view leaves inside its visible regions.

    A view scattered into UV leaves isolated empty texels wherever the image is coarser than the
    texture. Every empty texel with at least one known 3x3 neighbour takes the mean of its known
    neighbours (one 3x3 splat, as DINAR's texture sampling does); texels farther than one texel from
    any known one stay empty. The gap-filled texels count as known for conditioning and for the
    final paste (DINAR's known-texel channel is the union; its second mask channel marks the fill).

    Args:
        texture: (B, C, H, W); values where `known_mask` is 0 are ignored.
        known_mask: (B, 1, H, W), 1 where a pixel landed (the texel is observed).
        atlas_mask: optional (1 or B, 1, H, W), 1 on the UV atlas; fills outside it are discarded.

    Returns:
        dict with texture (B, C, H, W) (0 outside the known and filled texels), known_mask
        (B, 1, H, W) (the input, binarised) and filled_mask (B, 1, H, W) (texels filled by the
        splat, disjoint from known_mask).
    """
    if texture.dim() != 4 or known_mask.shape != (texture.shape[0], 1, *texture.shape[2:]):
        raise ValueError(f"texture must be (B, C, H, W) and known_mask (B, 1, H, W); got "
                         f"{tuple(texture.shape)}, {tuple(known_mask.shape)}")
    known = (known_mask > 0.5).to(texture.dtype)
    filled_texture, filled = _fill_from_neighbours(texture, known)
    if atlas_mask is not None:
        if atlas_mask.dim() != 4 or atlas_mask.shape[1] != 1 or atlas_mask.shape[2:] != texture.shape[2:]:
            raise ValueError(f"atlas_mask must be (B, 1, H, W) matching texture, got {tuple(atlas_mask.shape)}")
        filled = filled * (atlas_mask > 0.5).to(texture.dtype)
        filled_texture = filled_texture * (known + filled)
    return {"texture": filled_texture, "known_mask": known, "filled_mask": filled}


def texture_with_masks(rgb: torch.Tensor, known_mask: torch.Tensor, gap_mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """DINAR's texture layout: colour channels, then the known mask and the gap-fill mask as the last
    two channels (its neural texture ends with RGB, known-or-filled, filled; its VQGAN encodes that).

    Args:
        rgb: (B, C, H, W) texture, zero where unknown.
        known_mask: (B, 1, H, W) 1 where a pixel landed; for a complete texture, the UV atlas.
        gap_mask: (B, 1, H, W) 1 on gap-filled texels; None for none. The known channel is
            known_mask | gap_mask (DINAR's closed mask), the last channel gap_mask.
    """
    if known_mask.shape != (rgb.shape[0], 1, *rgb.shape[2:]):
        raise ValueError(f"known_mask must be (B, 1, H, W) matching rgb {tuple(rgb.shape)}, got {tuple(known_mask.shape)}")
    gap = torch.zeros_like(known_mask) if gap_mask is None else gap_mask
    if gap.shape != known_mask.shape:
        raise ValueError(f"gap_mask must have known_mask's shape {tuple(known_mask.shape)}, got {tuple(gap.shape)}")
    gap = (gap > 0.5).to(rgb.dtype)
    known = torch.maximum((known_mask > 0.5).to(rgb.dtype), gap)
    return torch.cat([rgb, known, gap], dim=1)

def complete_texture_layout(texture: torch.Tensor, atlas: torch.Tensor | None = None) -> torch.Tensor:
    """`texture_with_masks` of complete textures (B, C, H, W): the known mask is the UV atlas (1 or B, 1,
    H, W; None: every texel), no gap. What a VQGAN of DINAR's layout encodes for a ground-truth texture."""
    atlas = torch.ones_like(texture[:, :1]) if atlas is None else atlas.to(texture.dtype).expand_as(texture[:, :1])
    return texture_with_masks(texture, atlas)


def partial_texture_layout(partial: torch.Tensor, known_mask: torch.Tensor, gap_mask: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """`texture_with_masks` of partial textures with the colours zeroed outside known | gap (DINAR's
    closed mask): what a VQGAN of DINAR's layout encodes for a single view's texture."""
    with_masks = texture_with_masks(partial, known_mask, gap_mask)
    return torch.cat([with_masks[:, :-2] * with_masks[:, -2:-1], with_masks[:, -2:]], dim=1)


def soft_paste_mask(known_mask: torch.Tensor, atlas_mask: torch.Tensor | None = None) -> torch.Tensor:
    """DINAR's test-time paste weight of the known texels: (known | off-atlas), 3x3 erosion, 3x3 box
    blur, minus off-atlas; the completed texture is (1 - w) * decoded + w * partial.

    The weight is 1 inside the known region, 0 on every unknown atlas texel, and in between on the
    known texels of the region's rim, so pasted colours blend into the decoded ones instead of
    leaving a seam. Off-atlas texels count as known for the erosion, so the rim is not eroded where
    the known region meets the atlas border. Borders follow OpenCV's defaults, as DINAR's
    `cv2.erode` / `cv2.blur` do: the erosion ignores texels past the image edge, the blur reflects
    without repeating the edge texel. DINAR rounds the mask through uint8; this is the exact float
    version (a difference below 1/510).

    Args:
        known_mask: (B, 1, H, W), > 0.5 where the texel is known (pixels and gap fill).
        atlas_mask: optional (1 or B, 1, H, W), > 0.5 on the UV atlas (DINAR's binary UV map);
            None: every texel is on the atlas.

    Returns:
        (B, 1, H, W) float weights in [0, 1].
    """
    if known_mask.dim() != 4 or known_mask.shape[1] != 1:
        raise ValueError(f"known_mask must be (B, 1, H, W), got {tuple(known_mask.shape)}")
    dtype = known_mask.dtype if known_mask.is_floating_point() else torch.float32
    known = (known_mask > 0.5).to(dtype)
    off = torch.zeros_like(known)
    if atlas_mask is not None:
        if atlas_mask.dim() != 4 or atlas_mask.shape[1] != 1 or atlas_mask.shape[2:] != known.shape[2:]:
            raise ValueError(f"atlas_mask must be (1 or B, 1, H, W) matching known_mask {tuple(known.shape)}, "
                             f"got {tuple(atlas_mask.shape)}")
        off = (atlas_mask <= 0.5).to(dtype).expand_as(known)
    closed = torch.maximum(known, off)
    eroded = -F.max_pool2d(-closed, 3, stride=1, padding=1)  # max_pool pads with -inf: edges do not erode
    blurred = F.avg_pool2d(F.pad(eroded, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return (blurred - off).clamp(0, 1)


def scatter_to_uv(image: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, texture_size: int | tuple[int, int],
                  erode: int = 0, fill_gaps: bool = True) -> dict[str, torch.Tensor]:
    """Scatter visible pixels into UV space (DINAR's RGB texture; the partial texture of a view).

    Each visible pixel adds its colour to the texel nearest to its UV; texels average what they
    receive. With `fill_gaps`, empty texels with at least one filled 3x3 neighbour take the mean
    of those neighbours (`fill_texture_gaps`, DINAR's B_fill), which closes the one-texel gaps left
    where the image is coarser than the texture.

    Args:
        image: (B, C, H, W).
        uv: (B, H, W, 2) grid from `render_uv`.
        mask: (B, 1, H, W) pixels to use (person mask x render mask).
        texture_size: int or (Ht, Wt).
        erode: odd kernel size of an erosion of `mask` first (DINAR erodes 5x5 so that
            background colours at the silhouette do not leak into the texture); 0 = none.
        fill_gaps: do the 3x3 splat.

    Returns:
        dict with texture (B, C, Ht, Wt), known_mask (B, 1, Ht, Wt) (texels hit by a pixel),
        filled_mask (B, 1, Ht, Wt) (texels filled by the splat).
    """
    Ht, Wt = (texture_size, texture_size) if isinstance(texture_size, int) else texture_size
    B, C, H, W = image.shape
    if uv.shape != (B, H, W, 2) or mask.shape != (B, 1, H, W):
        raise ValueError(f"uv must be ({B}, {H}, {W}, 2) and mask ({B}, 1, {H}, {W}); got {tuple(uv.shape)}, {tuple(mask.shape)}")
    m = mask > 0.5
    if erode:
        if erode % 2 == 0:
            raise ValueError(f"erode must be odd, got {erode}")
        m = -F.max_pool2d(-m.float(), erode, stride=1, padding=erode // 2) > 0.5
    col = ((uv[..., 0] + 1) * 0.5 * Wt).floor().long().clamp(0, Wt - 1)
    row = ((uv[..., 1] + 1) * 0.5 * Ht).floor().long().clamp(0, Ht - 1)
    valid = m[:, 0] & (uv[..., 0] > -1) & (uv[..., 0] < 1) & (uv[..., 1] > -1) & (uv[..., 1] < 1)
    b = torch.arange(B, device=image.device).view(B, 1, 1).expand(B, H, W)
    texel = (b * Ht + row) * Wt + col
    texel, colours = texel[valid], image.permute(0, 2, 3, 1)[valid]
    sums = torch.zeros(B * Ht * Wt, C, dtype=image.dtype, device=image.device).index_add_(0, texel, colours)
    ones = torch.ones_like(texel, dtype=image.dtype)
    counts = torch.zeros(B * Ht * Wt, dtype=image.dtype, device=image.device).index_add_(0, texel, ones)
    known = (counts > 0).view(B, 1, Ht, Wt).to(image.dtype)
    texture = (sums / counts.clamp(min=1)[:, None]).view(B, Ht, Wt, C).permute(0, 3, 1, 2)
    if fill_gaps:
        return fill_texture_gaps(texture, known)
    return {"texture": texture, "known_mask": known, "filled_mask": torch.zeros_like(known)}


def dilate_texture(texture: torch.Tensor, mask: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    """Bleed atlas colours outwards into the empty texels next to it.

    Bilinear lookups near a UV seam mix the texels just outside the atlas into the result; if
    those are empty (black), every seam shows as a dark line in renders. Each iteration gives
    the empty texels that touch filled ones the mean of their filled 3x3 neighbours (the usual
    game-texture padding). Texels inside `mask` are unchanged.

    Args:
        texture: (B, C, H, W) or (C, H, W).
        mask: (B, 1, H, W) or (1, H, W), 1 on the atlas.
        iterations: how many texels wide the padding grows.
    """
    squeeze = texture.dim() == 3
    tex, filled = (texture[None], mask[None]) if squeeze else (texture, mask)
    filled = (filled > 0.5).to(tex.dtype)
    tex = tex * filled
    for _ in range(iterations):
        tex, grow = _fill_from_neighbours(tex, filled)
        filled = filled + grow
    return tex[0] if squeeze else tex
