"""Texture methods of the avatar command: a trained zoo system turned into photo -> UV texture.

`--method refinetex` takes a checkpoint of the RefineTex family, with the run's `config.yaml`
(written next to `checkpoints/` by every `python -m zoo fit`) saying which system it is:
- `TextureCompletionSystem` (the quick start): the photo's visible pixels are scattered into UV
  space through the fitted body's UV render, and the U-Net completes the texture;
- `RefineTexSystem`: the person, re-cropped to the model's input size (128x64), and the fitted
  body's rendered part labels go through the Texformer backbone + refiner.
`--method dinar` takes a `NeuralAvatarSystem` checkpoint (DINAR stage 1, `configs/dinar/`): the
photo becomes a neural texture drawn by the neural renderer in any pose (`DinarFromPhoto`);
`dinar_method` says plainly when the zoo lacks that system.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from zoo.render import rasterize, render_labels, render_uv, scatter_to_uv
from zoo.render.body_maps import body_uv_maps

log = logging.getLogger(__name__)

TRAIN_HINT = ("train one with `python -m zoo fit --config configs/quickstart.yaml` (CPU minutes) and pass "
              "--ckpt outputs/zoo/<run>/checkpoints/last.ckpt")
# What `--method dinar` needs from the zoo (the DINAR issues): a system that turns one photo with its
# body fit into a neural-texture avatar.
DINAR_ENTRY_POINT = "zoo.systems.neural_avatar"


def _find_config(ckpt: Path, config: Path | None) -> Path:
    if config is not None:
        if not config.is_file():
            raise FileNotFoundError(f"config not found: {config}")
        return config
    for candidate in (ckpt.parent.parent / "config.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no config.yaml next to {ckpt} (a run folder has config.yaml beside checkpoints/): pass "
                            "--config <the YAML the model was trained with>")


def load_system(ckpt: str | Path | None, config: str | Path | None = None):
    """(LightningModule in eval mode, its config dict) from a zoo checkpoint and its run config."""
    if ckpt is None:
        raise FileNotFoundError(f"--method refinetex needs a trained texture model (--ckpt): {TRAIN_HINT}")
    ckpt = Path(ckpt).expanduser()
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}; {TRAIN_HINT}")
    config_path = _find_config(ckpt, Path(config).expanduser() if config else None)
    from jsonargparse import ArgumentParser
    from pytorch_lightning import LightningModule

    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningModule, "model")
    cfg_dict = yaml.safe_load(config_path.read_text())
    cfg = parser.parse_object({"model": cfg_dict["model"]})
    system = parser.instantiate(cfg).model
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    system.load_state_dict(state["state_dict"], strict=True)
    return system.eval(), cfg_dict


def _texture_size(cfg: dict, default: int) -> int:
    """The UV texture size a synthetic-people model was trained at (data preset / overrides)."""
    data = cfg.get("data", {}).get("init_args", {})
    size = (data.get("overrides") or {}).get("texture_size")
    if size is None and "preset" in data:
        from zoo.datamodules.synthetic import PRESETS

        size = PRESETS[data["preset"]].texture_size
    return int(size or default)


class TextureFromPhoto:
    """Photo crop + Anny fit -> UV texture (3, T, T) in [0, 1] with a trained zoo system.

    Args:
        system: a `TextureCompletionSystem` or `RefineTexSystem` (eval mode).
        body: the `AnnyBody` the fit is of (the model's UV atlas must be Anny's).
        texture_size: UV size the completion model runs at (its training size).
    """

    def __init__(self, system, body, texture_size: int = 64) -> None:
        from zoo.systems.refinetex import RefineTexSystem
        from zoo.systems.texture_completion import TextureCompletionSystem

        self.system, self.body = system, body
        maps = body_uv_maps(body, texture_size)
        if isinstance(system, TextureCompletionSystem):
            self.kind, self.texture_size = "completion", texture_size
            system.position_code = maps["position_code"]
            self.atlas = maps["mask"]
        elif isinstance(system, RefineTexSystem):
            self.kind = "refinetex"
            system.configure_data({"position_code": maps["position_code"], "face_hands_mask": maps["face_hands"],
                                   "texture_mask": maps["mask"][0]})
            self.atlas = None
        else:
            raise TypeError(f"--method refinetex needs a TextureCompletionSystem or RefineTexSystem checkpoint, got "
                             f"{type(system).__name__}")

    @classmethod
    def from_checkpoint(cls, ckpt, config, body, default_texture_size: int = 64) -> TextureFromPhoto:
        system, cfg = load_system(ckpt, config)
        return cls(system, body, _texture_size(cfg, default_texture_size))

    @torch.no_grad()
    def __call__(self, crop: torch.Tensor, mask: torch.Tensor, vertices: torch.Tensor, K: torch.Tensor) -> dict:
        """crop (3, S, S) in [0, 1], mask (1, S, S), camera-space vertices (V, 3), K (3, 3) ->
        {"texture": (3, T, T) in [0, 1], "partial": (3, T, T) or None, "known_mask": (1, T, T) or None}."""
        S = crop.shape[-1]
        frags = rasterize(vertices[None].float(), self.body.faces, K[None].float(), (S, S))
        uv, render_mask = render_uv(frags, self.body.corner_uvs)
        image = crop[None] * 2 - 1
        if self.kind == "completion":
            visible = render_mask * (mask[None] > 0.5).float()
            # As the model was trained (no gap fill); a 5x5 erosion (DINAR) keeps background colours
            # at a slightly misfitted silhouette out of the texture.
            scattered = scatter_to_uv(image, uv, visible, self.texture_size, erode=5, fill_gaps=False)
            known = scattered["known_mask"] * self.atlas[None]
            partial = scattered["texture"] * known
            texture = self.system(partial, known)[0]
            return {"texture": (texture.clamp(-1, 1) + 1) / 2, "partial": (partial[0] + 1) / 2, "known_mask": known[0]}
        # RefineTex: a 2:1 (H:W) crop of the square around the person at the model's input size.
        H, W = 128, 64
        parts = render_labels(frags, self.body.face_parts)[0]
        x0 = (S - S // 2) // 2
        person = image[..., :, x0:x0 + S // 2] * mask[None, :, :, x0:x0 + S // 2]
        person_image = F.interpolate(person, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
        part_map = F.interpolate(parts[None, None, :, x0:x0 + S // 2].float(), size=(H, W), mode="nearest")[0].long()
        out = self.system(person_image, part_map)  # RefineTexOutput (or a dict with "texture")
        texture = (out.texture if hasattr(out, "texture") else out["texture"])[0]
        return {"texture": (texture.clamp(-1, 1) + 1) / 2, "partial": None, "known_mask": None}


def dinar_available() -> tuple[bool, str]:
    """Whether the zoo has what `--method dinar` needs, and if not, what is missing."""
    if importlib.util.find_spec(DINAR_ENTRY_POINT) is None:
        return False, (f"the DINAR avatar system ({DINAR_ENTRY_POINT}) is not in this zoo; "
                       "its networks alone cannot make an avatar")
    return True, ""


class DinarFromPhoto:
    """Photo crop + Anny fit -> DINAR neural-texture avatar (`NeuralAvatarSystem`, stage 1).

    The crop, its mask and the fitted body's UV render at the encoder's input size make the source
    view; the avatar's texture is the generated channels plus the 5 image-sampled RGB channels, and
    the neural renderer draws it at any rasterised pose / view (`render_views`). The GLB texture
    is the sampled RGB channels (texels the photo shows; grey elsewhere): the generated channels
    only make sense through the renderer.

    Args:
        system: a `NeuralAvatarSystem` (eval mode) trained on the Anny body.
        body: the `AnnyBody` of the fit.
        image_size: the encoder's input side (from its config).
    """

    def __init__(self, system, body, image_size: int) -> None:
        from zoo.systems.neural_avatar import NeuralAvatarSystem

        if not isinstance(system, NeuralAvatarSystem):
            raise TypeError(f"--method dinar needs a NeuralAvatarSystem checkpoint (configs/dinar/), got "
                            f"{type(system).__name__}")
        self.system, self.body, self.image_size = system, body, image_size
        self.neural_texture: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(cls, ckpt, config, body) -> DinarFromPhoto:
        if ckpt is None:
            raise FileNotFoundError("--method dinar needs a trained DINAR avatar (--ckpt): train one with "
                                    "`python -m zoo fit --config configs/dinar/avatar_cpu.yaml`")
        system, cfg = load_system(ckpt, config)
        encoder = getattr(getattr(system, "network", None), "encoder", None)
        size = getattr(encoder, "image_size", None)
        if size is None:
            overrides = cfg.get("data", {}).get("init_args", {}).get("overrides") or {}
            size = (overrides.get("image_size") or [256])[0]
        return cls(system, body, int(size))

    @torch.no_grad()
    def __call__(self, crop: torch.Tensor, mask: torch.Tensor, vertices: torch.Tensor, K: torch.Tensor) -> dict:
        S, s = crop.shape[-1], self.image_size
        scale = s / S
        K_small = K.clone().float()
        K_small[:2] *= scale
        K_small[:2, 2] = (K[:2, 2] + 0.5) * scale - 0.5
        frags = rasterize(vertices[None].float(), self.body.faces, K_small[None], (s, s))
        uv, _ = render_uv(frags, self.body.corner_uvs)
        image = F.interpolate(crop[None] * 2 - 1, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        person = (F.interpolate(mask[None], size=(s, s), mode="area") > 0.5).float()
        p = self.system.hparams.source_prefix
        texture = self.system.source_texture({p + "image": image, p + "mask": person, p + "uv": uv})
        self.neural_texture = texture
        rgb, known = texture[0, -5:-2], texture[0, -2:-1]
        colour = torch.where(known > 0.5, (rgb.clamp(-1, 1) + 1) / 2, torch.full_like(rgb, 0.5))
        return {"texture": colour, "partial": colour, "known_mask": known}

    @torch.no_grad()
    def render_views(self, vertices: torch.Tensor, yaws: list[float]) -> list:
        """uint8 (s, s, 3) frames of the last avatar drawn by the neural renderer, one per body-frame
        mesh of `vertices` (N, V, 3) seen from its yaw (one framing, `zoo.body.animation`)."""
        from zoo.body.animation import render_sequence
        from zoo.systems.neural_avatar import uv_body_mask

        if self.neural_texture is None:
            raise RuntimeError("render_views needs an avatar: call the method on a photo first")
        seq = render_sequence(vertices, self.body.faces, self.body.corner_uvs, yaws, size=self.image_size)
        frames = []
        for uv in seq["uv"].split(8):
            out = self.system.render(self.neural_texture.expand(uv.shape[0], -1, -1, -1),
                                     {"uv": uv, "uv_mask": uv_body_mask(uv)})
            frames += [((f.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy() for f in out["rgb"]]
        return frames


def dinar_method(ckpt, config, body) -> DinarFromPhoto:
    """The DINAR texture method, or a RuntimeError saying why it is not available."""
    ok, why = dinar_available()
    if not ok:
        raise RuntimeError(f"DINAR avatar not available: {why}. Use --method refinetex.")
    return DinarFromPhoto.from_checkpoint(ckpt, config, body)


__all__ = ["TRAIN_HINT", "TextureFromPhoto", "dinar_available", "dinar_method", "load_system"]
