"""Every YAML under configs/ parses and instantiates (model and data; no data is touched).

Modules are built on the meta device, so the paper-sized configs (hundreds of millions of
parameters) cost nothing; their constructors still run and validate every argument.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import zoo.datamodules.datasets.procedural  # noqa: F401 - its module-level tensors must not be made on the meta device
from zoo.cli import ZooCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml"))
# configs that need a local asset not present in tests get it switched off here; each one's failure at
# start without the asset is tested next to the config (tests/test_configs_inpainting.py)
WITHOUT_ASSETS = {"inpainting/vqgan_dinar.yaml": ["--model.init_args.perceptual_weight=0.0"],  # LPIPS(vgg) file
                  "dinar/vqgan_dinar.yaml": ["--model.init_args.perceptual_weight=0.0"]}
# override files (a base plus the few keys an ablation changes; LightningCLI merges several --config in
# order: `--config <base> --config <override>`) -> their base, relative to configs/
ABLATION_ROWS = ("baseline", "conv_refine", "deformable_refine", "url", "cycle")
# our departure (zoo.modules.refiners residual_head), measured at CPU size only
RESIDUAL_ROWS = ("conv_refine_residual", "deformable_refine_residual", "full_residual")
OVERRIDE_BASES = {**{f"refinetex/cpu/{row}.yaml": "refinetex/cpu/full.yaml" for row in ABLATION_ROWS + RESIDUAL_ROWS},
                  **{f"refinetex/ablation_{row}.yaml": "refinetex/synthetic.yaml" for row in ABLATION_ROWS}}


def config_args(path: Path) -> list[str]:
    """`--config` arguments that run the config at `path`: its base first when it is an override file."""
    base = OVERRIDE_BASES.get(path.relative_to(ROOT / "configs").as_posix())
    return ["--config", str(ROOT / "configs" / base), "--config", str(path)] if base else ["--config", str(path)]


def test_there_are_configs():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_parses_and_instantiates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with torch.device("meta"):
        extra = WITHOUT_ASSETS.get(path.relative_to(ROOT / "configs").as_posix(), [])
        cli = ZooCLI(args=[*config_args(path), "--trainer.logger=false", *extra], run=False)
    assert cli.model is not None and cli.datamodule is not None


def test_every_config_is_whole_or_a_known_override():
    """A file without a model class is an override and must have its base listed (so it is tested)."""
    for path in CONFIGS:
        rel = path.relative_to(ROOT / "configs").as_posix()
        whole = "class_path" in (yaml.safe_load(path.read_text()).get("model") or {})
        assert whole != (rel in OVERRIDE_BASES), rel
        assert rel not in OVERRIDE_BASES or (ROOT / "configs" / OVERRIDE_BASES[rel]).is_file(), rel
