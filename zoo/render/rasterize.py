"""Exact triangle rasterisation (CPU and CUDA, batched), with two backends.

`rasterize(..., backend=...)`: "torch" is the whole-tensor method below (pure PyTorch, any
device); "numba" is zoo/render/rasterize_cpu.py, the same method and arithmetic fused into one
compiled loop per image (CPU tensors only; numba compiles it on its first call in a process and
caches it on disk). "auto" (the default) takes "numba" for CPU tensors and "torch" otherwise;
an explicit backend that cannot run raises. Both give the same face ids (tests/render).

Conventions (OpenCV camera): x right, y down, z forward; a camera-space point (X, Y, Z)
projects to u = fx X/Z + s Y/Z + cx, v = fy Y/Z + cy. Pixel (row i, column j) is sampled at
its centre, image coordinates (u, v) = (j, i) -- so pixel centres sit at integer coordinates.

Method of the torch backend, in four stages (`_setup`, `_candidates`, `_zbuffer`,
`_barycentrics`; benchmarks/rasterize.py times each):

1. set-up: every vertex is projected once (float64) and its rounded screen position (ceil and
   floor, clipped to the image) is packed into four int16 numbers; three gathers and two
   element-wise minima give every face's box of pixel centres. Faces whose box holds no pixel
   centre of the image, or with a vertex at Z <= `near` (or not finite), are dropped there
   with integer work only -- exactly: a dropped face covers no pixel centre. On a mesh of many
   small faces most faces cover no pixel centre of a small image, so only the survivors get
   the floating-point set-up: their screen barycentrics as planes a + b x + c y in the pixel
   coordinates relative to the box origin (small numbers, so the per-pixel work keeps its
   digits in float32), and 1/Z of the corners.
2. candidates: the pixels of every surviving face's box are enumerated as (face, pixel) pairs
   and their barycentrics evaluated; a pair covers its pixel when all three are >= 0.
3. z-buffer: a scatter-max of 1/Z (affine in screen space) keeps the nearest surface per
   pixel, then a scatter-min keeps the smallest face index among exact ties, which makes the
   result deterministic. Large workloads run in chunks of faces so that memory stays bounded.
4. barycentrics: perspective-correct barycentrics and depth are computed once per covered
   pixel, for the winning face only, with the same arithmetic as the depth test.

Everything works on whole 1-D tensors (no per-face Python, no strided gathers), so the cost is
a few passes over the vertices, the faces (integer work) and the box pixels of the faces that
cover a pixel centre, never faces x pixels. Degenerate faces (zero screen area) cover nothing.
Both windings are rasterised (no back-face culling). Rasterisation is not differentiable:
gradients flow through texture sampling instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_NO_FACE = torch.iinfo(torch.int64).max
_MAX_SIZE = torch.iinfo(torch.int16).max  # box corners are packed as int16
BACKENDS = ("auto", "torch", "numba")


@dataclass
class Fragments:
    """Per-pixel result of `rasterize`.

    Attributes:
        face_index: (B, H, W) int64, the visible face, -1 for background.
        bary: (B, H, W, 3) perspective-correct weights of the face's three vertices at the
            visible 3D point (zero for background).
        depth: (B, H, W) camera-space Z of the visible point (+inf for background).
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, True where a face is visible."""
        return self.face_index >= 0


def _check_inputs(vertices, faces, K, image_size):
    """Types, shapes and devices; the values are checked by `_check_values` (torch backend) or
    inside the numba kernel."""
    if not isinstance(vertices, torch.Tensor) or vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a (B, V, 3) tensor, got {getattr(vertices, 'shape', type(vertices))}")
    if not vertices.is_floating_point():
        raise TypeError(f"vertices must be floating point, got {vertices.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be a (F, 3) tensor, got {getattr(faces, 'shape', type(faces))}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"faces must be int64 (or int32), got {faces.dtype}")
    if not isinstance(K, torch.Tensor) or K.shape != (vertices.shape[0], 3, 3):
        raise ValueError(f"K must be a ({vertices.shape[0]}, 3, 3) tensor, got {getattr(K, 'shape', type(K))}")
    if len(image_size) != 2 or not all(0 < int(s) < _MAX_SIZE for s in image_size):
        raise ValueError(f"image_size must be (H, W) with sizes in [1, {_MAX_SIZE - 1}], got {image_size}")
    if K.device != vertices.device or faces.device != vertices.device:
        raise ValueError(
            f"vertices ({vertices.device}), faces ({faces.device}) and K ({K.device}) must share a device"
        )



def _check_values(vertices, faces, K):
    """Out-of-range faces, NaN / inf geometry or a zero / negative focal would rasterise to
    garbage (or fail deep inside) without a clear error. One reduction per tensor and one
    synchronisation on the good path; the slow checks below only name what is wrong."""
    good = torch.isfinite(K).all() & (K[:, 0, 0] > 0).all() & (K[:, 1, 1] > 0).all()
    if vertices.numel():
        v_lo, v_hi = torch.aminmax(vertices.detach())
        good &= v_lo.isfinite() & v_hi.isfinite()
    if faces.numel():
        f_lo, f_hi = torch.aminmax(faces)
        good &= (f_lo >= 0) & (f_hi < vertices.shape[1])
    if not bool(good):
        _explain_bad_values(vertices, faces, K)


def _explain_bad_values(vertices, faces, K):
    if faces.numel():
        lo, hi = torch.aminmax(faces)
        if lo < 0 or hi >= vertices.shape[1]:
            raise ValueError(
                f"faces index vertices in [{int(lo)}, {int(hi)}] but there are {vertices.shape[1]} vertices"
            )
    if not torch.isfinite(K).all():
        raise ValueError(f"K holds NaN or inf (batch items {_bad_items(K)}): check the camera (focal, centre)")
    focal = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)
    if (focal <= 0).any():
        items = (focal <= 0).any(-1).nonzero().flatten().tolist()[:4]
        raise ValueError(f"K must have positive focal lengths fx, fy; batch items {items} have "
                         f"{focal[items].tolist()}: a zero focal collapses the image to the principal point, a "
                         "negative one mirrors it. Check the camera's focal (in pixels).")
    if not torch.isfinite(vertices).all():
        raise ValueError(f"vertices hold NaN or inf (batch items {_bad_items(vertices)}): check the body "
                         "parameters and the camera translation that produced them")


def _bad_items(x):
    return (~torch.isfinite(x)).reshape(x.shape[0], -1).any(-1).nonzero().flatten().tolist()[:4]


def _project(vertices, K, H, W, near):
    """Per-vertex u, v and 1/Z, each (B*V,) float64 (NaN where not drawable), and (B*V,)
    int64 codes, each the int16 quadruple [ceil u, ceil v, ceil -u, ceil -v] = [ceil u, ceil v,
    -floor u, -floor v] clipped to the image, so that the element-wise minimum over a face's
    corners is its box of pixel centres [x0, y0, -x1, -y1]. An undrawable vertex gets the
    neutral codes (W, H, 1, 1), which never enlarge a box."""
    # Geometry in float64: edge functions of pixel coordinates lose digits in float32 on
    # thin faces; this per-vertex pass is cheap.
    X, Y, Z = vertices.detach().to(torch.float64).unbind(-1)  # (B, V) each
    Kd = K.detach().to(torch.float64)[:, :, :, None]  # (B, 3, 3, 1): broadcasts over vertices
    inv_z = torch.where(Z > near, Z.reciprocal(), float("nan"))
    x, y = X * inv_z, Y * inv_z
    u = x * Kd[:, 0, 0]
    if bool((K[:, 0, 1] != 0).any()):  # skew (adding a zero term would change nothing)
        u += y * Kd[:, 0, 1]
    u += Kd[:, 0, 2]
    v = y * Kd[:, 1, 1] + Kd[:, 1, 2]
    signed = torch.stack([u, v, u.neg(), v.neg()]).view(4, -1).nan_to_num_(nan=_MAX_SIZE)
    bounds = torch.tensor([[0.0, W], [0.0, H], [1.0 - W, 1.0], [1.0 - H, 1.0]], dtype=torch.float64, device=u.device)
    signed.ceil_().clamp_(min=bounds[:, :1], max=bounds[:, 1:])
    codes = torch.empty((signed.shape[1], 4), dtype=torch.int16, device=u.device).copy_(signed.t())
    return u.view(-1), v.view(-1), inv_z.view(-1), codes.view(torch.int64).view(-1)


def _setup(vertices, faces, K, H, W, near, work_dtype):
    """Cull faces with integer codes, then the float set-up of the survivors.

    Returns (planes, face_id, base, bw, bh) for the surviving faces: planes (14, K) in
    `work_dtype`, rows a0 a1 a2 b0 b1 b2 c0 c1 c2 1/Z0 1/Z1 1/Z2 (1/Z1 - 1/Z0) (1/Z2 - 1/Z0),
    where a_k + b_k x + c_k y is the k-th screen barycentric of the face at pixel (x, y)
    relative to its box origin; the face
    index; the box origin as a flat pixel index (B*H*W image); the box width (0 for a face that
    covers nothing) and height.
    """
    B, V = vertices.shape[:2]
    F = faces.shape[0]
    u, v, inv_z, codes = _project(vertices, K, H, W, near)
    # Codes of each corner of every face, (B*F, 4) int16 per corner (one image: a flat gather).
    codes = codes if B == 1 else codes.view(B, V)
    c = [codes.index_select(codes.dim() - 1, faces[:, k]).view(torch.int16).view(-1, 4) for k in range(3)]
    box = torch.minimum(torch.minimum(c[0], c[1]), c[2])  # (B*F, 4): x0 y0 -x1 -y1
    keep = (torch.maximum(box[:, 0] + box[:, 2], box[:, 1] + box[:, 3]) <= 0).nonzero().squeeze(1)
    n = len(keep)
    box = torch.empty((4, n), dtype=torch.int64, device=keep.device).copy_(box.index_select(0, keep).t())
    image = keep // F if B > 1 else None
    face_id = keep if image is None else keep - image * F
    # Corners relative to the box origin (float64, exact for these small integers), and 1/Z.
    pts = torch.empty((3, 3, n), dtype=torch.float64, device=keep.device)  # (u, v, 1/Z), corner, face
    for k in range(3):
        idx = faces[:, k].index_select(0, face_id)  # flat vertex index of corner k
        if image is not None:
            idx += image * V
        for value, out in zip((u, v, inv_z), pts[:, k]):
            torch.index_select(value, 0, idx, out=out)
    U, Vr = pts[0].sub_(box[0]), pts[1].sub_(box[1])
    # Edge k (opposite vertex k) from vertex i to j: its edge function at (x, y) is
    # a + b x + c y, positive inside a counter-clockwise face; the three sum to twice the area.
    abc = torch.empty((3, 3, n), dtype=torch.float64, device=keep.device)
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        torch.mul(U[i], Vr[j], out=abc[0, k]).sub_(U[j] * Vr[i])
        torch.sub(Vr[i], Vr[j], out=abc[1, k])
        torch.sub(U[j], U[i], out=abc[2, k])
    area = abc[0, 0] + abc[0, 1] + abc[0, 2]
    planes = torch.empty((14, n), dtype=work_dtype, device=keep.device)
    torch.div(abc.view(9, n), area, out=planes[:9])  # barycentric planes, for either winding
    planes[9:12].copy_(pts[2])
    torch.sub(pts[2, 1:], pts[2, :1], out=planes[12:])
    drawable = (area != 0) & (area.abs() < float("inf"))  # degenerate faces, undrawable vertices
    bw = (box[0] + box[2]).neg_().add_(1).mul_(drawable)
    bh = (box[1] + box[3]).neg_().add_(1)
    row = box[1] if image is None else image * H + box[1]
    return planes, face_id, row * W + box[0], bw, bh


def _evaluate(planes, idx, x, y):
    """Screen barycentrics and 1/Z of faces idx at pixels (x, y) relative to their box
    origins. Separate multiplies and adds (no fused ops) keep every value bit-identical between
    the depth test and the final pass."""
    lam = [planes[k].index_select(0, idx) + planes[3 + k].index_select(0, idx) * x
           + planes[6 + k].index_select(0, idx) * y for k in range(3)]
    # 1/Z is affine in screen space; in this form it is exactly 1/Z0 on a face of constant
    # depth, so that coplanar faces at one depth tie exactly (and the smaller index wins).
    inv_depth = planes[9].index_select(0, idx) + lam[1] * planes[12].index_select(0, idx) \
        + lam[2] * planes[13].index_select(0, idx)
    return lam, inv_depth


def _candidates(planes, base, bw, bh, W):
    """Every pixel of every face's box: (row of its face, flat pixel index, 1/Z where the face
    covers the pixel centre and -1 where it does not)."""
    counts = bw * bh
    total = int(counts.sum())
    owner = torch.repeat_interleave(counts, output_size=total)
    local = torch.arange(total, device=counts.device) - (counts.cumsum(0) - counts).index_select(0, owner)
    width = bw.index_select(0, owner)
    ly = local // width
    lx = local - ly * width
    lam, inv_depth = _evaluate(planes, owner, lx.to(planes.dtype), ly.to(planes.dtype))
    inside = torch.minimum(torch.minimum(lam[0], lam[1]), lam[2]) >= 0
    pix = base.index_select(0, owner) + ly * W + lx
    return owner, pix, torch.where(inside, inv_depth, -1.0)  # -1 never wins against the 0 background


def _zbuffer(owner, pix, inv_depth, zbuf, best, first_row):
    """Merge one chunk of candidates (face rows from `first_row` on) into the running 1/Z
    buffer and the buffer of winning rows: nearest first, then the smallest row (= face index
    within an image) among exact ties."""
    if first_row:
        old = zbuf.index_select(0, pix)
    zbuf.scatter_reduce_(0, pix, inv_depth, reduce="amax")
    new = zbuf.index_select(0, pix)
    if first_row:  # a pixel this chunk brought nearer forgets its earlier winner
        best.index_fill_(0, pix[new > old], _NO_FACE)
    best.scatter_reduce_(0, pix, torch.where(inv_depth == new, owner + first_row, _NO_FACE), reduce="amin")


def _barycentrics(planes, face_id, base, best, W, dtype):
    """Face index, perspective-correct barycentrics and depth of every pixel, flat."""
    npix = best.shape[0]
    pix = (best != _NO_FACE).nonzero().squeeze(1)
    row = best.index_select(0, pix)
    offset = pix - base.index_select(0, row)
    ly = offset // W
    lam, inv_depth = _evaluate(planes, row, (offset - ly * W).to(planes.dtype), ly.to(planes.dtype))
    persp = torch.stack([lam[k] * planes[9 + k].index_select(0, row) for k in range(3)], 1)
    face_index = torch.full((npix,), -1, dtype=torch.int64, device=best.device)
    face_index.index_copy_(0, pix, face_id.index_select(0, row))
    bary = torch.zeros((npix, 3), dtype=dtype, device=best.device)
    bary.index_copy_(0, pix, (persp / persp.sum(1, keepdim=True)).to(dtype))
    depth = torch.full((npix,), float("inf"), dtype=dtype, device=best.device)
    depth.index_copy_(0, pix, inv_depth.reciprocal().to(dtype))
    return face_index, bary, depth


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    near: float = 1e-4,
    max_pairs_per_chunk: int = 2_000_000,
    backend: str = "auto",
) -> Fragments:
    """Rasterise a batch of meshes that share one topology.

    Args:
        vertices: (B, V, 3) camera-space positions (OpenCV axes).
        faces: (F, 3) int64 vertex indices.
        K: (B, 3, 3) pinhole intrinsics.
        image_size: (H, W) of the output.
        near: faces with any vertex at Z <= near are not drawn.
        max_pairs_per_chunk: bound on the (face, pixel) candidates held in memory at once
            (torch backend; the numba kernel holds none).
        backend: "torch" (whole-tensor operations, any device), "numba" (the compiled CPU
            kernel of `zoo.render.rasterize_cpu`, CPU tensors only; compiled on its first call
            in a process without a disk cache) or "auto": "numba" for CPU tensors, "torch"
            otherwise. Both give the same face ids and the same weights and depth to float
            rounding (tests/render/test_rasterize.py runs every test on both).

    Returns:
        `Fragments` with face_index (B, H, W), bary (B, H, W, 3), depth (B, H, W).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_inputs(vertices, faces, K, image_size)
    H, W = int(image_size[0]), int(image_size[1])
    B, device = vertices.shape[0], vertices.device
    if backend == "auto":
        backend = "numba" if device.type == "cpu" else "torch"
    # Per-pair work runs in the input precision (float32 unless float64 is passed).
    work_dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
    if backend == "numba":
        if device.type != "cpu":
            raise ValueError(f"the numba backend rasterises CPU tensors only, got {device}: use backend='torch'")
        from zoo.render.rasterize_cpu import rasterize_cpu  # imports numba on the first CPU call only

        result = rasterize_cpu(vertices, faces, K, H, W, near, work_dtype)
        if result is None:  # a value check failed in the kernel
            _explain_bad_values(vertices, faces, K)
            raise RuntimeError("rasterize: the numba kernel found a bad input value that the explanation missed")
        face_index, bary, depth = result
        dtype = vertices.dtype
        return Fragments(face_index=face_index.view(B, H, W), bary=bary.to(dtype).view(B, H, W, 3),
                         depth=depth.to(dtype).view(B, H, W))
    _check_values(vertices, faces, K)
    planes, face_id, base, bw, bh = _setup(vertices, faces.long(), K, H, W, near, work_dtype)
    zbuf = torch.zeros(B * H * W, dtype=work_dtype, device=device)  # 1/Z; 0 is background
    best = torch.full((B * H * W,), _NO_FACE, dtype=torch.int64, device=device)  # winning row
    cum = torch.cumsum(bw * bh, 0)
    start = 0
    while start < len(cum):
        done = int(cum[start - 1]) if start else 0
        end = max(int(torch.searchsorted(cum, done + max_pairs_per_chunk, right=True)), start + 1)
        owner, pix, inv_depth = _candidates(planes[:, start:end], base[start:end], bw[start:end], bh[start:end], W)
        _zbuffer(owner, pix, inv_depth, zbuf, best, start)
        start = end
    face_index, bary, depth = _barycentrics(planes, face_id, base, best, W, vertices.dtype)
    return Fragments(face_index=face_index.view(B, H, W), bary=bary.view(B, H, W, 3), depth=depth.view(B, H, W))
