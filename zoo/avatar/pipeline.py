"""Photo -> preprocessing -> Anny fit -> texture -> exports, for one photo or a folder of photos.

Output folder layout (`run_avatar(..., out)`), `<id>` being the photo's file name stem:

    <out>/preprocess/<id>/   crop.png, mask.png, keypoints.png, keypoints.json (cached)
    <out>/rgb, segm, smpl, anny, overlay/<id>.*   the fit in the image-folder loader's layout
                             (`zoo.datamodules.image_folder`, body: anny) + an overlay picture
    <out>/texture/<id>.png   the UV texture (Anny's atlas); partial/<id>.png the visible texels
    <out>/avatar/<id>/       avatar.glb (textured, fitted pose), rigged.glb (skeleton, skinning
                             weights, the motion as an animation), turntable.gif / .mp4,
                             motion.gif / .mp4 (the motion: a walk cycle, an Anny motion file or
                             an AMASS-style SMPL-X file retargeted onto Anny, `zoo.export.amass`),
                             views.png (novel views), summary.png (photo, mask + keypoints, fit,
                             texture, novel views); with --method dinar (DINAR's one-image
                             pipeline) also neural_turntable.gif / .mp4 and neural_walk.gif / .mp4
                             (the neural renderer's frames, the walk in the --motion poses)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from zoo.export import (
    export_rigged_glb,
    export_textured_glb,
    motion_frames,
    render_textured,
    save_gif,
    save_mp4,
    turntable,
)
from zoo.export.motion import load_motion, walk_cycle
from zoo.fit.anny_fit import FitSettings, fit_body
from zoo.fit.io import write_fit
from zoo.preprocess import PhotoError, preprocess_photo
from zoo.preprocess.photo import draw_keypoints
from zoo.utils.images import save_png

log = logging.getLogger(__name__)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class AvatarResult:
    """What one photo produced: paths by name, the fit's quality numbers, warnings, or the error."""

    photo: str
    files: dict[str, str] = field(default_factory=dict)
    keypoint_px: float = float("nan")
    iou: float = float("nan")
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def list_photos(path: str | Path) -> list[Path]:
    """One photo, or every photo in a folder (sorted)."""
    path = Path(path).expanduser()
    if path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            raise FileNotFoundError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {path}")
        return photos
    if not path.is_file():
        raise FileNotFoundError(f"photo not found: {path}")
    return [path]


def _bar(desc: str, total: int, enabled: bool):
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled)


def summary_picture(crop, mask, keypoints, overlay, texture, views, height: int = 256) -> np.ndarray:
    """One row: photo crop, mask + keypoints, fit overlay, texture, novel views (uint8)."""
    def fit(image):
        image = Image.fromarray(image)
        return np.asarray(image.resize((round(image.width * height / image.height), height), Image.BILINEAR))

    panels = [fit(crop), fit(np.asarray(draw_keypoints(crop, keypoints, mask))), fit(overlay), fit(texture),
              *[fit(v) for v in views]]
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, axis=1)


def avatar_from_photo(photo: Path, out: Path, body, detector, segmenter, texturer, motion: dict | None = None,
                      fit_settings: FitSettings | None = None, progress: bool = True, crop_size: int = 512,
                      render_size: int = 256) -> AvatarResult:
    """The whole pipeline for one photo (module doc); photo problems raise `PhotoError`."""
    key = photo.stem
    result = AvatarResult(str(photo))
    with _bar(f"{key}: preprocess", 1, progress) as bar:
        pre = preprocess_photo(photo, out / "preprocess" / key, detector, segmenter, crop_size)
        bar.update(1)
    result.warnings = list(pre.warnings)
    settings = fit_settings or FitSettings()
    with _bar(f"{key}: fit", sum(settings.steps), progress) as bar:
        fit = fit_body(body, pre.keypoints, pre.mask, settings, progress=lambda done, total: bar.update(1))
    result.keypoint_px, result.iou = fit.keypoint_px, fit.iou
    if fit.iou < 0.5:
        result.warnings.append(f"the fitted body overlaps the person mask poorly (IoU {fit.iou:.2f}): the texture "
                               "will be misplaced; a photo with the whole body in a plain pose fits better")
    files = {k: str(v) for k, v in write_fit(out, key, pre.crop, pre.mask, fit, body.faces).items()}
    with _bar(f"{key}: texture", 1, progress) as bar:
        crop = torch.from_numpy(pre.crop.copy()).permute(2, 0, 1).float() / 255
        predicted = texturer(crop, torch.from_numpy(pre.mask.copy())[None], fit.vertices, fit.K)
        bar.update(1)
    texture = predicted["texture"]
    tex_u8 = (texture.permute(1, 2, 0) * 255).round().byte().numpy()
    (out / "texture").mkdir(parents=True, exist_ok=True)
    files["texture"] = str(out / "texture" / f"{key}.png")
    save_png(tex_u8, files["texture"])
    if predicted.get("partial") is not None:
        (out / "partial").mkdir(parents=True, exist_ok=True)
        files["partial"] = str(out / "partial" / f"{key}.png")
        partial = predicted["partial"] * predicted["known_mask"]
        save_png((partial.permute(1, 2, 0) * 255).round().byte().numpy(), files["partial"])

    folder = out / "avatar" / key
    motion = motion or walk_cycle(body, frames=24)
    motion_pose = motion["pose"] if torch.is_tensor(motion["pose"]) else torch.from_numpy(motion["pose"])
    fps = float(motion["fps"])
    transl = motion.get("transl")
    transl = None if transl is None else torch.as_tensor(transl, dtype=torch.float32)
    steps = ["avatar.glb", "rigged.glb", "views.png", "turntable", "motion", "summary.png"]
    neural = hasattr(texturer, "render_views")  # DINAR: the neural renderer draws the avatar too
    if neural:
        steps += ["neural_turntable.gif", "neural_walk.gif"]
    with _bar(f"{key}: export", len(steps), progress) as bar:
        with torch.no_grad():
            posed = body(betas=fit.betas, pose=fit.pose).vertices[0]
        files["avatar.glb"] = str(export_textured_glb(folder / "avatar.glb", posed, body.faces, body.corner_uvs, texture))
        bar.update(1)
        files["rigged.glb"] = str(export_rigged_glb(folder / "rigged.glb", body, fit.betas, texture,
                                                    pose=body.pose_from_controls(1), motion=motion_pose, fps=fps,
                                                    motion_translation=transl))
        bar.update(1)
        natural = body.pose_from_controls(1)
        with torch.no_grad():
            standing = body(betas=fit.betas, pose=natural).vertices[0]
        views = [render_textured(standing, body.faces, body.corner_uvs, texture, yaw, render_size)
                 for yaw in (0.0, 90.0, 180.0, 270.0)]
        files["views.png"] = str(folder / "views.png")
        save_png(np.concatenate(views, axis=1), files["views.png"])
        bar.update(1)
        spin = turntable(body, fit.betas, natural, texture, 24, render_size)
        files["turntable.gif"] = str(save_gif(spin, folder / "turntable.gif"))
        files["turntable.mp4"] = str(save_mp4(spin, folder / "turntable.mp4", fps=15.0))
        bar.update(1)
        follow = None if transl is None else transl * torch.tensor([0.0, 1.0, 0.0])  # the camera follows across the floor
        frames = motion_frames(body, fit.betas, motion_pose, texture, size=render_size, translation=follow)
        files["motion.gif"] = str(save_gif(frames, folder / "motion.gif", fps=min(fps, 30.0)))
        files["motion.mp4"] = str(save_mp4(frames, folder / "motion.mp4", fps=fps))
        bar.update(1)
        overlay = np.asarray(Image.open(files["overlay"]).convert("RGB"))
        picture = summary_picture(pre.crop, pre.mask, pre.keypoints, overlay, tex_u8, [views[0], views[2]])
        files["summary.png"] = str(folder / "summary.png")
        save_png(picture, files["summary.png"])
        bar.update(1)
        if neural:
            yaws = [360.0 * i / 24 for i in range(24)]
            spin = texturer.render_views(standing[None].expand(len(yaws), -1, -1), yaws)
            files["neural_turntable.gif"] = str(save_gif(spin, folder / "neural_turntable.gif"))
            files["neural_turntable.mp4"] = str(save_mp4(spin, folder / "neural_turntable.mp4", fps=15.0))
            bar.update(1)
            with torch.no_grad():
                walking = body(betas=fit.betas.expand(motion_pose.shape[0], -1), pose=motion_pose.float()).vertices
            walk = texturer.render_views(walking, [30.0] * walking.shape[0])
            files["neural_walk.gif"] = str(save_gif(walk, folder / "neural_walk.gif", fps=min(fps, 30.0)))
            files["neural_walk.mp4"] = str(save_mp4(walk, folder / "neural_walk.mp4", fps=fps))
            bar.update(1)
    result.files = files
    return result


def run_avatar(photos: str | Path, out: str | Path, method: str = "refinetex", ckpt: str | None = None,
               config: str | None = None, motion: str | None = None, fit_steps: tuple[int, int, int] | None = None,
               progress: bool = True, render_size: int = 256, motion_fps: float = 30.0,
               smplx_model: str | None = None) -> list[AvatarResult]:
    """Every photo of `photos` (a file or a folder) through the pipeline; a photo that cannot be
    used gets its error in its `AvatarResult` and the others go on. `motion`: an Anny motion file
    or an AMASS-style file (retargeted, resampled to about `motion_fps`, its source skeleton from
    the user's SMPL-X model file `smplx_model` when given)."""
    from zoo.avatar.methods import TextureFromPhoto, dinar_method
    from zoo.body import AnnyBody
    from zoo.preprocess import default_backends

    paths = list_photos(photos)
    out = Path(out).expanduser()
    body = AnnyBody().eval()
    if method == "dinar":
        texturer = dinar_method(ckpt, config, body, progress)
    elif method == "refinetex":
        texturer = TextureFromPhoto.from_checkpoint(ckpt, config, body)
    else:
        raise ValueError(f"method must be 'refinetex' or 'dinar', got {method!r}")
    detector, segmenter = default_backends()
    motion_data = load_motion(motion, body, fps=motion_fps, smplx_model=smplx_model) if motion else None
    settings = FitSettings(steps=tuple(fit_steps)) if fit_steps else FitSettings()
    results = []
    for photo in paths:
        try:
            results.append(avatar_from_photo(photo, out, body, detector, segmenter, texturer, motion_data, settings,
                                             progress, render_size=render_size))
        except (PhotoError, ValueError) as error:
            log.error("%s: %s", photo, error)
            results.append(AvatarResult(str(photo), error=str(error)))
    return results


__all__ = ["AvatarResult", "avatar_from_photo", "list_photos", "run_avatar", "summary_picture"]
