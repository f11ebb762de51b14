"""Convert third-party checkpoints into saved zoo modules (local files only, strict key checking).

    python -m zoo.pretrained.convert pcb <net_last.pth> [--output DIR] [--num-classes N]

`pcb`: the public PCB ResNet-50 Market-1501 checkpoint (layumi/Person_reID_baseline_pytorch) ->
`zoo.modules.reid.PCBReID`, saved with `save_pretrained` to `$ZOO_HOME/reid-pcb-market1501` (the
registry name the RefineTex Market-1501 / DeepFashion configs load) unless --output says otherwise.

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

from zoo.modules.reid import PCBReID
from zoo.utils.paths import zoo_home

log = logging.getLogger("zoo.pretrained.convert")

DEFAULT_NAMES = {"pcb": "reid-pcb-market1501"}

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


def convert_pcb(checkpoint: str | Path, output: str | Path | None = None, num_classes: int | None = None,
                overwrite: bool = False) -> Path:
    """pcb_from_original_checkpoint(checkpoint).save_pretrained(output or $ZOO_HOME/reid-pcb-market1501)."""
    module = pcb_from_original_checkpoint(checkpoint, num_classes=num_classes)
    folder = Path(output).expanduser() if output is not None else zoo_home() / DEFAULT_NAMES["pcb"]
    return module.save_pretrained(folder, overwrite=overwrite)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m zoo.pretrained.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(DEFAULT_NAMES), help="what the checkpoint is")
    parser.add_argument("checkpoint", help="path of the original checkpoint file")
    parser.add_argument("--output", default=None, help="folder to write (default $ZOO_HOME/<registry name>)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the checkpoint's)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = convert_pcb(args.checkpoint, args.output, args.num_classes, args.overwrite)
    log.info("wrote %s (config.yaml + model.safetensors); load it with zoo.pretrained.load_pretrained(%r)",
             folder, DEFAULT_NAMES[args.kind] if args.output is None else str(folder))
    return folder


if __name__ == "__main__":
    main()
