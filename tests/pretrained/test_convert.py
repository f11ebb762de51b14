"""zoo.pretrained.convert: the public PCB checkpoint layout (rebuilt here with random weights) ->
PCBReID, with strict key checking, and the convert command writing a loadable registry folder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.module_checks import assert_save_load_round_trip
from zoo.modules.reid import PCBReID
from zoo.pretrained.convert import pcb_from_original_checkpoint

TINY_PCB = (96, 32)  # layer4 is 6x2: one row per stripe


class _OriginalClassBlock(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.add_block = nn.Sequential(nn.Linear(2048, 256), nn.BatchNorm1d(256), nn.Dropout(0.5))
        self.classifier = nn.Sequential(nn.Linear(256, num_classes))


class _OriginalPCB(nn.Module):
    """The original model's module tree: `model` (a full torchvision ResNet-50, fc included) and
    `classifier0..5`. Its forward is written here from the PCB description, independently of PCBReID."""

    def __init__(self, num_classes: int):
        super().__init__()
        from torchvision.models import resnet50

        self.model = resnet50(weights=None)
        self.model.layer4[0].conv2.stride = (1, 1)
        self.model.layer4[0].downsample[0].stride = (1, 1)
        for i in range(6):
            setattr(self, f"classifier{i}", _OriginalClassBlock(num_classes))

    def forward(self, x):
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        feats = []
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            feats.append(x)
        pooled = F.adaptive_avg_pool2d(x, (6, 1))[..., 0]
        logits = [getattr(self, f"classifier{i}").classifier(getattr(self, f"classifier{i}").add_block(pooled[:, :, i]))
                  for i in range(6)]
        return feats, torch.stack(logits, 1)


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    original = _OriginalPCB(num_classes=7)
    for module in original.modules():  # non-trivial BN statistics, so a mis-mapped buffer shows
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("pcb") / "net_last.pth"
    torch.save(original.state_dict(), path)
    assert "model.fc.weight" in original.state_dict() and "classifier5.classifier.0.bias" in original.state_dict()
    return original.eval(), path


def test_pcb_from_original_checkpoint_matches_original(original_checkpoint, tmp_path):
    original, path = original_checkpoint
    net = pcb_from_original_checkpoint(path, input_size=TINY_PCB).eval()
    assert net.num_classes == 7  # read from the checkpoint
    image = torch.rand(2, 3, 64, 32) * 2 - 1
    with torch.no_grad():
        feats, logits = original(net.preprocess(image))
        out = net(image)
    for a, b in zip(out.features, feats):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out.logits, logits)
    assert [tuple(f.shape) for f in out.features] == [(2, 256, 24, 8), (2, 512, 12, 4), (2, 1024, 6, 2),
                                                      (2, 2048, 6, 2)]
    loaded = assert_save_load_round_trip(net, lambda m: m.features(image), tmp_path)
    assert isinstance(loaded, PCBReID)


def test_pcb_checkpoint_strict_keys(original_checkpoint, tmp_path):
    _, path = original_checkpoint
    state = torch.load(path, weights_only=True)
    broken = dict(state)
    broken.pop("classifier3.add_block.1.running_var")
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="missing .*heads.3.bottleneck.1.running_var"):
        pcb_from_original_checkpoint(tmp_path / "missing.pth")
    extra = dict(state)
    extra["model.extra_head.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match="unexpected .*backbone.extra_head.weight"):
        pcb_from_original_checkpoint(tmp_path / "extra.pth")
    alien = {"foo.weight": torch.zeros(1), **state}
    torch.save(alien, tmp_path / "alien.pth")
    with pytest.raises(KeyError, match="foo.weight"):
        pcb_from_original_checkpoint(tmp_path / "alien.pth")


def test_pcb_missing_checkpoint_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="layumi/Person_reID_baseline_pytorch.*reid-pcb-market1501"):
        pcb_from_original_checkpoint(tmp_path / "nope.pth")


def test_convert_command_writes_a_loadable_registry_folder(original_checkpoint, tmp_path, monkeypatch):
    from zoo.pretrained import load_pretrained
    from zoo.pretrained.convert import main as convert

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    _, path = original_checkpoint
    folder = convert(["pcb", str(path)])
    assert folder == tmp_path / "reid-pcb-market1501"
    net = load_pretrained("reid-pcb-market1501")
    assert isinstance(net, PCBReID) and net.num_classes == 7
