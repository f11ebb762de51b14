"""Convert third-party checkpoints into saved zoo modules (local files only, strict key checking).

    python -m zoo.pretrained.convert pcb <net_last.pth> [--output DIR] [--num-classes N]
    python -m zoo.pretrained.convert resnet50 <torchreid_resnet50_market.pth> [--output DIR]
    python -m zoo.pretrained.convert texformer <texformer_ep500.pt> [--output DIR] [--num-heads 8] [--uv-size 128 128]

`pcb`: the public PCB ResNet-50 Market-1501 checkpoint (layumi/Person_reID_baseline_pytorch) ->
`zoo.modules.reid.PCBReID` (CosSim, ReID and style losses), saved to `$ZOO_HOME/reid-pcb-market1501`.
`resnet50`: a torchreid ResNet-50 Market-1501 checkpoint -> `zoo.modules.reid.TorchreidResNet50`
(CosSim-R), saved to `$ZOO_HOME/reid-resnet50-market1501`.
`texformer`: Texformer's released weights -> `zoo.modules.texformer.TexformerBackbone`, the conv
biases folded into the BatchNorm running means (exact), saved to `$ZOO_HOME/texformer-smplmarket`.
Each default folder is the registry name its configs load; --output writes elsewhere (--overwrite
replaces the files of a non-empty folder).

Texformer's checkpoint. The reference network is the same computation as `TexformerBackbone` with
other module names and one difference in parameters: every 3x3 conv of the reference keeps a bias
although a BatchNorm follows it. The zoo drops those biases (BatchNorm cancels them in training;
they are dead parameters), so the conversion folds each one into the BatchNorm after it:
BN(conv(x) + b) with running mean m == BN(conv(x)) with running mean m - b, exact in eval mode
(running statistics) and in training mode (the batch mean absorbs b). Reference key layout (a
bare `state_dict()` of its `Texformer` module): encoders `unet_q` / `unet_k` / `unet_v` with blocks
`conv_in` (conv-BN-ReLU at `conv.0`, `conv.1`), `conv1`, `conv2` (stride-2 double conv), `conv3`
(double conv), `conv4`, `conv5` (nearest upsample first, so their layers sit at `conv.1`, `conv.2`,
`conv.4`, `conv.5`), `conv6` (double conv); attention units `trans_dec.3` / `.4` / `.5` at 1/4
(softmax), 1/2 and full size (linear), each `attn.w_qs`, `attn.w_ks`, `attn.w_vs`, `attn.fc`,
`linear1`, `linear2`, `norm`; decoder blocks `conv0` ... `conv5` as above and `conv6` =
(conv-BN-ReLU `conv6.0.conv.*`, output conv `conv6.1`).

Layering: this file is a command-line tool on top of `zoo.modules` (it builds the module it
converts into); the rest of `zoo.pretrained` sits below the modules and never imports them.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from zoo.modules.reid import PCBReID, TorchreidResNet50
from zoo.modules.texformer import TexformerBackbone
from zoo.utils.paths import zoo_home

log = logging.getLogger("zoo.pretrained.convert")

DEFAULT_NAMES = {"pcb": "reid-pcb-market1501", "resnet50": "reid-resnet50-market1501",
                 "texformer": "texformer-smplmarket"}

# Original (layumi Person_reID_baseline_pytorch PCB) key -> our key. The ResNet's own `fc` is kept
# in the original model but never used by PCB; it is the only part of the checkpoint we drop.
PCB_KEY_RULES = [
    (re.compile(r"^model\.fc\.(weight|bias)$"), None),
    (re.compile(r"^model\.(.+)$"), r"backbone.\1"),
    (re.compile(r"^classifier(\d+)\.add_block\.([01])\.(.+)$"), r"heads.\1.bottleneck.\2.\3"),
    (re.compile(r"^classifier(\d+)\.classifier\.0\.(.+)$"), r"heads.\1.classifier.\2"),
]

PCB_CHECKPOINT_HELP = (
    "the PCB ResNet-50 Market-1501 checkpoint of layumi/Person_reID_baseline_pytorch "
    "(the `net_last.pth` in the PCB model folder of that project's released models; keys "
    "`model.conv1.weight`, `model.layer1...`, `classifier0.add_block...`, ... `classifier5...`)"
)


def convert_pcb_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of a layumi PCB state dict to `PCBReID`'s keys (unknown keys are an error)."""
    if original and all(k.startswith("module.") for k in original):  # saved from DataParallel
        original = {k[len("module."):]: v for k, v in original.items()}
    converted, unknown = {}, []
    for key, value in original.items():
        for pattern, target in PCB_KEY_RULES:
            if pattern.match(key):
                if target is not None:
                    converted[pattern.sub(target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"unexpected keys in the PCB checkpoint (not in the layumi PCB layout): {unknown[:8]}"
                       + (f" ... {len(unknown)} in all" if len(unknown) > 8 else ""))
    return converted


def pcb_from_original_checkpoint(path: str | os.PathLike, num_classes: int | None = None,
                                 input_size: Sequence[int] = (384, 128)) -> PCBReID:
    """Build a PCBReID from the public PCB Market-1501 checkpoint, with strict key checking.

    `num_classes` defaults to the checkpoint's classifier size. Every tensor of the module must
    come from the checkpoint and every checkpoint tensor except the unused `model.fc.*` must land
    in the module; shapes must match. Save the result with `save_pretrained` (for example to
    `$ZOO_HOME/reid-pcb-market1501`) to load it by name afterwards.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no PCB checkpoint at {path}. Download {PCB_CHECKPOINT_HELP} yourself (the zoo never "
            f"downloads) and pass its path; then save_pretrained the result to "
            f"$ZOO_HOME/reid-pcb-market1501 to use it by the name 'reid-pcb-market1501'."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    converted = convert_pcb_state_dict(state)
    head_weight = converted.get("heads.0.classifier.weight")
    if head_weight is None:
        raise KeyError(f"{path} has no classifier0.classifier.0.weight: not a layumi PCB checkpoint")
    stripes = len({k.split(".")[1] for k in converted if k.startswith("heads.")})
    module = PCBReID(num_classes=int(head_weight.shape[0]) if num_classes is None else num_classes,
                     stripes=stripes, bottleneck_dim=int(head_weight.shape[1]), input_size=list(input_size))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise KeyError(f"PCB checkpoint {path} does not match PCBReID: missing {missing[:8]}, "
                       f"unexpected {unexpected[:8]}")
    bad = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in converted.items()
           if v.shape != expected[k].shape]
    if bad:
        raise ValueError(f"PCB checkpoint {path} has tensors of the wrong shape (key, got, expected): {bad[:4]}")
    module.load_state_dict(converted, strict=True)
    return module


def load_state_dict_file(path: str | os.PathLike, what: str, how_to_get: str) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (top level or under "state_dict", "module." prefixes removed),
    loaded with weights_only=True; a missing file says how to get it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no {what} checkpoint at {path}. Download {how_to_get} yourself (the zoo never "
                                "downloads) and pass its path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """module.load_state_dict(state, strict=True) after naming every missing / unexpected / misshapen key."""
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{what} does not match {type(module).__name__}: missing {missing[:8]}, unexpected {unexpected[:8]}")
    bad = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise ValueError(f"{what} has tensors of the wrong shape (key, got, expected): {bad[:4]}")
    module.load_state_dict(state, strict=True)
    return module


# ----------------------------------------------------------------------------------- torchreid
TORCHREID_CHECKPOINT_HELP = (
    "a torchreid (KaiyangZhou/deep-person-reid) `resnet50` Market-1501 checkpoint, the one Texformer's "
    "CosSim-R loads (keys `conv1.weight`, `bn1.*`, `layer1...layer4`, `classifier.weight`, `classifier.bias`, "
    "optionally under `state_dict`)"
)


def torchreid_resnet50_from_original_checkpoint(path: str | os.PathLike, input_size: Sequence[int] = (256, 128)):
    """A TorchreidResNet50 from a torchreid `resnet50` checkpoint (keys match one to one; the number of
    classes is read off `classifier.weight`), with strict key and shape checking."""
    state = load_state_dict_file(path, "torchreid ResNet-50", TORCHREID_CHECKPOINT_HELP)
    if "classifier.weight" not in state:
        raise KeyError(f"{path} has no classifier.weight: not a torchreid resnet50 checkpoint")
    module = TorchreidResNet50(num_classes=int(state["classifier.weight"].shape[0]), input_size=list(input_size))
    return load_strict(module, state, f"torchreid checkpoint {path}")


# ----------------------------------------------------------------------------------- Texformer
TEXFORMER_CHECKPOINT_HELP = (
    "Texformer's released weights (xuxy09/Texformer: `pretrained/texformer_ep500.pt`, a bare state dict of "
    "its `Texformer` module with keys `unet_q.conv_in.conv.0.weight`, ..., `trans_dec.3.attn.w_qs.weight`, ..., "
    "`conv6.1.bias`)"
)

# Reference Sequential index -> (our conv_stack layer, 0 = conv / 1 = BatchNorm).
_SINGLE = {0: (0, 0), 1: (0, 1)}
_DOUBLE = {0: (0, 0), 1: (0, 1), 3: (1, 0), 4: (1, 1)}
_DOUBLE_UP = {1: (0, 0), 2: (0, 1), 4: (1, 0), 5: (1, 1)}  # index 0 is the parameter-free upsampling
_ENCODER_BLOCKS = {"conv_in": ("inc", _SINGLE), "conv1": ("down1", _DOUBLE), "conv2": ("down2", _DOUBLE),
                   "conv3": ("mid", _DOUBLE), "conv4": ("up1", _DOUBLE_UP), "conv5": ("up0", _DOUBLE_UP),
                   "conv6": ("out", _DOUBLE)}
_DECODER_BLOCKS = {"conv0": ("inc", _DOUBLE), "conv1": ("down1", _DOUBLE), "conv2": ("down2", _DOUBLE),
                   "conv3": ("mid", _DOUBLE), "conv4": ("up1", _DOUBLE_UP), "conv5": ("up0", _DOUBLE_UP)}
_ENCODERS = {"unet_q": "query_encoder", "unet_k": "key_encoder", "unet_v": "value_encoder"}
_ATTENTION = {"3": "attention.2", "4": "attention.1", "5": "attention.0"}  # 1/4, 1/2, full
_ATTENTION_PARTS = {"attn.w_qs": "to_q", "attn.w_ks": "to_k", "attn.w_vs": "to_v", "attn.fc": "proj",
                    "linear1": "ffn.0", "linear2": "ffn.2", "norm": "norm"}
_BLOCK = re.compile(r"^(?:(unet_[qkv])\.)?(conv\w+)\.conv\.(\d+)\.(\w+)$")


def _rename(key: str) -> str | None:
    """Our key for a reference key (None: not a reference key)."""
    match = _BLOCK.match(key)
    if match:
        encoder, block, index, leaf = match.groups()
        table = _ENCODER_BLOCKS if encoder else _DECODER_BLOCKS
        if block not in table or int(index) not in table[block][1]:
            return None
        stack, (layer, part) = table[block][0], table[block][1][int(index)]
        owner = _ENCODERS[encoder] if encoder else "decoder"
        return f"{owner}.{stack}.{layer}.{part}.{leaf}"
    match = re.match(r"^conv6\.0\.conv\.([01])\.(\w+)$", key)
    if match:
        return f"decoder.out.0.{match.group(1)}.{match.group(2)}"
    match = re.match(r"^conv6\.1\.(weight|bias)$", key)
    if match:
        return f"head.{match.group(1)}"
    match = re.match(r"^trans_dec\.([345])\.(attn\.w_qs|attn\.w_ks|attn\.w_vs|attn\.fc|linear1|linear2|norm)\.(\w+)$", key)
    if match:
        return f"{_ATTENTION[match.group(1)]}.{_ATTENTION_PARTS[match.group(2)]}.{match.group(3)}"
    return None


def convert_texformer_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference state dict to `TexformerBackbone` keys and fold the biases of the convs
    that a BatchNorm follows into that BatchNorm's running mean. Raises KeyError on any key that is
    not part of the reference layout, or on a conv bias without its BatchNorm."""
    if original and all(k.startswith("module.") for k in original):  # saved from DataParallel
        original = {k[len("module."):]: v for k, v in original.items()}
    converted, biases, unknown = {}, {}, []
    for key, value in original.items():
        ours = _rename(key)
        if ours is None:
            unknown.append(key)
        elif ours.endswith(".0.bias") and not ours.startswith(("head.", "attention.")):
            biases[ours[: -len(".0.bias")]] = (key, value)  # conv bias of a conv-BN-ReLU layer
        else:
            converted[ours] = value
    if unknown:
        raise KeyError(f"keys outside Texformer's checkpoint layout: {unknown[:8]}"
                       + (f" ... {len(unknown)} in all" if len(unknown) > 8 else ""))
    for layer, (key, bias) in biases.items():
        mean_key = f"{layer}.1.running_mean"
        if mean_key not in converted:
            raise KeyError(f"{key}: no BatchNorm running mean ({mean_key}) to fold the conv bias into")
        converted[mean_key] = converted[mean_key] - bias.to(converted[mean_key].dtype)
    return converted


def texformer_from_original_checkpoint(path: str | os.PathLike, num_heads: int = 8, uv_size: Sequence[int] = (128, 128),
                              **backbone_kwargs):
    """A `TexformerBackbone` carrying the weights of a Texformer checkpoint, with strict key checking.

    `feat_dim` is read off the checkpoint; `num_heads` and `uv_size` are not stored in it (a head
    split is a reshape, the convs are size-agnostic): 8 heads and a 128x128 UV map are the released
    model's. The query colour code is not part of the checkpoint either: the backbone keeps its
    analytic code until `set_query_code` installs the body's (RefineTexSystem does it from the
    data's `uv_maps()`). Save the result with `save_pretrained` to load it by name.
    """
    converted = convert_texformer_state_dict(load_state_dict_file(path, "Texformer", TEXFORMER_CHECKPOINT_HELP))
    first = converted.get("query_encoder.inc.0.0.weight")
    if first is None:
        raise KeyError(f"{path} has no unet_q.conv_in.conv.0.weight: not a Texformer checkpoint")
    module = TexformerBackbone(feat_dim=int(first.shape[0]), num_heads=num_heads, uv_size=list(uv_size), **backbone_kwargs)
    converted["query_code"] = module.state_dict()["query_code"]
    return load_strict(module, converted, f"Texformer checkpoint {path}")


# ----------------------------------------------------------------------------------- commands
def _folder(kind: str, output: str | Path | None) -> Path:
    return Path(output).expanduser() if output is not None else zoo_home() / DEFAULT_NAMES[kind]


def convert_pcb(checkpoint: str | Path, output: str | Path | None = None, num_classes: int | None = None,
                overwrite: bool = False) -> Path:
    """pcb_from_original_checkpoint(checkpoint).save_pretrained(output or $ZOO_HOME/reid-pcb-market1501)."""
    module = pcb_from_original_checkpoint(checkpoint, num_classes=num_classes)
    folder = Path(output).expanduser() if output is not None else zoo_home() / DEFAULT_NAMES["pcb"]
    return module.save_pretrained(folder, overwrite=overwrite)


def convert_resnet50(checkpoint: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Path:
    """A torchreid resnet50 checkpoint as TorchreidResNet50, saved to output or $ZOO_HOME/reid-resnet50-market1501."""
    module = torchreid_resnet50_from_original_checkpoint(checkpoint)
    return module.save_pretrained(_folder("resnet50", output), overwrite=overwrite)


def convert_texformer(checkpoint: str | Path, output: str | Path | None = None, num_heads: int = 8,
                      uv_size: Sequence[int] = (128, 128), overwrite: bool = False) -> Path:
    """Texformer's checkpoint as a TexformerBackbone, saved to output or $ZOO_HOME/texformer-smplmarket."""
    module = texformer_from_original_checkpoint(checkpoint, num_heads=num_heads, uv_size=uv_size)
    return module.save_pretrained(_folder("texformer", output), overwrite=overwrite)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m zoo.pretrained.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(DEFAULT_NAMES), help="what the checkpoint is")
    parser.add_argument("checkpoint", help="path of the original checkpoint file")
    parser.add_argument("--output", default=None, help="folder to write (default $ZOO_HOME/<registry name>)")
    parser.add_argument("--num-classes", type=int, default=None, help="pcb: classifier size (default: the checkpoint's)")
    parser.add_argument("--num-heads", type=int, default=8, help="texformer: attention heads (not in the checkpoint)")
    parser.add_argument("--uv-size", type=int, nargs=2, default=(128, 128), help="texformer: UV map H W")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.kind == "pcb":
        folder = convert_pcb(args.checkpoint, args.output, args.num_classes, args.overwrite)
    elif args.kind == "resnet50":
        folder = convert_resnet50(args.checkpoint, args.output, args.overwrite)
    else:
        folder = convert_texformer(args.checkpoint, args.output, args.num_heads, list(args.uv_size), args.overwrite)
    log.info("wrote %s (config.yaml + model.safetensors); load it with zoo.pretrained.load_pretrained(%r)",
             folder, DEFAULT_NAMES[args.kind] if args.output is None else str(folder))
    return folder


if __name__ == "__main__":
    main()
