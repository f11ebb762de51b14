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


class Holder(PretrainedMixin, nn.Module):
    """A composite: a nested zoo module, and a plain-data mapping that merely looks like a config."""

    def __init__(self, inner: nn.Module | None = None, spec: dict | None = None) -> None:
        super().__init__()
        self.inner, self.spec = inner, spec


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


# ------------------------------------------------------------------ loading never runs foreign code
@pytest.mark.parametrize("class_path", ["os.makedirs", "zoo.cli.main", "zoo.pretrained.mixin.load_pretrained",
                                        "torch.nn.Linear", "zoo.__main__.main", "zoo.modules.no_such.Thing"])
def test_a_config_may_only_name_zoo_module_classes(tmp_path, class_path):
    folder = Tiny().save_pretrained(tmp_path / "m")
    marker = tmp_path / "made-by-the-config"
    config = {"class_path": class_path, "init_args": {"name": str(marker)}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="not a zoo module class|dotted path"):
        load_pretrained(folder)
    assert not marker.exists()


def test_a_nested_config_is_checked_too(tmp_path):
    folder = Holder().save_pretrained(tmp_path / "m")
    marker = tmp_path / "made-by-the-config"
    config = {"class_path": f"{__name__}.Holder",
              "init_args": {"inner": {"class_path": "os.makedirs", "init_args": {"name": str(marker)}}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="init_args.inner.*not a zoo module class"):
        load_pretrained(folder)
    assert not marker.exists()


def test_nested_modules_save_and_load(tmp_path):
    torch.manual_seed(0)
    spec = {"class_path": "os.makedirs", "init_args": {"name": str(tmp_path / "x")}}
    outer = Holder(inner=Tiny(width=2), spec=spec)  # the module is recorded as a nested class_path / init_args
    config = outer.config
    assert config["init_args"]["inner"] == {"class_path": f"{__name__}.Tiny",
                                            "init_args": {"width": 2, "sizes": [1, 2], "name": "t"}}
    loaded = Holder.from_pretrained(outer.save_pretrained(tmp_path / "m"))
    assert loaded.config == config and isinstance(loaded.inner, Tiny)
    torch.testing.assert_close(loaded.inner.lin.weight, outer.inner.lin.weight)
    assert loaded.spec == spec and not (tmp_path / "x").exists()  # typed as data: passed on, never called


def test_the_registry_entry_checks_the_class_and_the_checksum(tmp_path, monkeypatch):
    from zoo.pretrained import REGISTRY, PretrainedEntry

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    Tiny().save_pretrained(tmp_path / "reid-synthetic")
    with pytest.raises(TypeError, match="registry entry 'reid-synthetic' is a zoo.modules.reid.SmallReID"):
        load_pretrained("reid-synthetic")
    entry = PretrainedEntry(name="tiny-pinned", class_path=f"{__name__}.Tiny", description="test", how_to_get="test",
                            source="test", licence="test", sha256="0" * 64)
    monkeypatch.setitem(REGISTRY, "tiny-pinned", entry)
    Tiny().save_pretrained(tmp_path / "tiny-pinned")
    with pytest.raises(ValueError, match="sha256"):
        load_pretrained("tiny-pinned")
    from zoo.pretrained.mixin import sha256_of

    monkeypatch.setitem(REGISTRY, "tiny-pinned", PretrainedEntry(**{**entry.__dict__, "sha256": sha256_of(
        tmp_path / "tiny-pinned" / "model.safetensors")}))
    assert isinstance(load_pretrained("tiny-pinned"), Tiny)
    for entry in REGISTRY.values():  # every real entry says where its weights come from and under what licence
        assert entry.source and entry.licence


def test_every_entry_pins_its_bytes_or_says_why_not(tmp_path, monkeypatch, caplog):
    import re

    from zoo.pretrained.registry import REGISTRY, PretrainedEntry

    for entry in REGISTRY.values():
        assert (entry.sha256 is not None and re.fullmatch("[0-9a-f]{64}", entry.sha256)) or (
            entry.sha256 is None and len(entry.unpinned) > 20), entry.name
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setitem(REGISTRY, "tiny-unpinned", PretrainedEntry(
        name="tiny-unpinned", class_path=f"{__name__}.Tiny", description="test", how_to_get="test", source="test",
        licence="test", unpinned="trained by this test"))
    Tiny().save_pretrained(tmp_path / "tiny-unpinned")
    with caplog.at_level("INFO", logger="zoo.pretrained.mixin"):
        load_pretrained("tiny-unpinned")
    assert "tiny-unpinned: bytes not verified (no sha256: trained by this test)" in caplog.text


def test_a_working_directory_folder_never_shadows_a_name(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    Tiny(6).save_pretrained(tmp_path / "reid-synthetic")
    with pytest.raises(FileNotFoundError, match="'./reid-synthetic'"):
        load_pretrained("reid-synthetic")
    assert load_pretrained("./reid-synthetic").lin.in_features == 6


# ------------------------------------------------------------------ saving never loses a user's files
def test_save_refuses_a_folder_of_someone_elses_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own settings\n")
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
        Tiny().save_pretrained(folder)
    assert (folder / "config.yaml").read_text() == "my: own settings\n"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes.txt"]
    Tiny().save_pretrained(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me" and isinstance(load_pretrained(folder), Tiny)
    with pytest.raises(FileExistsError, match="a file"):
        Tiny().save_pretrained(folder / "notes.txt")


def test_resaving_a_module_folder_replaces_only_its_files(tmp_path):
    folder = Tiny(3).save_pretrained(tmp_path / "m")
    (folder / "README.md").write_text("about this model")
    Tiny(5).save_pretrained(folder)
    assert load_pretrained(folder).lin.in_features == 5
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]
    import zoo
    from zoo.pretrained.mixin import saved_zoo_version

    assert saved_zoo_version(folder) == zoo.__version__
    assert set(yaml.safe_load((folder / "config.yaml").read_text())) == {"class_path", "init_args"}  # pastes into YAML


def test_an_interrupted_save_keeps_the_old_files(tmp_path, monkeypatch):
    folder = Tiny(3).save_pretrained(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("zoo.pretrained.mixin.save_model", fail)
    with pytest.raises(KeyboardInterrupt):
        Tiny(5).save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporary file left either
    with pytest.raises(KeyboardInterrupt):
        Tiny(5).save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_module_saved_under_its_old_class_path_still_loads(tmp_path):
    """VectorQuantizer moved from zoo.modules.vqgan to zoo.modules.quantize: folders saved before load."""
    from zoo.modules.quantize import VectorQuantizer

    torch.manual_seed(0)
    saved = VectorQuantizer(num_codes=8, code_dim=3)
    saved.save_pretrained(tmp_path / "vq")
    config_file = tmp_path / "vq" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert config["class_path"] == "zoo.modules.quantize.VectorQuantizer"
    config["class_path"] = "zoo.modules.vqgan.VectorQuantizer"  # what a folder saved before the split holds
    config_file.write_text(yaml.safe_dump(config))
    for loaded in (load_pretrained(tmp_path / "vq"), VectorQuantizer.from_pretrained(tmp_path / "vq")):
        assert type(loaded) is VectorQuantizer and (loaded.num_codes, loaded.code_dim) == (8, 3)
        assert torch.equal(loaded.embedding.weight, saved.embedding.weight)
