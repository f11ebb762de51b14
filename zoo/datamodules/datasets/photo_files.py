"""Reading user files safely: photos of any mode / orientation / size, and data pickles.

Every error names the file and says what to do. What is handled rather than refused:
- 16-bit grey PNGs ("I;16", "I") are scaled 65535 -> 255 (a plain RGB conversion clips them to
  white); float images ("F") in [0, 1] are scaled to 255; grey, palette, CMYK and alpha images
  are converted to RGB (alpha dropped);
- the EXIF orientation tag is applied, so the photo is read upright, as viewers show it;
- a photo whose aspect ratio differs from the model input is padded or centre-cropped when asked
  (`box_for_aspect`), never squashed; by default it is refused.
What is refused: unreadable, truncated or non-image files, images above `max_pixels`, and pickles
that hold anything but plain data and numpy arrays (unpickling other objects can run code).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.utils.safe_pickle import safe_unpickle

DEFAULT_MAX_PIXELS = 40_000_000
ASPECT_CHOICES = ("refuse", "pad", "crop")

def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, scaling high-bit-depth grey instead of clipping it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(img, dtype=np.float64)
        if array.min() < 0 or array.max() > 65535:
            raise ValueError(f"{path}: 32-bit integer image with values in [{array.min():.0f}, {array.max():.0f}], "
                             "outside 16-bit range: save it as an 8- or 16-bit PNG")
        img = Image.fromarray(np.round(array / 257.0).astype(np.uint8), "L")
    elif img.mode == "F":
        array = np.asarray(img, dtype=np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: float image holds NaN / inf pixels: re-export it as an 8-bit PNG or JPEG")
        scale = 255.0 if array.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def open_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The photo at `path` as an upright 8-bit RGB PIL image (fully loaded; see the module doc)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"{path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), above "
                                 f"max_pixels={max_pixels}: downscale it (the model sees a small crop anyway) or "
                                 "raise max_pixels (YAML: data.init_args.max_pixels).")
            img.load()
            upright = ImageOps.exif_transpose(img)
            return _to_rgb(upright, path)
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} is too large to decode safely ({err}): downscale it.") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read (wrong extension, or not an image at all): "
                         "convert it to PNG or JPEG, or remove it.") from None
    except OSError as err:
        raise ValueError(f"cannot decode {path} ({err}): the file is truncated or corrupt; re-export or "
                         "remove it.") from err


def box_for_aspect(stored: tuple[int, int], target: tuple[int, int], aspect: str, tolerance: float,
                   path: str | Path = "") -> tuple[int, int, int, int] | None:
    """(left, top, width, height) in stored pixels that has the target's aspect ratio, or None
    when the stored image already has it (within `tolerance`, relative).

    "pad" returns a box larger than the image (PIL pads outside with zeros), "crop" a centred box
    inside it, "refuse" raises a ValueError naming the file and both choices."""
    h, w = stored
    H, W = target
    want, have = W / H, w / h
    if abs(have / want - 1) <= tolerance:
        return None
    if aspect == "refuse":
        raise ValueError(f"{path} is {w}x{h} (aspect {have:.3f}), the model input is {W}x{H} (aspect {want:.3f}): "
                         "squashing would distort the person. Set `aspect` (YAML: data.init_args.aspect) to 'pad' "
                         "(black borders) or 'crop' (centre crop), or crop the photos yourself.")
    if aspect not in ASPECT_CHOICES:
        raise ValueError(f"aspect must be one of {ASPECT_CHOICES}, got {aspect!r}")
    wider = have > want
    if (aspect == "crop") == wider:  # keep the height
        bw = int(round(h * want))
        return (w - bw) // 2, 0, bw, h
    bh = int(round(w / want))
    return 0, (h - bh) // 2, w, bh


def boxed(img: Image.Image, box: tuple[int, int, int, int] | None, size: tuple[int, int],
          resample: int) -> Image.Image:
    """`img` cut to `box` (zeros outside the image), resized to `size` = (H, W)."""
    if box is not None:
        left, top, bw, bh = box
        img = img.crop((left, top, left + bw, top + bh))
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), resample)
    return img


__all__ = ["ASPECT_CHOICES", "DEFAULT_MAX_PIXELS", "box_for_aspect", "boxed", "open_photo", "safe_unpickle"]
