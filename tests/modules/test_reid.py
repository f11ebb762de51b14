"""ReID networks: feature interface, preprocessing, PCB checkpoint conversion, save/load."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.reid import PCBReID, SmallReID
from zoo.pretrained.convert import pcb_from_original_checkpoint
from zoo.utils.frozen import check_frozen, freeze

torch.set_num_threads(1)
TINY_PCB = (96, 32)  # layer4 is 6x2: one row per stripe


def small(num_classes: int = 5) -> SmallReID:
    return SmallReID(num_classes=num_classes, widths=(4, 6, 8, 10), embedding_dim=8, input_size=(32, 16))


@pytest.mark.parametrize("batch", [2, 3])
def test_small_reid_shapes(batch):
    torch.manual_seed(0)
    out = small()(torch.rand(batch, 3, 40, 20) * 2 - 1)
    assert [tuple(f.shape) for f in out.features] == [(batch, 4, 16, 8), (batch, 6, 8, 4), (batch, 8, 4, 2),
                                                      (batch, 10, 2, 1)]
    assert out.embedding.shape == (batch, 8) and out.logits.shape == (batch, 5)
    assert all(torch.isfinite(t).all() for t in [*out.features, out.embedding, out.logits])


def test_small_reid_gradients_and_round_trip(tmp_path):
    torch.manual_seed(0)
    net = small()
    image = torch.rand(2, 3, 32, 16) * 2 - 1
    assert_all_parameters_get_gradients(net, lambda m: m(image))
    assert_save_load_round_trip(net, lambda m: m(image), tmp_path)


def test_preprocessing_is_documented_mapping():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 32) * 2 - 1
    net = small()
    expected = F.interpolate((image + 1) / 2, size=(32, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(net.preprocess(image), expected)
    pcb = PCBReID(input_size=TINY_PCB)
    x = F.interpolate((image + 1) / 2, size=TINY_PCB, mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(pcb.preprocess(image), (x - mean) / std)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="widths"):
        SmallReID(num_classes=3, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="num_classes"):
        SmallReID(num_classes=0)
    with pytest.raises(ValueError, match=r"image must be \(B, 3, H, W\), got \(2, 1, 8, 8\)"):
        small().features(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="stripes"):
        PCBReID(stripes=0)


def test_freeze_and_check_frozen():
    net = small()
    with pytest.raises(ValueError, match="train mode"):
        check_frozen(net, "test")
    net.eval()
    with pytest.raises(ValueError, match="trainable parameters"):
        check_frozen(net, "test")
    check_frozen(freeze(net), "test")
    with pytest.raises(TypeError, match="features"):
        check_frozen(nn.Linear(2, 2).eval().requires_grad_(False), "test")


# ---------------------------------------------------------------------------------------------
# PCB: a fixture checkpoint in the original layumi layout, built by an independent test model.


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


def test_pcb_gradients_and_batch_sizes():
    torch.manual_seed(0)
    net = PCBReID(num_classes=3, input_size=TINY_PCB)
    image = torch.rand(2, 3, 96, 32) * 2 - 1
    assert_all_parameters_get_gradients(net, lambda m: m(image))
    net.eval()
    with torch.no_grad():
        for batch in (1, 3):
            out = net(torch.rand(batch, 3, 128, 64) * 2 - 1)
            assert out.logits.shape == (batch, 6, 3) and out.embedding.shape == (batch, 6 * 2048)
            assert out.features[3].shape == (batch, 2048, 6, 2)


def test_convert_command_writes_a_loadable_registry_folder(original_checkpoint, tmp_path, monkeypatch):
    from zoo.pretrained import load_pretrained
    from zoo.pretrained.convert import main as convert

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    _, path = original_checkpoint
    folder = convert(["pcb", str(path)])
    assert folder == tmp_path / "reid-pcb-market1501"
    net = load_pretrained("reid-pcb-market1501")
    assert isinstance(net, PCBReID) and net.num_classes == 7
