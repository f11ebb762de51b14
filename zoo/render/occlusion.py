"""DINAR's occlusion detector (paper section 3.5, Fig. 4).

A fitted body is never exactly where the person is, so near the outline of a limb in front of
the body, pixels of one part are scattered into the texels of the other (an arm's colour on the
chest). DINAR renders the body with a colour map in which every limb has its own colour and the
colours blend smoothly from one limb into the next (so the surface itself shows no edges), finds
edges in that render with Canny, removes the silhouette's own outline, dilates the rest, and does
not sample those pixels into the texture.

Matched to DINAR's code (`utils/rasterizer.py`, `erode_occlusions`): Canny thresholds 150 / 200
on 8-bit colours (here 150/255 and 200/255 on colours in [0, 1], with kornia's unnormalised
3x3 Sobel and no blur, which is OpenCV's scale), the outline drawn 2 px thick is taken out, and a
3x3 dilation twice. Ours: kornia's Canny works on one channel, so it runs on each colour channel
and the edges are united (OpenCV's colour Canny keeps the strongest channel's gradient).
"""
from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

from zoo.render.rasterize import Fragments
from zoo.render.shading import interpolate, sample_texture
from zoo.render.uv_space import dilate_texture, uv_attribute_map

CANNY_LOW = 150.0 / 255.0
CANNY_HIGH = 200.0 / 255.0

# Limb colours: head, torso, then (left, right) upper arm, lower arm, upper leg, lower leg, foot.
# Left and right differ (a hand in front of the other arm is an occlusion too).
LIMB_COLOURS = torch.tensor([
    [0.95, 0.95, 0.95], [0.10, 0.10, 0.85],
    [0.95, 0.10, 0.10], [0.10, 0.85, 0.10],
    [0.95, 0.85, 0.05], [0.85, 0.05, 0.85],
    [0.05, 0.85, 0.85], [0.95, 0.55, 0.05],
    [0.45, 0.05, 0.45], [0.05, 0.45, 0.05],
    [0.55, 0.35, 0.15], [0.35, 0.55, 0.95],
])


def limb_labels(vertices: torch.Tensor, faces: torch.Tensor, face_parts: torch.Tensor) -> torch.Tensor:
    """(F,) labels 0..11 of `LIMB_COLOURS`: the 7 coarse parts (`zoo.body.COARSE_PARTS`) with
    the limbs split into left (+x in the rest pose) and right."""
    side = (vertices[faces].mean(dim=1)[:, 0] < 0).long()  # 0 left (+x), 1 right
    parts = face_parts.long()
    if parts.min() < 1 or parts.max() > 7:
        raise ValueError(f"face_parts must be coarse parts 1..7, got [{int(parts.min())}, {int(parts.max())}]")
    limb = 2 + 2 * (parts - 3) + side
    return torch.where(parts <= 2, parts - 1, limb)


def limb_gradient_colours(vertices: torch.Tensor, faces: torch.Tensor, face_parts: torch.Tensor,
                          smooth_iterations: int = 30) -> torch.Tensor:
    """(V, 3) per-vertex colours in [0, 1]: each limb its colour, blended smoothly across joints.

    The blend is `smooth_iterations` rounds of neighbour averaging of the limb one-hot over the
    mesh graph (vertex indices are shared across UV seams, so nothing shows at the seams). More
    rounds give wider, gentler transitions; the transition must span several pixels for Canny
    not to fire on it (at 512 px a 1.7 m body, 30 rounds of the Anny mesh span about 5 cm).

    Args:
        vertices: (V, 3) rest-pose vertices (body frame, left = +x).
        faces: (F, 3) triangles.
        face_parts: (F,) coarse part labels 1..7.
        smooth_iterations: rounds of neighbour averaging.
    """
    if smooth_iterations < 0:
        raise ValueError(f"smooth_iterations must be >= 0, got {smooth_iterations}")
    V = vertices.shape[0]
    labels = limb_labels(vertices, faces, face_parts)
    onehot = F.one_hot(labels, len(LIMB_COLOURS)).double()  # (F, L)
    weights = torch.zeros(V, onehot.shape[1], dtype=torch.float64).index_add_(0, faces.reshape(-1), onehot.repeat_interleave(3, 0))
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).long()
    edges = torch.unique(torch.cat([edges, edges.flip(1)]).sort(dim=1).values, dim=0)
    src = torch.cat([edges[:, 0], edges[:, 1]])
    dst = torch.cat([edges[:, 1], edges[:, 0]])
    degree = torch.zeros(V, dtype=torch.float64).index_add_(0, dst, torch.ones_like(dst, dtype=torch.float64))
    for _ in range(smooth_iterations):
        gathered = torch.zeros_like(weights).index_add_(0, dst, weights[src])
        weights = (weights + gathered) / (1.0 + degree)[:, None]
    return (weights @ LIMB_COLOURS.double()).float()


def smooth_iterations_for(image_height: int) -> int:
    """Blend rounds that keep limb junctions below Canny's thresholds at this image height.

    A junction's colour ramp must span several pixels: 30 rounds (about 5 cm on Anny) do at
    256-512 px; the ramp's width grows as the square root of the rounds, so a smaller image
    needs (256 / H)^2 times more (120 at 128 px), at the price of paler limb colours."""
    if image_height < 1:
        raise ValueError(f"image_height must be positive, got {image_height}")
    return max(30, round(30 * (256 / image_height) ** 2))


def dilations_for(image_height: int) -> int:
    """DINAR's two 3x3 dilations are at 512 px; the band they make is as wide in the body's
    terms at H px with 2 H / 512 dilations (rounded: 0 at 128 px, where the 1 px edge already
    spans 4 px of a 512 px image). At 128 px two dilations would exclude a fifth of the body."""
    if image_height < 1:
        raise ValueError(f"image_height must be positive, got {image_height}")
    return round(2 * image_height / 512)


def limb_colour_texture(vertices: torch.Tensor, faces: torch.Tensor, face_parts: torch.Tensor,
                        corner_uvs: torch.Tensor, size: int, smooth_iterations: int = 30) -> torch.Tensor:
    """(3, size, size) the `limb_gradient_colours` written into UV space (DINAR's colour map),
    padded a few texels past the atlas so bilinear look-ups at seams read no black.

    Sampling it at a view's UV render (`occlusion_from_uv`) gives the same colour render as
    `occlusion_mask` without the mesh: what a dataset that stores UV renders needs."""
    colours = limb_gradient_colours(vertices, faces, face_parts, smooth_iterations)
    texture, mask = uv_attribute_map(corner_uvs, colours[faces], size)
    return dilate_texture(texture, mask)


def occlusion_from_uv(colour_texture: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, **options) -> torch.Tensor:
    """`detect_occlusions` on the limb-colour texture (3, T, T) seen through a UV render
    uv (B, H, W, 2) with its mask (B, 1, H, W). Returns (B, 1, H, W) float."""
    B = uv.shape[0]
    colours = sample_texture(colour_texture.expand(B, -1, -1, -1).to(uv.dtype), uv, mask)
    return detect_occlusions(colours, mask, **options)


def _outline(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within `width` // 2 of the boundary of `mask` (B, 1, H, W), on either side."""
    grow = F.max_pool2d(mask, width, stride=1, padding=width // 2)
    shrink = -F.max_pool2d(-mask, width, stride=1, padding=width // 2)
    return (grow - shrink) > 0.5


def detect_occlusions(colour_render: torch.Tensor, silhouette: torch.Tensor, low: float = CANNY_LOW,
                      high: float = CANNY_HIGH, outline_width: int = 3, dilations: int = 2) -> torch.Tensor:
    """Pixels near a self-occlusion outline in a limb-colour render (DINAR's occlusion map).

    Args:
        colour_render: (B, 3, H, W) the body rendered with `limb_gradient_colours`, in [0, 1],
            background 0.
        silhouette: (B, 1, H, W) the body's render mask.
        low, high: Canny hysteresis thresholds on the unnormalised 3x3 Sobel magnitude of
            colours in [0, 1] (DINAR: 150 / 200 on 8-bit colours).
        outline_width: odd width of the band around the silhouette's boundary whose edges are
            removed (3: one pixel on each side, DINAR's 2 px thick contour).
        dilations: 3x3 dilations of what remains (DINAR: 2).

    Returns:
        (B, 1, H, W) float, 1 on the pixels not to sample.
    """
    if colour_render.dim() != 4 or colour_render.shape[1] != 3:
        raise ValueError(f"colour_render must be (B, 3, H, W), got {tuple(colour_render.shape)}")
    B, _, H, W = colour_render.shape
    if silhouette.shape != (B, 1, H, W):
        raise ValueError(f"silhouette must be ({B}, 1, {H}, {W}), got {tuple(silhouette.shape)}")
    if outline_width < 1 or outline_width % 2 == 0:
        raise ValueError(f"outline_width must be odd and >= 1, got {outline_width}")
    channels = colour_render.float().clamp(0, 1).reshape(B * 3, 1, H, W)
    _, edges = kornia.filters.canny(channels, low, high, kernel_size=1)
    edges = edges.reshape(B, 3, H, W).amax(dim=1, keepdim=True)
    edges = edges * ~_outline(silhouette.float(), outline_width)
    for _ in range(dilations):
        edges = F.max_pool2d(edges, 3, stride=1, padding=1)
    return edges


def occlusion_mask(fragments: Fragments, faces: torch.Tensor, vertex_colours: torch.Tensor, **options) -> torch.Tensor:
    """Render `vertex_colours` (V, 3) through `fragments` and run `detect_occlusions` on it.

    Returns (B, 1, H, W) float, 1 on the pixels not to sample into the texture."""
    colours = interpolate(fragments, vertex_colours.to(fragments.bary.dtype)[faces]).permute(0, 3, 1, 2)
    silhouette = fragments.mask[:, None].to(colours.dtype)
    return detect_occlusions(colours, silhouette, **options)


__all__ = ["CANNY_LOW", "CANNY_HIGH", "LIMB_COLOURS", "limb_labels", "limb_gradient_colours",
           "detect_occlusions", "occlusion_mask", "limb_colour_texture", "occlusion_from_uv",
           "smooth_iterations_for", "dilations_for"]
