"""Every RefineTex config (and the synthetic ReID config) parses and instantiates through the zoo
CLI with tiny overrides, and each Table 3 ablation is the composition its name says."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from tests.test_configs import config_args
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
             "deepfashion": (DeformableRefiner, True, True), "predict_folder": (DeformableRefiner, True, True),
             # CPU rows with the refiner's residual head (our departure, zoo.modules.refiners)
             "conv_refine_residual": (ConvRefiner, False, False), "deformable_refine_residual": (DeformableRefiner, False, False),
             "full_residual": (DeformableRefiner, True, True)}


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


def merge(base, override):
    """`override` on `base` as LightningCLI merges YAML files: mappings key by key, except that a
    component with its own class_path replaces the base's component whole."""
    if isinstance(base, dict) and isinstance(override, dict) and "class_path" not in override:
        return {**base, **{k: merge(base.get(k), v) for k, v in override.items()}}
    return override


def test_every_table3_row_and_paper_setting_has_a_config():
    names = {p.stem.removeprefix("ablation_") for p in REFINETEX}
    assert set(ABLATIONS) <= names
    assert {p.stem for p in (CONFIGS / "refinetex" / "cpu").glob("*.yaml")} == set(ABLATIONS) - {
        "synthetic", "market1501", "deepfashion", "predict_folder"}


@pytest.mark.parametrize("path", REFINETEX, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_refinetex_config_instantiates(path, tmp_path, monkeypatch):
    from zoo.cli import ZooCLI

    monkeypatch.setattr("sys.argv", ["zoo"])
    files = config_args(path)[1::2]  # the base first for an override file
    config = {}
    for file in files:
        config = merge(config, yaml.safe_load(Path(file).read_text()))
    cli = ZooCLI(args=[*config_args(path), *tiny_overrides(config, tmp_path)], run=False)
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


# ------------------------------------------------------------ each ablation = its base + the intended keys
REFINER, UNCERTAINTY = "model.init_args.network.init_args.refiner", "model.init_args.uncertainty"
LOSS = "model.init_args.loss.init_args."
CONV = {"class_path": "zoo.modules.refiners.ConvRefiner"}
# ablation -> {changed key or component: its value in the ablation}; every other key equals the base's
INTENDED = {
    "baseline": {REFINER: None, UNCERTAINTY: None, LOSS + "cycle_weight": 0.0, LOSS + "url_weight": 0.0},
    "conv_refine": {REFINER: CONV, UNCERTAINTY: None, LOSS + "cycle_weight": 0.0, LOSS + "url_weight": 0.0},
    "deformable_refine": {UNCERTAINTY: None, LOSS + "cycle_weight": 0.0, LOSS + "url_weight": 0.0},
    "url": {REFINER: None, LOSS + "cycle_weight": 0.0},
    "cycle": {REFINER: None, UNCERTAINTY: None, LOSS + "url_weight": 0.0},
}
BASES = {"cpu/{}.yaml": "cpu/full.yaml", "ablation_{}.yaml": "synthetic.yaml"}


def flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}.{key}" if prefix else key).items()}


def changed(base: dict, other: dict) -> dict:
    """{key: value in `other`} where the two differ; a refiner / uncertainty subtree counts as one key
    (a refiner of another class also drops the base refiner's own arguments)."""
    a, b = flatten(base), flatten(other)
    out = {}
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        component = next((c for c in (REFINER, UNCERTAINTY) if key == c or key.startswith(c + ".")), None)
        if component is None:
            out[key] = b.get(key, "<absent>")
        else:
            value = other
            for part in component.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            out[component] = {"class_path": value["class_path"]} if isinstance(value, dict) else value
    return out


@functools.lru_cache(maxsize=None)
def resolved(rel: str) -> dict:
    """The full config LightningCLI resolves for configs/refinetex/<rel> (its base first for an override
    file), built on the meta device; the list of files given is left out."""
    import torch

    from zoo.cli import ZooCLI

    with torch.device("meta"):
        cli = ZooCLI(args=[*config_args(CONFIGS / "refinetex" / rel), "--trainer.logger=false"], run=False)
    config = cli.config.clone().as_dict()
    config.pop("config", None)
    return config


@pytest.mark.parametrize("pattern,base", BASES.items())
@pytest.mark.parametrize("name", INTENDED)
def test_each_ablation_differs_from_its_base_in_exactly_the_intended_keys(pattern, base, name, monkeypatch):
    """Resolved by LightningCLI from `--config <base> --config <override>` (what a run gets): nothing but
    the intended keys changes, and the override file itself names nothing else."""
    monkeypatch.setattr("sys.argv", ["zoo"])
    assert changed(resolved(base), resolved(pattern.format(name))) == INTENDED[name]
    override = flatten(yaml.safe_load((CONFIGS / "refinetex" / pattern.format(name)).read_text()))
    assert all(key.startswith((REFINER, UNCERTAINTY)) or key in INTENDED[name] for key in override), \
        "an override file says only the intended keys"


def test_the_diff_sees_every_kind_of_change():
    base = {"model": {"init_args": {"network": {"init_args": {"refiner": {"class_path": "x.Deformable",
                                                                          "init_args": {"k": 3}}}},
                                    "loss": {"init_args": {"cycle_weight": 0.1}}, "lr": 0.001}}}
    other = yaml.safe_load(yaml.safe_dump(base))
    other["model"]["init_args"]["lr"] = 0.002
    other["model"]["init_args"]["network"]["init_args"]["refiner"]["init_args"]["k"] = 5
    assert changed(base, other) == {"model.init_args.lr": 0.002, REFINER: {"class_path": "x.Deformable"}}


@pytest.mark.parametrize("name", ["conv_refine", "deformable_refine", "full"])
def test_each_residual_row_is_its_row_with_only_the_residual_head_on(name, monkeypatch):
    """cpu/<row>_residual.yaml resolves to cpu/<row>.yaml (cpu/full.yaml for full) with one key changed."""
    monkeypatch.setattr("sys.argv", ["zoo"])
    row = resolved("cpu/full.yaml" if name == "full" else f"cpu/{name}.yaml")
    a, b = flatten(row), flatten(resolved(f"cpu/{name}_residual.yaml"))
    key = REFINER + ".init_args.residual_head"
    assert {k: b.get(k) for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>")} == {key: True}
    assert a[key] is False
