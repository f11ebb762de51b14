"""Convert third-party checkpoints into saved zoo modules (local files only, strict key checking).

    python -m zoo.pretrained.convert pcb <net_last.pth> [--output DIR] [--num-classes N]

`pcb`: the public PCB ResNet-50 Market-1501 checkpoint (layumi/Person_reID_baseline_pytorch) ->
`zoo.modules.reid.PCBReID`, saved with `save_pretrained` to `$ZOO_HOME/reid-pcb-market1501` (the
registry name the RefineTex Market-1501 / DeepFashion configs load) unless --output says otherwise.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zoo.pretrained.registry import zoo_home

log = logging.getLogger("zoo.pretrained.convert")

DEFAULT_NAMES = {"pcb": "reid-pcb-market1501"}


def convert_pcb(checkpoint: str | Path, output: str | Path | None = None, num_classes: int | None = None) -> Path:
    """PCBReID.from_original_checkpoint(checkpoint).save_pretrained(output or $ZOO_HOME/reid-pcb-market1501)."""
    from zoo.modules.reid import PCBReID

    module = PCBReID.from_original_checkpoint(checkpoint, num_classes=num_classes)
    folder = Path(output).expanduser() if output is not None else zoo_home() / DEFAULT_NAMES["pcb"]
    return module.save_pretrained(folder)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m zoo.pretrained.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(DEFAULT_NAMES), help="what the checkpoint is")
    parser.add_argument("checkpoint", help="path of the original checkpoint file")
    parser.add_argument("--output", default=None, help="folder to write (default $ZOO_HOME/<registry name>)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the checkpoint's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = convert_pcb(args.checkpoint, args.output, args.num_classes)
    log.info("wrote %s (config.yaml + model.safetensors); load it with zoo.pretrained.load_pretrained(%r)",
             folder, DEFAULT_NAMES[args.kind] if args.output is None else str(folder))
    return folder


if __name__ == "__main__":
    main()
