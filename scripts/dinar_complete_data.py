"""Stages 1 and 2 of scripts/dinar_complete_results.py (see its docstring): the stage-1 networks exported
as `DinarAvatarNet` folders under --work/stage1/<row>, and the stage-2 pairs of the "both" network
(`NeuralTexturePairsDataModule`, cached under --work/pairs_occ and --work/pairs_plain)."""
from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import torch
import yaml

from zoo.utils.runs import Timer

ROWS = ("both", "neural", "rgb")
log = logging.getLogger("dinar_complete")


# --- 1. stage-1 networks ----------------------------------------------------------------------
ENCODER_IMAGE = {"zoo.datamodules.avatars.SyntheticAvatarDataModule": "on_black",  # person on black
                 "zoo.datamodules.SyntheticAvatarDataModule": "on_black",
                 "zoo.datamodules.SyntheticPeopleDataModule": "raw",  # the view with its background
                 "zoo.datamodules.synthetic.SyntheticPeopleDataModule": "raw"}


def stage1_sources(items: list[str], required: tuple[str, ...] = ROWS) -> dict[str, Path]:
    """--stage1 values -> {row: run folder or checkpoint}: `row=PATH` for each row given (at least
    the `required` ones), or one folder holding a run folder per row (the --out of
    scripts/dinar_results.py)."""
    if len(items) == 1 and "=" not in items[0]:
        return {row: Path(items[0]) / row for row in ROWS}
    sources = {}
    for item in items:
        row, sep, path = item.partition("=")
        if not sep or row not in ROWS or row in sources:
            raise SystemExit(f"--stage1: expected one ROW=PATH per row ({', '.join(ROWS)}), got {item!r}")
        sources[row] = Path(path)
    if set(required) - set(sources):
        raise SystemExit(f"--stage1: missing {sorted(set(required) - set(sources))}")
    return sources


def stage1_data_settings(config: dict, identities: int, views: int) -> dict:
    """The stage-2 pairs' people from a stage-1 run config: the same generator settings (preset and
    overrides: image and texture size, shading, ...), erosion and encoder input, more identities."""
    data = config["data"]
    init = data.get("init_args", {})
    if data["class_path"] not in ENCODER_IMAGE:
        raise SystemExit(f"stage-1 data {data['class_path']!r}: expected one of {sorted(ENCODER_IMAGE)}")
    from zoo.datamodules import NeuralTexturePairsDataModule, SyntheticAvatarDataModule

    erode = init.get("erode", inspect.signature(SyntheticAvatarDataModule).parameters["erode"].default)
    if "erode" not in init and ENCODER_IMAGE[data["class_path"]] == "raw":  # that module has no erode
        erode = inspect.signature(NeuralTexturePairsDataModule).parameters["erode"].default
    overrides = {**init.get("overrides", {}), "num_identities": identities, "views_per_identity": views}
    return {"preset": init.get("preset", "dinar"), "overrides": overrides, "erode": int(erode),
            "encoder_image": ENCODER_IMAGE[data["class_path"]]}


def export_stage1(args, required: tuple[str, ...] = ROWS) -> None:
    """Export each --stage1 row not exported yet (a row exported before must name the same checkpoint)."""
    from zoo.cli import ZooCLI
    from zoo.utils.runs import run_checkpoint

    for row, source in stage1_sources(args.stage1, required).items():
        folder = args.work / "stage1" / row
        run, checkpoint = run_checkpoint(source)
        done = folder / "source.json"
        if done.is_file():
            previous = json.loads(done.read_text())["checkpoint"]
            if previous != str(checkpoint):
                raise SystemExit(f"{folder} was exported from {previous}, not {checkpoint}: use another --work")
            continue
        cli = ZooCLI(args=["--config", str(run / "row_config.yaml"), "--trainer.logger=false"], run=False)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        cli.model.load_state_dict(state["state_dict"], strict=True)
        cli.model.network.save_pretrained(folder, overwrite=True)
        cli.model.discriminator.save_pretrained(folder / "discriminator", overwrite=True)  # RGB fine-tuning
        config = yaml.safe_load((run / "row_config.yaml").read_text())
        data = stage1_data_settings(config, args.identities, args.views)
        done.write_text(json.dumps({"checkpoint": str(checkpoint), "step": state["global_step"], "data": data}))
        log.info("exported %s (step %d) to %s", checkpoint, state["global_step"], folder)


def pairs_data(args) -> dict:
    """The pairs' people settings, recorded when the "both" network was exported."""
    return json.loads((args.work / "stage1" / "both" / "source.json").read_text())["data"]


def stage1_net(args, row: str):
    from zoo.pretrained import load_pretrained

    return load_pretrained(str(args.work / "stage1" / row)).eval().requires_grad_(False)


# --- 2. pairs ---------------------------------------------------------------------------------
def pairs_module(args, occlusion: bool, splits: list[str] | None = None, batch_size: int = 32):
    from zoo.datamodules import NeuralTexturePairsDataModule

    return NeuralTexturePairsDataModule(
        str(args.work / "stage1" / "both"), **pairs_data(args), occlusion_detector=occlusion,
        cache_dir=str(args.work / ("pairs_occ" if occlusion else "pairs_plain")),
        batch_size=batch_size, splits=splits, progress=False)


def build_pairs(args) -> None:
    for occlusion, splits in ((True, None), (False, ["test"])):
        with Timer() as t:
            pairs_module(args, occlusion, splits).setup()
        log.info("pairs (occlusion detector %s): %.0f s", occlusion, t.wall)


def data_args(args, occlusion: bool = True) -> dict:
    return {"class_path": "zoo.datamodules.NeuralTexturePairsDataModule",
            "init_args": {"avatar_net": str(args.work / "stage1" / "both"), **pairs_data(args),
                          "occlusion_detector": occlusion, "cache_dir": str(args.work / "pairs_occ"), "progress": False}}
