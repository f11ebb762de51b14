"""A user's photo -> the square crop, person mask and keypoints the body fit needs (cached, as PNGs).

`preprocess_photo` checks the photo (clear `PhotoError`s for tiny, huge, grayscale or unreadable
photos, for no person and for several people), runs a `KeypointDetector` and a `Segmenter`, and
crops a square around the person (union of the mask and keypoint boxes, x1.2, DINAR's crop),
resized to `crop_size`. A body cut off by the frame is not an error: it is reported in
`warnings` and the fit uses the keypoints it sees. Written to `out_dir` (and reused when the photo
and the back-ends are the same):

    crop.png          the square crop (RGB)              mask.png       person mask of the crop
    keypoints.png     the crop with the keypoints drawn  keypoints.json keypoints in crop pixels
    preprocess.json   photo sha256, back-ends, crop box in photo pixels, warnings
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from zoo.preprocess.interfaces import (
    SKELETON,
    Box,
    KeypointDetector,
    Keypoints,
    Segmenter,
)
from zoo.utils.files import atomic_file
from zoo.utils.images import save_png

log = logging.getLogger(__name__)

MIN_SIDE = 96            # shorter side below this: too small to find a body in
MAX_PIXELS = 50_000_000  # above this: refuse (decoding alone takes GBs); downscale it first
WORK_LONG_SIDE = 1600    # larger photos are downscaled to this long side before detection
MIN_PERSON_PX = 64       # a person box lower than this (in photo pixels) is too small to fit
SECOND_PERSON = 0.4      # another person at least this fraction of the main one's height: ambiguous
FULL_BODY = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee",
             "left_ankle", "right_ankle")
FORMAT_VERSION = 1


class PhotoError(ValueError):
    """A photo the avatar pipeline cannot use; the message says why and what to do."""


@dataclass
class Preprocessed:
    """crop (S, S, 3) uint8; mask (S, S) float in [0, 1]; keypoints in crop pixels; crop_box
    (x0, y0, side) of the crop in photo pixels; warnings: what the user should know."""

    crop: np.ndarray
    mask: np.ndarray
    keypoints: Keypoints
    crop_box: tuple[float, float, float]
    warnings: list[str] = field(default_factory=list)
    source: str = ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_photo(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a photo file, upright (EXIF), checked; `PhotoError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PhotoError(f"photo not found: {path}")
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
                if size[0] * size[1] > MAX_PIXELS:
                    raise PhotoError(f"{path} is huge ({size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP, the "
                                     f"limit is {MAX_PIXELS / 1e6:.0f} MP): downscale it (e.g. to 2000 px high) first")
                img = ImageOps.exif_transpose(img)
                mode = img.mode
                rgb = np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PhotoError(f"{path} is huge ({error}); downscale it (e.g. to 2000 px high) first") from error
    except PhotoError:
        raise
    except (OSError, SyntaxError) as error:
        raise PhotoError(f"{path} is not a readable image ({error}); use a .png or .jpg photo") from error
    return check_photo(rgb, str(path), mode)


def check_photo(rgb: np.ndarray, source: str = "photo", mode: str = "RGB") -> np.ndarray:
    """Refuse photos the pipeline cannot use (tiny, grayscale, huge); downscale large ones."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PhotoError(f"{source}: expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    H, W = rgb.shape[:2]
    if H * W > MAX_PIXELS:
        raise PhotoError(f"{source} is huge ({W}x{H}): downscale it (e.g. to 2000 px high) first")
    if min(H, W) < MIN_SIDE:
        raise PhotoError(f"{source} is tiny ({W}x{H} px); the shorter side must be at least {MIN_SIDE} px, "
                         "and a body at least a few hundred pixels high gives a useful texture")
    spread = np.abs(rgb.astype(np.int16) - rgb.mean(axis=2, keepdims=True)).max()
    if mode in ("1", "L", "LA", "I", "I;16", "F") or spread <= 2:
        raise PhotoError(f"{source} is grayscale (mode {mode}, no colour): the texture would have no colour; "
                         "use a colour photo")
    if max(H, W) > WORK_LONG_SIDE:
        scale = WORK_LONG_SIDE / max(H, W)
        size = (max(1, round(W * scale)), max(1, round(H * scale)))
        log.info("%s: downscaling %dx%d to %dx%d for processing", source, W, H, *size)
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))
    return rgb


def choose_person(people: list[Keypoints], source: str = "photo") -> tuple[Keypoints, list[str]]:
    """The one person to fit; `PhotoError` for nobody, several people or a tiny person."""
    if not people:
        raise PhotoError(f"{source}: no person found. Use a photo of one person, standing, the whole body "
                         "(or at least head to hips) in view")
    people = sorted(people, key=lambda k: -k.box.height)
    main, notes = people[0], []
    others = [k for k in people[1:] if k.box.height >= SECOND_PERSON * main.box.height]
    if others:
        boxes = ", ".join(f"({k.box.x0:.0f}, {k.box.y0:.0f})-({k.box.x1:.0f}, {k.box.y1:.0f})" for k in [main, *others])
        raise PhotoError(f"{source}: {1 + len(others)} people found (boxes {boxes}); the avatar needs exactly one: "
                         "crop the photo to the person you want")
    if len(people) > 1:
        notes.append(f"{len(people) - 1} much smaller person(s) in the background ignored")
    if main.box.height < MIN_PERSON_PX:
        raise PhotoError(f"{source}: the person is tiny ({main.box.height:.0f} px high); use a photo where they are "
                         f"at least {MIN_PERSON_PX} px (better: several hundred) high")
    missing = [n for n in FULL_BODY if main.get(n)[1] < 0.5]
    if missing:
        notes.append(f"the body is cut off or hidden: no {', '.join(missing)} in view; the fit uses the visible "
                     "keypoints and the rest of the body comes from the pose prior (a full-body photo works best)")
    return main, notes


def crop_square(image: np.ndarray, mask: np.ndarray, person: Keypoints, size: int,
                margin: float = 1.2) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Square crop around the person (mask box union confident keypoints, x `margin`), zero-padded
    outside the photo, resized to `size`; returns crop, mask crop and (x0, y0, side) in photo px."""
    ys, xs = np.nonzero(mask > 0.5)
    points = person.xy[person.confidence >= 0.5]
    all_x = np.concatenate([xs, points[:, 0]]) if len(xs) else points[:, 0]
    all_y = np.concatenate([ys, points[:, 1]]) if len(ys) else points[:, 1]
    if all_x.size == 0:
        box = person.box
        all_x, all_y = np.array([box.x0, box.x1]), np.array([box.y0, box.y1])
    cx, cy = (all_x.min() + all_x.max()) / 2, (all_y.min() + all_y.max()) / 2
    side = float((max(all_x.max() - all_x.min(), all_y.max() - all_y.min()) + 1) * margin)
    x0, y0 = cx - side / 2, cy - side / 2
    # Pixel centres at integers: crop pixel j is the photo point x0 + (j + 0.5) * side / size - 0.5. PIL samples
    # output pixel centres (j + 0.5) at input a * (j + 0.5) + c in edge coordinates (our x + 0.5), so c = x0.
    coeffs = (side / size, 0, x0, 0, side / size, y0)
    crop = Image.fromarray(image).transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    mcrop = Image.fromarray((mask * 255).astype(np.uint8)).transform((size, size), Image.AFFINE, coeffs,
                                                                     resample=Image.BILINEAR)
    return np.asarray(crop), np.asarray(mcrop).astype(np.float32) / 255.0, (float(x0), float(y0), side)


def to_crop(person: Keypoints, crop_box: tuple[float, float, float], size: int) -> Keypoints:
    """Keypoints of the photo in crop pixels."""
    x0, y0, side = crop_box
    s = size / side
    xy = (person.xy - np.array([x0, y0], np.float32) + 0.5) * s - 0.5
    inside = ((xy >= 0) & (xy <= size - 1)).all(1)
    b = person.box
    box = Box((b.x0 - x0) * s, (b.y0 - y0) * s, (b.x1 - x0) * s, (b.y1 - y0) * s, b.score)
    return Keypoints(person.names, xy, person.confidence * inside, box, person.score)


def draw_keypoints(image: np.ndarray, keypoints: Keypoints, mask: np.ndarray | None = None,
                   threshold: float = 0.5) -> Image.Image:
    """The image (mask tinted) with the skeleton and the confident keypoints drawn."""
    picture = image.astype(np.float32)
    if mask is not None:
        picture = picture * (0.55 + 0.45 * mask[..., None]) + np.array([0, 60, 0]) * mask[..., None]
    out = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    radius = max(2, image.shape[0] // 150)
    for a, b in SKELETON:
        (pa, ca), (pb, cb) = keypoints.get(a), keypoints.get(b)
        if ca >= threshold and cb >= threshold:
            draw.line([tuple(pa), tuple(pb)], fill=(255, 220, 0), width=max(1, radius // 2))
    for name, (x, y), c in zip(keypoints.names, keypoints.xy, keypoints.confidence):
        if c >= threshold:
            colour = (255, 60, 60) if name.startswith("left") else (60, 140, 255) if name.startswith("right") else (255, 255, 255)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(0, 0, 0))
    return out


def preprocess_photo(photo: str | Path, out_dir: str | Path, detector: KeypointDetector, segmenter: Segmenter,
                     crop_size: int = 512, use_cache: bool = True) -> Preprocessed:
    """Check, detect, segment and crop one photo into `out_dir` (module doc); cached."""
    photo, out_dir = Path(photo), Path(out_dir)
    sha = _sha256(photo) if photo.is_file() else ""
    backends = {"detector": detector.name, "segmenter": segmenter.name, "crop_size": crop_size,
                "format": FORMAT_VERSION}
    meta_path = out_dir / "preprocess.json"
    if use_cache and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") == sha and meta.get("backends") == backends:
            log.info("%s: preprocessing read from %s", photo, out_dir)
            return Preprocessed(np.asarray(Image.open(out_dir / "crop.png").convert("RGB")),
                                np.asarray(Image.open(out_dir / "mask.png")).astype(np.float32) / 255.0,
                                Keypoints.from_json(json.loads((out_dir / "keypoints.json").read_text())),
                                tuple(meta["crop_box"]), list(meta["warnings"]), str(photo))
    image = load_photo(photo)
    person, notes = choose_person(detector.detect(image), str(photo))
    mask = segmenter.segment(image, person)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"segmenter {segmenter.name} returned a {mask.shape} mask for a {image.shape[:2]} photo")
    if (mask > 0.5).sum() < 0.1 * person.box.width * person.box.height:
        raise PhotoError(f"{photo}: the segmenter ({segmenter.name}) finds almost no person where the detector saw "
                         "one; try a photo with the person clearly separated from the background")
    crop, mcrop, box = crop_square(image, mask, person, crop_size)
    keypoints = to_crop(person, box, crop_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    # preprocess.json marks a complete cache: drop it before rewriting the files it vouches for, and
    # write every file whole (a kill mid-way leaves no marker, never a marker over half-written files)
    meta_path.unlink(missing_ok=True)
    save_png(crop, out_dir / "crop.png")
    save_png((mcrop * 255).round().astype(np.uint8), out_dir / "mask.png")
    save_png(np.asarray(draw_keypoints(crop, keypoints, mcrop).convert("RGB")), out_dir / "keypoints.png")
    with atomic_file(out_dir / "keypoints.json") as temporary:
        temporary.write_text(json.dumps(keypoints.to_json()))
    meta = {"photo": str(photo), "sha256": sha, "backends": backends, "crop_box": list(box), "warnings": notes,
            "photo_size": list(image.shape[:2])}
    with atomic_file(meta_path) as temporary:
        temporary.write_text(json.dumps(meta, indent=1))
    for note in notes:
        log.warning("%s: %s", photo, note)
    return Preprocessed(crop, mcrop, keypoints, box, notes, str(photo))


__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "PhotoError",
    "Preprocessed",
    "check_photo",
    "choose_person",
    "crop_square",
    "draw_keypoints",
    "load_photo",
    "preprocess_photo",
    "to_crop",
]
