"""CosSim-R's network: a torchreid resnet50 checkpoint (fixture written here in torchreid's layout)
converts into TorchreidResNet50, whose features and CosSim-R match a by-hand reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.metrics import build_image_metrics
from zoo.modules.reid import TorchreidResNet50, freeze
from zoo.pretrained import load_pretrained, resolve
from zoo.pretrained.convert import torchreid_resnet50_from_original_checkpoint as from_checkpoint

torch.set_num_threads(1)
SMALL = (64, 32)  # tests resize to 64x32 instead of 256x128: same network, 16x fewer FLOPs


class TorchreidLayout(nn.Module):
    """torchreid's `resnet50` module names (conv1, bn1, layer1..4, global_avgpool, classifier) around
    torchvision's ResNet-50 blocks, run child by child as Texformer's ReIDModel does."""

    def __init__(self, num_classes: int):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2048, num_classes)

    def stage_features(self, image: torch.Tensor, size) -> list[torch.Tensor]:
        x = F.interpolate(image / 2 + 0.5, size=size, mode="bilinear", align_corners=False)
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = []
        for name, module in self.named_children():
            x = module(x)
            if name.startswith("layer"):
                out.append(x)
            if name == "layer4":
                return out
        raise AssertionError("no layer4")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    ref = TorchreidLayout(num_classes=5).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("torchreid") / "resnet50_market_xent.pth.tar"
    # torchreid's save_checkpoint layout: a dict with the (DataParallel-prefixed) state_dict and metadata
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 60, "rank1": 0.87}, path)
    return ref, path


def test_features_and_cossim_r_match_the_reference(checkpoint):
    ref, path = checkpoint
    net = freeze(from_checkpoint(path, input_size=SMALL))
    assert net.num_classes == 5
    g = torch.Generator().manual_seed(3)
    render, real = (torch.rand(2, 3, 32, 16, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        ours, theirs = net.features(render), ref.stage_features(render, SMALL)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        metrics = build_image_metrics("standard", use_lpips=False, reid_r=net)
        got = metrics(render, real)["cossim_r"]
        fr, ft = ref.stage_features(render, SMALL), ref.stage_features(real, SMALL)
    expected = torch.stack([F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1) for a, b in zip(fr, ft)]).mean(0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert "cossim_r" not in build_image_metrics("standard", use_lpips=False).names


def test_convert_command_and_missing_weights(checkpoint, tmp_path, monkeypatch):
    from zoo.pretrained.convert import main as convert

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="convert resnet50"):
        resolve("reid-resnet50-market1501")
    with pytest.raises(FileNotFoundError, match="torchreid"):
        from_checkpoint(tmp_path / "missing.pth")
    _, path = checkpoint
    folder = convert(["resnet50", str(path)])
    assert folder == tmp_path / "reid-resnet50-market1501"
    net = load_pretrained("reid-resnet50-market1501")
    assert isinstance(net, TorchreidResNet50) and net.input_size == (256, 128)
    state = torch.load(path, weights_only=True)["state_dict"]
    del state["module.classifier.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(KeyError, match="classifier.bias"):
        from_checkpoint(tmp_path / "short.pth")
