"""`save_pretrained` / `from_pretrained` for every public module of the zoo.

A saved module is a folder with `config.yaml` (`class_path` + `init_args`, the same shape as
a LightningCLI config, under a `# zoo <version>` comment line naming the zoo that wrote it) and
`model.safetensors` (the state dict). Loading is strict: a missing or unexpected tensor is an error, and the config may only
name zoo module classes (`zoo.pretrained.config.module_class`). Saving never replaces files of a
folder that is not a saved zoo module unless asked to, and writes each file atomically.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from safetensors.torch import load_model, save_model

from zoo import __version__
from zoo.pretrained.config import (
    MODULE_CLASSES,
    build_module,
    class_path_of,
    current_class_path,
    is_module_config,
    record_init_args,
    to_plain,
)
from zoo.pretrained.registry import REGISTRY, resolve

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"
VERSION_PREFIX = "# zoo "  # first line of a saved config.yaml: "# zoo <version>"

T = TypeVar("T", bound="PretrainedMixin")


def read_module_config(folder: Path) -> dict | None:
    """The parsed `config.yaml` of a saved zoo module in `folder`, or None if it holds none."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("class_path"), str) else None


def saved_zoo_version(folder: str | os.PathLike) -> str | None:
    """The zoo version recorded in a saved module's config.yaml (None for folders saved before it was)."""
    with open(Path(folder) / CONFIG_NAME, encoding="utf-8") as handle:
        first = handle.readline().strip()
    return first[len(VERSION_PREFIX):] if first.startswith(VERSION_PREFIX) else None


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_target(directory: Path, overwrite: bool) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"cannot save a module to {directory}: it is a file, not a folder")
    entries = sorted(p.name for p in directory.iterdir())
    if not entries or overwrite or read_module_config(directory) is not None:
        return
    raise FileExistsError(
        f"refusing to save a module into {directory}: the folder is not empty ({', '.join(entries[:5])}"
        f"{', ...' if len(entries) > 5 else ''}) and does not hold a saved zoo module, so {CONFIG_NAME} / "
        f"{WEIGHTS_NAME} could replace your own files. Choose a new or empty folder, or pass overwrite=True."
    )


class PretrainedMixin:
    """Mix into an `nn.Module` to make it save and load itself.

    Subclasses need nothing else: their constructor arguments are recorded automatically
    (they must be plain data: numbers, strings, booleans, None, lists and dicts, or other zoo
    modules, which are saved as nested `class_path` / `init_args`).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_zoo_records", False):
            cls.__init__ = record_init_args(init)
        MODULE_CLASSES[class_path_of(cls)] = cls

    @property
    def config(self) -> dict:
        """`{"class_path": ..., "init_args": {...}}` that rebuilds this module (untrained)."""
        args = getattr(self, "_zoo_init_args", None)
        if args is None:
            raise RuntimeError(f"{type(self).__name__} did not record its constructor arguments")
        init_args = {k: to_plain(v, f"{type(self).__name__}.{k}") for k, v in args.items()}
        return {"class_path": class_path_of(type(self)), "init_args": init_args}

    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write `config.yaml` and `model.safetensors` into `directory` (created if needed).

        A non-empty folder must already hold a saved zoo module (its two files are replaced,
        anything else in it is left alone) unless `overwrite=True`. Each file is written to a
        temporary name and renamed into place, so an interrupted save leaves the old files."""
        text = f"{VERSION_PREFIX}{__version__}\n" + yaml.safe_dump(self.config, sort_keys=False)  # validates first
        directory = Path(directory).expanduser()
        _check_target(directory, overwrite)
        created = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        temporary = []
        try:
            for name in (WEIGHTS_NAME, CONFIG_NAME):
                handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
                os.close(handle)
                temporary.append(Path(path))
            save_model(self, str(temporary[0]))  # handles shared tensors; contiguous copies
            temporary[1].write_text(text, encoding="utf-8")
            os.replace(temporary[0], directory / WEIGHTS_NAME)
            os.replace(temporary[1], directory / CONFIG_NAME)
        except BaseException:
            for path in temporary:
                path.unlink(missing_ok=True)
            if created and not any(directory.iterdir()):
                directory.rmdir()
            raise
        return directory

    @classmethod
    def from_pretrained(cls: type[T], name_or_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> T:
        """Build the module from a saved folder or a registry name and load its weights strictly."""
        folder = resolve(name_or_path)
        config = read_module_config(folder)
        if config is None or not is_module_config(config):
            raise ValueError(f"{folder / CONFIG_NAME} is not a saved zoo module config (class_path + init_args)")
        entry = REGISTRY.get(os.fspath(name_or_path))
        if entry is not None and config["class_path"] != entry.class_path:
            raise TypeError(f"{folder} holds a {config['class_path']}, but the registry entry "
                            f"{entry.name!r} is a {entry.class_path}; re-create it ({entry.how_to_get})")
        module_cls = MODULE_CLASSES.get(current_class_path(config["class_path"]))
        if module_cls is not None and cls is not PretrainedMixin and not issubclass(module_cls, cls):
            raise TypeError(f"{folder} holds a {config['class_path']}, which is not a {class_path_of(cls)}")
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing next to {folder / CONFIG_NAME}")
        if entry is not None and entry.sha256 is not None and sha256_of(weights) != entry.sha256:
            raise ValueError(f"{weights} does not have the sha256 recorded for {entry.name!r} ({entry.sha256}); "
                             f"the file is corrupt or another model: re-create it ({entry.how_to_get})")
        if entry is not None and entry.sha256 is None:
            log.info("%s: bytes not verified (no sha256: %s)", entry.name, entry.unpinned)
        module = build_module(config, str(folder / CONFIG_NAME))
        if cls is not PretrainedMixin and not isinstance(module, cls):
            raise TypeError(f"{folder} holds a {config['class_path']}, which is not a {class_path_of(cls)}")
        load_model(module, str(weights), strict=True, device=str(map_location))
        return module


def load_pretrained(name_or_path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load any saved zoo module, whatever its class (the class comes from its config and must be a
    zoo module class)."""
    return PretrainedMixin.from_pretrained.__func__(PretrainedMixin, name_or_path, map_location)
