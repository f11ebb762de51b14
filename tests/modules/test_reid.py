"""ReID networks: feature interface, preprocessing, PCB checkpoint conversion, save/load."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.reid import PCBReID, SmallReID
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
