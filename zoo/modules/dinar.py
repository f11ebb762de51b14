"""The whole DINAR avatar network (paper sections 3.1-3.2): image -> style -> generated texture,
joined with the RGB channels sampled from the image, rendered by the neural renderer.

The three parts are zoo modules passed in (in YAML, nested `class_path` / `init_args` entries); the
composite saves and loads as one folder: one config nesting the three, one weight file with the
`encoder.`, `generator.` and `renderer.` tensors. The RGB channels are geometry, not learning
(`zoo.render.neural_texture.rgb_texture_channels`); the caller passes them in.

The paper's Table 2 texture rows are three configurations of this one class:
- both (DINAR): generator (16) + RGB channels (5) -> renderer with 21 texture channels;
- neural texture only: generator (16), `use_rgb_channels=False` -> renderer with 16;
- RGB texture only: no encoder / generator -> renderer with 5.
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, TextureGenerator
from zoo.pretrained import PretrainedMixin

RGB_CHANNELS = 5  # RGB + known mask + gap-fill mask, the last five channels of DINAR's texture


class DinarAvatarNet(PretrainedMixin, nn.Module):
    """Encoder + texture generator + neural renderer, saved and loaded as one network.

    Args:
        renderer: the neural renderer; its `texture_channels` must equal the generator's channels
            plus 5 when the RGB channels are used.
        encoder: the style encoder, or None for an RGB-texture-only avatar (then `generator` must
            be None too).
        generator: the texture generator (its style_dim equal to the encoder's).
        use_rgb_channels: append the 5 image-sampled channels to the generated texture (DINAR).
    """

    def __init__(self, renderer: NeuralRenderer, encoder: StyleEncoder | None = None,
                 generator: TextureGenerator | None = None, use_rgb_channels: bool = True):
        super().__init__()
        if (encoder is None) != (generator is None):
            raise ValueError("encoder and generator go together: give both or neither "
                             f"(encoder={type(encoder).__name__}, generator={type(generator).__name__})")
        if encoder is None and not use_rgb_channels:
            raise ValueError("without encoder and generator the texture is the RGB channels: use_rgb_channels must be True")
        for name, value, cls in (("renderer", renderer, NeuralRenderer), ("encoder", encoder, StyleEncoder),
                                 ("generator", generator, TextureGenerator)):
            if value is not None and not isinstance(value, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        self.encoder, self.generator, self.renderer = encoder, generator, renderer
        self.use_rgb_channels = use_rgb_channels
        generated = getattr(self.generator, "out_channels", 0)
        expected = generated + (RGB_CHANNELS if use_rgb_channels else 0)
        if self.renderer.texture_channels != expected:
            raise ValueError(f"renderer.texture_channels={self.renderer.texture_channels} but the texture has {expected} "
                             f"channels ({generated} generated + {RGB_CHANNELS if use_rgb_channels else 0} RGB)")
        if self.encoder is not None and self.encoder.style_dim != self.generator.style_dim:
            raise ValueError(f"encoder.style_dim={self.encoder.style_dim} != generator.style_dim={self.generator.style_dim}")
        self.texture_channels = expected

    def make_texture(self, image: torch.Tensor | None = None, person_mask: torch.Tensor | None = None,
                     rgb_channels: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                     noise_mode: str | None = None) -> torch.Tensor:
        """The avatar's (B, texture_channels, T, T) texture: generated channels from the image at the
        encoder's size (B, 3, S, S) in [-1, 1] with its person mask (B, 1, S, S), then the five
        `rgb_channels` (B, 5, T, T) when used. `noise` / `noise_mode`: the encoder's noise channel
        and the generator's noise (see `StyleEncoder` and `TextureGenerator`)."""
        parts = []
        if self.generator is not None:
            if image is None:
                raise ValueError("this avatar network generates channels from the image: pass image and person_mask")
            parts.append(self.generator(self.encoder(image, person_mask, noise), noise_mode=noise_mode))
        if self.use_rgb_channels:
            if rgb_channels is None or rgb_channels.ndim != 4 or rgb_channels.shape[1] != RGB_CHANNELS:
                got = None if rgb_channels is None else tuple(rgb_channels.shape)
                raise ValueError(f"rgb_channels must be (B, {RGB_CHANNELS}, T, T), got {got}")
            if parts and parts[0].shape[-2:] != rgb_channels.shape[-2:]:
                raise ValueError(f"rgb_channels side {tuple(rgb_channels.shape[-2:])} differs from the generated "
                                 f"texture's {tuple(parts[0].shape[-2:])}")
            parts.append(rgb_channels.to(parts[0].dtype) if parts else rgb_channels)
        return torch.cat(parts, dim=1)

    def render(self, texture: torch.Tensor, uv: torch.Tensor, uv_mask: torch.Tensor,
               background: torch.Tensor | float | None = 1.0) -> dict[str, torch.Tensor]:
        """Draw the texture at a rasterised pose / view (see `NeuralRenderer.forward`)."""
        return self.renderer(texture, uv, uv_mask, background)

    def forward(self, image: torch.Tensor | None, person_mask: torch.Tensor | None, rgb_channels: torch.Tensor | None,
                uv: torch.Tensor, uv_mask: torch.Tensor, background: torch.Tensor | float | None = 1.0,
                noise: torch.Tensor | None = None, noise_mode: str | None = None) -> dict[str, torch.Tensor]:
        """Source view -> texture -> render at the target's UV. Returns the renderer's dict plus
        "texture"."""
        texture = self.make_texture(image, person_mask, rgb_channels, noise, noise_mode)
        out = self.render(texture, uv, uv_mask, background)
        out["texture"] = texture
        return out
