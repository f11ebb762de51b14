"""Writes DINAR avatars made by `predict`: per person, the neural texture, its RGB channels, and a
turntable and a walk animation drawn by the avatar's neural renderer.

    <output_dir>/person_<id>/neural_texture.safetensors   {"texture": (C, T, T) float32}
    <output_dir>/person_<id>/rgb_channels.png              the 3 image-sampled channels (if any)
    <output_dir>/person_<id>/turntable.gif + turntable/frame_<k>.png
    <output_dir>/person_<id>/walk.gif + walk/frame_<k>.png
(`frame_<name>/` instead of `person_<id>/` for the images of a DINAR input folder.)

The animations pose the body model's template shape (the person's own shape is not estimated
from one image here): the turntable turns the standing body (arms down) through 360 degrees; the
walk cycle comes from the body's semantic pose controls (`BodyModel.pose_from_controls`), seen
from `walk_yaw_deg`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from safetensors.torch import save_file
from tqdm.auto import tqdm

from zoo.body.animation import render_sequence, turntable, walk_cycle
from zoo.pretrained.config import import_class
from zoo.utils.files import atomic_file
from zoo.utils.images import save_png, to_uint8

log = logging.getLogger(__name__)


@torch.no_grad()
def render_avatar(network, texture: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor,
                  yaws: Sequence[float], size: int = 256, distance: float = 6.0, background: float = 1.0,
                  chunk: int = 4, on_frames: Callable[[int], None] | None = None) -> torch.Tensor:
    """(N, 3, size, size) renders in [-1, 1] of a texture (C, T, T) on body-frame meshes (N, V, 3),
    each seen from its yaw (0 front, 180 back), by `network.render` (the neural renderer).
    `on_frames(n)` is called after each chunk of n frames (a progress bar's update)."""
    n = vertices.shape[0]
    if len(yaws) != n:
        raise ValueError(f"need one yaw per mesh: {len(yaws)} yaws for {n} meshes")
    frames_in = render_sequence(vertices, faces, corner_uvs, yaws, size=size, distance=distance)
    uv, mask = frames_in["uv"], frames_in["mask"]
    device = texture.device
    frames = []
    for s in range(0, n, chunk):
        u, m = uv[s:s + chunk].to(device), mask[s:s + chunk].to(device)
        tex = texture[None].expand(u.shape[0], -1, -1, -1)
        frames.append(network.render(tex, u, m, background)["rgb"].clamp(-1, 1).cpu())
        if on_frames is not None:
            on_frames(u.shape[0])
    return torch.cat(frames)


def write_animation(frames: torch.Tensor, folder: Path, name: str, fps: int) -> list[str]:
    """`<name>/frame_<k>.png` for each frame (N, 3, H, W) in [-1, 1] and a looping `<name>.gif`."""
    pictures = [to_uint8(f) for f in frames]
    written = [str(save_png(p, folder / name / f"frame_{k:03d}.png")) for k, p in enumerate(pictures)]
    images = [Image.fromarray(p.numpy()) for p in pictures]
    gif = folder / f"{name}.gif"
    with atomic_file(gif) as temporary:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                       loop=0)
    return [*written, str(gif)]


class AvatarWriter(BasePredictionWriter):
    """Prediction writer of `NeuralAvatarSystem` (see the module docstring).

    Args:
        output_dir: root folder of the avatars.
        body: the body model of the animations as {"class_path": ..., "init_args": {...}} (e.g.
            `zoo.body.smpl_body.SMPLXBody` with the user's SMPL-X files, for SMPL-X avatars); None: the
            embedded `zoo.body.AnnyBody`. Its UV layout must be the one the avatar was trained on.
        render_size: side of the animation frames (multiple of 8).
        turntable_frames: frames of the 360-degree turn (0 skips the turntable).
        walk_frames: frames of one walk cycle (0 skips the walk).
        stride_deg, arm_swing_deg: walk amplitudes (hip and shoulder swing, degrees).
        walk_yaw_deg: viewing yaw of the walk (0 front; 30 shows the legs' swing).
        distance: camera distance in metres.
        fps: frame rate of the GIFs.
        rgb_channels: channels of the texture written as the RGB PNG (DINAR: 16, 17, 18, i.e. the
            first three of the last five); None writes none.
        progress: a progress bar per animation (seconds are logged either way).
    """

    def __init__(self, output_dir: str, body: dict | None = None, render_size: int = 256, turntable_frames: int = 12,
                 walk_frames: int = 12, stride_deg: float = 25.0, arm_swing_deg: float = 20.0, walk_yaw_deg: float = 30.0,
                 distance: float = 6.0, fps: int = 8, rgb_channels: list[int] | None = None, progress: bool = False):
        super().__init__(write_interval="batch")
        if render_size < 8 or render_size % 8:
            raise ValueError(f"render_size must be a positive multiple of 8, got {render_size}")
        if body is not None and "class_path" not in body:
            raise ValueError(f"body must be {{'class_path': ..., 'init_args': {{...}}}} or None, got {body!r}")
        self.output_dir, self.body_config = Path(output_dir), body
        self.render_size, self.turntable_frames, self.walk_frames = render_size, turntable_frames, walk_frames
        self.stride_deg, self.arm_swing_deg, self.walk_yaw_deg = stride_deg, arm_swing_deg, walk_yaw_deg
        self.distance, self.fps, self.rgb_channels, self.progress = distance, fps, rgb_channels, progress
        self._body, self.seen, self.written = None, set(), []

    def body(self):
        if self._body is None:
            if self.body_config is None:
                from zoo.body import AnnyBody

                self._body = AnnyBody()
            else:
                body_class = import_class(str(self.body_config["class_path"]))
                self._body = body_class(**dict(self.body_config.get("init_args") or {}))
        return self._body

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        textures = prediction["texture"]
        ids, frames = prediction.get("person_id"), prediction.get("frame")
        for i, texture in enumerate(textures):
            if frames is not None:  # a folder of images: one avatar per frame, named by it
                name = f"frame_{frames[i]}"
            else:
                name = f"person_{int(ids[i]) if ids is not None else batch_idx * textures.shape[0] + i:05d}"
            if name in self.seen:
                continue
            self.seen.add(name)
            self.written += self.write_person(pl_module.network, texture, self.output_dir / name,
                                              pl_module.hparams.background)
        log.debug("AvatarWriter: %d files under %s", len(self.written), self.output_dir)

    def write_person(self, network, texture: torch.Tensor, folder: Path, background: float) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "neural_texture.safetensors") as temporary:
            save_file({"texture": texture.detach().float().cpu().contiguous()}, str(temporary))
        written = [str(folder / "neural_texture.safetensors")]
        if self.rgb_channels is not None:
            written.append(str(save_png(to_uint8(texture[list(self.rgb_channels)].clamp(-1, 1).cpu()),
                                        folder / "rgb_channels.png")))
        body = self.body()
        if self.turntable_frames:
            start = time.perf_counter()
            verts, yaws = turntable(body, self.turntable_frames)  # standing, arms down (not the rest pose)
            with tqdm(total=len(yaws), desc=f"{folder.name}: turntable", leave=False, disable=not self.progress) as bar:
                frames = render_avatar(network, texture, verts, body.faces, body.corner_uvs, yaws, self.render_size,
                                       self.distance, background, on_frames=bar.update)
            written += write_animation(frames, folder, "turntable", self.fps)
            log.info("%s: animation (turntable, %d frames): %.2f s", folder.name, self.turntable_frames,
                     time.perf_counter() - start)
        if self.walk_frames:
            start = time.perf_counter()
            verts = walk_cycle(body, self.walk_frames, self.stride_deg, self.arm_swing_deg)
            with tqdm(total=self.walk_frames, desc=f"{folder.name}: walk", leave=False, disable=not self.progress) as bar:
                frames = render_avatar(network, texture, verts, body.faces, body.corner_uvs,
                                       [self.walk_yaw_deg] * self.walk_frames, self.render_size, self.distance,
                                       background, on_frames=bar.update)
            written += write_animation(frames, folder, "walk", self.fps)
            log.info("%s: animation (walk, %d frames): %.2f s", folder.name, self.walk_frames,
                     time.perf_counter() - start)
        return written
