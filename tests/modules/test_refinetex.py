"""RefineTexNet: the whole network saved and loaded as one folder (nested configs), used without
Lightning, and equal to composing its parts by hand."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from zoo.modules.fusion import MaskFusion
from zoo.modules.refiners import ConvRefiner, DeformableRefiner
from zoo.modules.refinetex import RefineTexNet, refinetex_paper_config
from zoo.modules.texformer import TexformerBackbone
from zoo.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[2]


def tiny(refiner: str | None = "deformable") -> RefineTexNet:
    torch.manual_seed(0)
    backbone = TexformerBackbone(feat_dim=8, num_heads=2, uv_size=(16, 16))
    refiners = {"deformable": lambda: DeformableRefiner(hidden_channels=8, feature_channels=8),
                "conv": lambda: ConvRefiner(hidden_channels=8), None: lambda: None}
    return RefineTexNet(backbone, refiners[refiner](), MaskFusion(padding_mode="border"))


def inputs(batch: int = 2):
    g = torch.Generator().manual_seed(batch)
    return torch.rand(batch, 3, 32, 16, generator=g) * 2 - 1, torch.randint(0, 8, (batch, 32, 16), generator=g)


def test_forward_is_backbone_refiner_fusion_by_hand():
    net = tiny().eval()
    image, parts = inputs()
    with torch.no_grad():
        out = net(image, parts)
        first = net.backbone(image, parts)
        refined = net.refiner(TexformerBackbone.make_key_input(image, parts), first)
        mask, rgb = refined.mask, refined.rgb
        sampled = torch.nn.functional.grid_sample(image, refined.flow.permute(0, 2, 3, 1), padding_mode="border",
                                                  align_corners=False)
    torch.testing.assert_close(out.texture, mask * sampled + (1 - mask) * rgb)
    assert out.texture.shape == (2, 3, 16, 16)
    base = tiny(None).eval()
    with torch.no_grad():
        o = base(image, parts)
    assert o.texture is o.backbone_texture


@pytest.mark.parametrize("refiner", ["deformable", "conv", None])
def test_whole_network_round_trip_with_nested_configs(tmp_path, refiner):
    net = tiny(refiner).eval()
    code = torch.linspace(-1, 1, 3 * 16 * 16).view(3, 16, 16)
    net.backbone.set_query_code(code)  # a persistent buffer: saved with the weights
    folder = net.save_pretrained(tmp_path / "net")
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["class_path"] == "zoo.modules.refinetex.RefineTexNet"
    assert saved["init_args"]["backbone"] == {"class_path": "zoo.modules.texformer.TexformerBackbone",
                                              "init_args": net.backbone.config["init_args"]}
    assert saved["init_args"]["fusion"]["init_args"]["padding_mode"] == "border"
    assert (folder / "config.yaml").read_text().startswith("# zoo ")  # the version that wrote it
    loaded = RefineTexNet.from_pretrained(folder).eval()
    assert type(load_pretrained(folder)) is RefineTexNet and loaded.config == net.config
    assert type(loaded.refiner) is type(net.refiner)
    torch.testing.assert_close(loaded.backbone.query_code, code)
    image, parts = inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, parts).texture, net(image, parts).texture, atol=1e-6, rtol=0)


def test_from_pretrained_without_lightning(tmp_path):
    """`RefineTexNet.from_pretrained(...)(image, parts)` in a process where Lightning cannot be imported."""
    tiny().save_pretrained(tmp_path / "net")
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import torch
        from zoo.modules.refinetex import RefineTexNet
        net = RefineTexNet.from_pretrained({str(tmp_path / 'net')!r}).eval()
        with torch.no_grad():
            texture = net(torch.zeros(1, 3, 32, 16), torch.zeros(1, 32, 16, dtype=torch.long)).texture
        assert tuple(texture.shape) == (1, 3, 16, 16), texture.shape
        assert not any(m.split(".")[0] in ("pytorch_lightning", "lightning", "torchmetrics") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                 "HOME": str(tmp_path)}, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.gpu
def test_the_network_on_the_accelerator_matches_the_cpu(device):
    net = tiny().eval()
    image, parts = inputs(2)
    with torch.no_grad():
        cpu = net(image, parts).texture
        moved = net.to(device)(image.to(device), parts.to(device)).texture
    torch.testing.assert_close(moved.cpu(), cpu, atol=1e-4, rtol=0)


def test_bad_parts_are_named():
    with pytest.raises(TypeError, match="backbone must be a TexformerBackbone"):
        RefineTexNet(DeformableRefiner())
    with pytest.raises(ValueError, match="4-channel key image"):
        RefineTexNet(TexformerBackbone(feat_dim=8, num_heads=2, uv_size=(16, 16)), ConvRefiner(in_channels=3))


def test_paper_config_composes_the_network():
    config = refinetex_paper_config()
    assert config["network"]["init_args"]["backbone"] == config["backbone"]
    assert config["network"]["class_path"] == "zoo.modules.refinetex.RefineTexNet"
