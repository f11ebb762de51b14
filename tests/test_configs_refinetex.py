"""Every RefineTex config (and the synthetic ReID config) parses and instantiates through the zoo
CLI with tiny overrides, and each Table 3 ablation is the composition its name says."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zoo.modules.refiners import ConvRefiner, DeformableRefiner
from zoo.modules.uncertainty import UncertaintyHead
from zoo.systems.refinetex import RefineTexSystem

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REFINETEX = sorted((CONFIGS / "refinetex").rglob("*.yaml"))
# name -> (refiner class, uncertainty head?, cycle on?) of the paper's Table 3 rows
ABLATIONS = {"baseline": (None, False, False), "conv_refine": (ConvRefiner, False, False),
             "deformable_refine": (DeformableRefiner, False, False), "url": (None, True, False),
             "cycle": (None, False, True), "full": (DeformableRefiner, True, True),
             "synthetic": (DeformableRefiner, True, True), "market1501": (DeformableRefiner, True, True),
             "deepfashion": (DeformableRefiner, True, True), "predict_folder": (DeformableRefiner, True, True)}


def tiny_overrides(config: dict, tmp_path: Path) -> list[str]:
    model = config["model"]["init_args"]
    net, parts = "--model.init_args.network.init_args", model["network"]["init_args"]
    args = [f"{net}.backbone.init_args.feat_dim=8", f"{net}.backbone.init_args.num_heads=2",
            f"{net}.backbone.init_args.uv_size=[16, 16]", "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}"]
    if parts.get("refiner"):
        args.append(f"{net}.refiner.init_args.hidden_channels=8")
        if "feature_channels" in parts["refiner"].get("init_args", {}):
            args.append(f"{net}.refiner.init_args.feature_channels=8")
    if model.get("uncertainty"):
        args.append("--model.init_args.uncertainty.init_args.width=8")
    data = config["data"]["init_args"]
    if "preset" in data:
        args += ["--data.init_args.preset=tiny", f"--data.init_args.data_dir={tmp_path / 'data'}"]
    else:
        args += [f"--data.init_args.root={tmp_path}", "--data.init_args.batch_size=2"]
    return args


def test_every_table3_row_and_paper_setting_has_a_config():
    names = {p.stem.removeprefix("ablation_") for p in REFINETEX}
    assert set(ABLATIONS) <= names
    assert {p.stem for p in (CONFIGS / "refinetex" / "cpu").glob("*.yaml")} == set(ABLATIONS) - {
        "synthetic", "market1501", "deepfashion", "predict_folder"}


@pytest.mark.parametrize("path", REFINETEX, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_refinetex_config_instantiates(path, tmp_path, monkeypatch):
    from zoo.cli import ZooCLI

    monkeypatch.setattr("sys.argv", ["zoo"])
    config = yaml.safe_load(path.read_text())
    cli = ZooCLI(args=["--config", str(path), *tiny_overrides(config, tmp_path)], run=False)
    model = cli.model
    assert isinstance(model, RefineTexSystem)
    assert model.network.uv_size == (16, 16)
    refiner, uncertainty, cycle = ABLATIONS[path.stem.removeprefix("ablation_")]
    assert (type(model.network.refiner) if model.network.refiner is not None else None) is refiner
    assert isinstance(model.uncertainty, UncertaintyHead) is uncertainty
    weights = model.loss.weights
    assert (weights["cycle"] == 0.1) is cycle and (weights["url"] == 1e-3) is uncertainty
    # the paper's base-loss weights everywhere; the ground-truth texture loss only as an opt-in
    assert (weights["reid"], weights["style"], weights["face"], weights["novel_view"]) == (5000.0, 0.4, 0.01, 1.0)
    assert weights["texture_l1"] == 0.0 and model.hparams.lr == 1e-3
    assert type(cli.datamodule).__name__ in ("SyntheticPeopleDataModule", "Market1501DataModule", "DeepFashionDataModule",
                                             "ImageFolderDataModule")


def test_reid_synthetic_config_instantiates(tmp_path, monkeypatch):
    from zoo.cli import ZooCLI
    from zoo.systems.reid import ReIDSystem

    monkeypatch.setattr("sys.argv", ["zoo"])
    path = CONFIGS / "reid" / "synthetic.yaml"
    cli = ZooCLI(args=["--config", str(path), "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
                       "--data.init_args.preset=tiny", f"--data.init_args.data_dir={tmp_path}"], run=False)
    assert isinstance(cli.model, ReIDSystem) and cli.model.hparams.export_name_or_path == "reid-synthetic"
    assert cli.datamodule.pairs == "none"
    # the classifier must cover every global identity id of the preset the config trains on
    from zoo.datamodules import PRESETS

    preset = yaml.safe_load(path.read_text())["data"]["init_args"]["preset"]
    assert cli.model.network.num_classes == PRESETS[preset].num_identities
