"""save_pretrained / from_pretrained: config + safetensors, strict loading, names, clear errors."""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from zoo.pretrained import PretrainedMixin, export_folder, load_pretrained


class Tiny(PretrainedMixin, nn.Module):
    def __init__(self, width: int = 3, sizes: tuple[int, ...] = (1, 2), name: str = "t") -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)


class TinyChild(Tiny):
    def __init__(self, width: int = 4, extra: float = 0.5) -> None:
        super().__init__(width=width)


class Other(PretrainedMixin, nn.Module):
    def __init__(self, module: object = None) -> None:
        super().__init__()


def test_round_trip_records_the_outermost_arguments(tmp_path):
    net = TinyChild(5)
    assert net.config == {"class_path": f"{__name__}.TinyChild", "init_args": {"width": 5, "extra": 0.5}}
    folder = net.save_pretrained(tmp_path / "m")
    assert yaml.safe_load((folder / "config.yaml").read_text())["init_args"]["width"] == 5
    loaded = TinyChild.from_pretrained(folder)
    assert torch.equal(loaded.lin.weight, net.lin.weight)
    assert type(load_pretrained(folder)) is TinyChild  # the class comes from the config
    assert Tiny(sizes=(3, 4)).config["init_args"]["sizes"] == [3, 4]  # tuples saved as lists


def test_loading_is_strict(tmp_path):
    folder = Tiny().save_pretrained(tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    weights["unexpected"] = torch.zeros(1)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match="unexpected"):
        Tiny.from_pretrained(folder)


def test_class_mismatch_and_bad_arguments(tmp_path):
    folder = Tiny().save_pretrained(tmp_path / "m")
    with pytest.raises(TypeError, match="is not a"):
        Other.from_pretrained(folder)
    with pytest.raises(TypeError, match="constructor argument 'Other.module' has type object"):
        Other(module=object()).save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad").exists(), "nothing half-written"


def test_names_resolve_under_zoo_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert export_folder("my-net") == tmp_path / "my-net"
    assert export_folder(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    Tiny(7).save_pretrained(export_folder("my-net"))
    assert Tiny.from_pretrained("my-net").lin.in_features == 7
    with pytest.raises(FileNotFoundError, match="reid-synthetic.*configs/reid/synthetic.yaml"):
        load_pretrained("reid-synthetic")
    with pytest.raises(FileNotFoundError, match="neither a folder with config.yaml nor a known pretrained name"):
        load_pretrained("no-such-model")
    with pytest.raises(FileNotFoundError, match="not a saved zoo module"):
        load_pretrained(str(tmp_path / "missing-folder"))
