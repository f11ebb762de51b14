"""Texture methods of the avatar command: a trained zoo system turned into photo -> UV texture.

`--method refinetex` takes a checkpoint of the RefineTex family, with the run's `config.yaml`
(written next to `checkpoints/` by every `python -m zoo fit`) saying which system it is:
- `TextureCompletionSystem` (the quick start): the photo's visible pixels are scattered into UV
  space through the fitted body's UV render, and the U-Net completes the texture;
- `RefineTexSystem`: the person, re-cropped to the model's input size (128x64), and the fitted
  body's rendered part labels go through the Texformer backbone + refiner.
`--method dinar` runs DINAR's whole one-image pipeline (`DinarFromPhoto`: the
`DinarOneImageSystem` of `configs/dinar/one_image_avatar.yaml` or `--config`, its stage-1 networks
from `--ckpt` or named in the config, the stage-2 VQGAN and denoiser named in the config): the
photo becomes a complete neural texture drawn by the neural renderer in any pose;
`dinar_method` says plainly what is missing (the pipeline, a network, LPIPS(vgg) weights).
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
# What `--method dinar` needs from the zoo (the DINAR issues): DINAR's one-image pipeline and its system.
DINAR_ENTRY_POINTS = ("zoo.inference.dinar_pipeline", "zoo.systems.dinar_one_image")
DINAR_CONFIG = "configs/dinar/one_image_avatar.yaml"


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
    missing = [m for m in DINAR_ENTRY_POINTS if importlib.util.find_spec(m) is None]
    if missing:
        return False, (f"DINAR's one-image pipeline ({', '.join(missing)}) is not in this zoo; "
                       "its networks alone cannot make an avatar")
    return True, ""


def _default_dinar_config() -> Path:
    config = Path(__file__).resolve().parents[2] / DINAR_CONFIG
    if not config.is_file():
        raise FileNotFoundError(f"--method dinar needs its config (the repository's {DINAR_CONFIG}): pass --config")
    return config


class DinarFromPhoto:
    """Photo crop + Anny fit -> DINAR avatar by the whole one-image pipeline
    (`zoo.inference.dinar_pipeline.DinarOneImageAvatar` inside a `DinarOneImageSystem`): encode,
    occlusion-aware RGB sampling, VQ encode, diffusion inpainting, decode, paste, RGB fine-tuning.

    The crop, its mask and the fitted body at the encoder's input size make the input view
    (`view_inputs`); the result is the complete neural texture, drawn by the neural renderer in any
    pose / view (`render_views`). The GLB texture is its RGB channels (-5:-2), complete after the
    inpainting; "partial" is the photo's RGB on the texels the photo shows.
    The networks must be trained on the fitted body's UV layout (Anny's here).

    Args:
        system: a `DinarOneImageSystem` (networks loaded, `setup("predict")` done by `from_config`).
        body: the `AnnyBody` of the fit.
        occlusion_detector: keep self-occlusion outlines out of the RGB texture (DINAR 3.5).
        progress: a progress bar per pipeline stage.
    """

    def __init__(self, system, body, occlusion_detector: bool = True, progress: bool = False) -> None:
        from zoo.systems.dinar_one_image import DinarOneImageSystem

        if not isinstance(system, DinarOneImageSystem):
            raise ValueError(f"--method dinar needs a DinarOneImageSystem config ({DINAR_CONFIG}), got "
                            f"{type(system).__name__}")
        self.system, self.body, self.progress = system, body, progress
        self.image_size = int(system.network.encoder.image_size)
        self.texture_size = int(system.network.generator.texture_size)
        self.limb_colours = None
        if occlusion_detector:
            from zoo.render.occlusion import limb_colour_texture, smooth_iterations_for

            self.limb_colours = limb_colour_texture(body.template_vertices, body.faces, body.face_parts,
                                                    body.corner_uvs, self.texture_size,
                                                    smooth_iterations_for(self.image_size))
        self.neural_texture: torch.Tensor | None = None
        self.seconds: dict[str, float] = {}

    @classmethod
    def from_config(cls, ckpt, config, body, progress: bool = False) -> DinarFromPhoto:
        """The system of `config` (default: the repository's one-image config), its stage-1
        network and discriminator from `ckpt` (a `NeuralAvatarSystem` checkpoint) when given;
        missing stage-2 networks or LPIPS(vgg) weights raise naming the file."""
        config_path = Path(config).expanduser() if config else _default_dinar_config()
        if not config_path.is_file():
            raise FileNotFoundError(f"config not found: {config_path}")
        from jsonargparse import ArgumentParser
        from pytorch_lightning import LightningModule

        cfg_dict = yaml.safe_load(config_path.read_text())
        parser = ArgumentParser()
        parser.add_subclass_arguments(LightningModule, "model")
        system = parser.instantiate(parser.parse_object({"model": cfg_dict["model"]})).model
        if ckpt is not None:
            ckpt = Path(ckpt).expanduser()
            if not ckpt.is_file():
                raise FileNotFoundError(f"checkpoint not found: {ckpt} (--method dinar: a stage-1 NeuralAvatarSystem "
                                        "checkpoint, or none when the config names its networks)")
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            system.on_load_checkpoint(state)
            system.load_state_dict(state["state_dict"], strict=True)
        system.setup("predict")  # stage-2 networks and LPIPS(vgg): checked and loaded now
        detector = cfg_dict.get("data", {}).get("init_args", {}).get("occlusion_detector", True)
        return cls(system.eval(), body, bool(detector), progress)

    @torch.no_grad()
    def __call__(self, crop: torch.Tensor, mask: torch.Tensor, vertices: torch.Tensor, K: torch.Tensor) -> dict:
        from zoo.inference.dinar_pipeline import view_inputs

        view = view_inputs(crop, mask, vertices, K, self.body.faces, self.body.corner_uvs, self.image_size,
                           self.texture_size, self.limb_colours)
        hp = self.system.hparams
        generator = torch.Generator().manual_seed(int(hp.seed))
        with torch.enable_grad():  # the RGB fine-tuning optimises the texture
            result = self.system.pipeline(view["image"], view["person_mask"], view["uv"], view["cosines"],
                                          view["occlusion"], hp.back_visible, self.system.perceptual, generator,
                                          progress=self.progress,
                                          face_mask=self.body.uv_region_mask("face", self.texture_size))
        self.neural_texture, self.seconds = result.texture.detach(), dict(result.seconds)
        colour = ((self.neural_texture[0, -5:-2].clamp(-1, 1) + 1) / 2).float()
        known = result.known[0].float()
        partial = ((result.single_view[0, -5:-2].clamp(-1, 1) + 1) / 2).float() * known
        return {"texture": colour, "partial": partial, "known_mask": known}

    @torch.no_grad()
    def render_views(self, vertices: torch.Tensor, yaws: list[float]) -> list:
        """uint8 (s, s, 3) frames of the last avatar drawn by the neural renderer, one per body-frame
        mesh of `vertices` (N, V, 3) seen from its yaw (one framing, `zoo.body.animation`)."""
        from zoo.callbacks.avatar_writer import render_avatar

        if self.neural_texture is None:
            raise RuntimeError("render_views needs an avatar: call the method on a photo first")
        frames = render_avatar(self.system.network, self.neural_texture[0], vertices, self.body.faces,
                               self.body.corner_uvs, yaws, size=self.image_size,
                               background=float(self.system.hparams.background))
        return [((f + 1) * 127.5).round().byte().permute(1, 2, 0).numpy() for f in frames]


def dinar_method(ckpt, config, body, progress: bool = False) -> DinarFromPhoto:
    """The DINAR method, or a RuntimeError saying why it is not available."""
    ok, why = dinar_available()
    if not ok:
        raise RuntimeError(f"DINAR avatar not available: {why}. Use --method refinetex.")
    return DinarFromPhoto.from_config(ckpt, config, body, progress)


__all__ = ["DINAR_CONFIG", "TRAIN_HINT", "DinarFromPhoto", "TextureFromPhoto", "dinar_available", "dinar_method",
           "load_system"]
