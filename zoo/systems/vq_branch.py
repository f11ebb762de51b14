"""DINAR's VQGAN branch of the avatar pipeline (paper sections 3.3 and 4): after the VQGAN is
trained on the stage-1 textures, "the pipeline is finetuned end-to-end" for 20k steps with the
texture passed through the VQGAN before the renderer, "to adapt the renderer to VQGAN decompression
artifacts in the neural texture T_res". `NeuralAvatarSystem` runs this fine-tuning with its
`vqgan`, `init_from`, `trainable` and `vq_branch_probability` options; the helpers live here so
the system stays thin (a helper module of `zoo.systems`, no LightningModule).

DINAR's released code is inference-only (SamsungLabs/DINAR: `inpainting/first_stage.py`,
`compress_models/vqmodel.py`): it shows the branch (the texture is encoded, quantised and decoded,
then rasterised and rendered) but not the fine-tuning loop, whose settings come from the paper.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn

from zoo.callbacks.checkpoints import read_checkpoint
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained
from zoo.pretrained.registry import resolve
from zoo.render.uv_space import partial_texture_layout

# which parts of the avatar network the fine-tuning trains (the discriminator always trains)
TRAINABLE = {"all": ("encoder", "generator", "renderer"), "renderer": ("renderer",)}


def load_vqgan(source: str | os.PathLike | VQGAN, texture_channels: int) -> VQGAN:
    """The branch's VQGAN: a module, or a saved one by name / folder (`load_pretrained`, safetensors),
    checked to take and give back the avatar's `texture_channels`."""
    vqgan = load_pretrained(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(vqgan, VQGAN):
        raise TypeError(f"vqgan must be a zoo.modules.vqgan.VQGAN (a module or a saved one's name / folder), got "
                        f"{type(vqgan).__name__}" + (f" from {source!r}" if isinstance(source, (str, os.PathLike)) else ""))
    if vqgan.in_channels != texture_channels or vqgan.out_channels < texture_channels:
        raise ValueError(f"the VQGAN maps {vqgan.in_channels} -> {vqgan.out_channels} channels but the avatar texture has "
                         f"{texture_channels}: it must encode the stage-1 texture (its in_channels equal, out_channels >=)")
    return vqgan


def check_branch_settings(vqgan: object, probability: float, trainable: str, init_from: str | None) -> None:
    """Validate `NeuralAvatarSystem`'s branch options (see its docstring), naming the bad value."""
    if not 0.0 <= probability <= 1.0 or trainable not in TRAINABLE:
        raise ValueError(f"vq_branch_probability must be in [0, 1] and trainable in {sorted(TRAINABLE)}, got "
                         f"{probability!r} and {trainable!r}")
    if vqgan is None and (init_from is not None or trainable != "all" or probability != 1.0):
        raise ValueError(f"init_from={init_from!r}, trainable={trainable!r} and vq_branch_probability={probability!r} "
                         "are settings of the VQGAN-branch fine-tuning: give vqgan too")


def check_branch_assets(vqgan: str | os.PathLike | VQGAN | None, init_from: str | os.PathLike | None) -> None:
    """Raise, naming the file, when the branch's saved VQGAN or the `init_from` checkpoint is missing or
    unreadable (called before any data is prepared)."""
    if isinstance(vqgan, (str, os.PathLike)):
        resolve(vqgan)
    if init_from is not None:
        read_checkpoint(init_from)


def vq_roundtrip(vqgan: VQGAN, texture: torch.Tensor) -> torch.Tensor:
    """T_res: the stage-1 texture (B, C, T, T; DINAR's layout, the known-or-filled and gap masks last)
    encoded, quantised and decoded by `vqgan`, first C channels.

    The VQGAN input is the one the stage-2 pipeline gives it (`zoo.inference.dinar_pipeline`):
    channels zeroed off the known-or-filled texels, the two masks kept (`partial_texture_layout`).
    The quantiser is straight-through, so the gradient reaches the texture (and the generator)
    unchanged through a frozen VQGAN.
    """
    if texture.ndim != 4 or texture.shape[1] != vqgan.in_channels:
        raise ValueError(f"texture must be (B, {vqgan.in_channels}, T, T) for this VQGAN, got {tuple(texture.shape)}")
    if texture.shape[-1] % vqgan.downsampling or texture.shape[-2] % vqgan.downsampling:
        raise ValueError(f"texture side {tuple(texture.shape[-2:])} must be a multiple of the VQGAN's downsampling "
                         f"{vqgan.downsampling}")
    channels = texture.shape[1]
    vq_input = partial_texture_layout(texture[:, :-2], texture[:, -2:-1], texture[:, -1:])
    return vqgan.decode(vqgan.encode(vq_input, quantize=True))[:, :channels]


def trainable_parameters(network: nn.Module, trainable: str) -> list[nn.Parameter]:
    """The avatar network's parameters the fine-tuning trains (`TRAINABLE[trainable]`); the other parts
    are frozen here (no gradient), so their weights stay exactly those of the initialisation."""
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {sorted(TRAINABLE)}, got {trainable!r}")
    params = []
    for name, child in network.named_children():
        train = name in TRAINABLE[trainable]
        child.requires_grad_(train)
        params += list(child.parameters()) if train else []
    if not params:
        raise ValueError(f"trainable={trainable!r} leaves no parameter of {type(network).__name__} to train")
    return params


def branch_parameters(network: nn.Module, vqgan: object, trainable: str) -> Iterable[nn.Parameter]:
    """The generator-side parameters `NeuralAvatarSystem` optimises: all of the avatar network's without
    a `vqgan` (stage 1), else those of its `trainable` parts (`trainable_parameters`)."""
    return network.parameters() if vqgan is None else trainable_parameters(network, trainable)


def load_stage1(system: nn.Module, path: str | os.PathLike) -> int:
    """Fill `system` (network, discriminator and its step counters) from a stage-1 `NeuralAvatarSystem`
    checkpoint, read with weights_only and loaded strictly (a checkpoint of another architecture
    fails naming the mismatched keys). Returns the checkpoint's global step."""
    state = read_checkpoint(path)
    if "state_dict" not in state:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict'); init_from takes a stage-1 "
                         "NeuralAvatarSystem checkpoint")
    system.load_state_dict(state["state_dict"], strict=True)
    return int(state.get("global_step", 0))
