"""`save_pretrained` / `from_pretrained` for every public module of the zoo.

A saved module is a folder with `config.yaml` (`class_path` + `init_args`, the same shape as
a LightningCLI config) and `model.safetensors` (the state dict). Loading is strict: a missing
or unexpected tensor is an error.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from safetensors.torch import load_model, save_model

from zoo.pretrained.config import class_path_of, import_class, record_init_args, to_plain
from zoo.pretrained.registry import resolve

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"

T = TypeVar("T", bound="PretrainedMixin")


class PretrainedMixin:
    """Mix into an `nn.Module` to make it save and load itself.

    Subclasses need nothing else: their constructor arguments are recorded automatically
    (they must be plain data: numbers, strings, booleans, None, lists and dicts).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_zoo_records", False):
            cls.__init__ = record_init_args(init)

    @property
    def config(self) -> dict:
        """`{"class_path": ..., "init_args": {...}}` that rebuilds this module (untrained)."""
        args = self.__dict__.get("_zoo_init_args")
        if args is None:
            raise RuntimeError(f"{type(self).__name__} did not record its constructor arguments")
        init_args = {k: to_plain(v, f"{type(self).__name__}.{k}") for k, v in args.items()}
        return {"class_path": class_path_of(type(self)), "init_args": init_args}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.yaml` and `model.safetensors` into `directory` (created if needed)."""
        config = self.config  # validate before touching the disk
        directory = Path(directory).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        tmp_weights = directory / (WEIGHTS_NAME + ".tmp")
        save_model(self, str(tmp_weights))  # handles shared tensors; contiguous copies
        (directory / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        tmp_weights.replace(directory / WEIGHTS_NAME)
        return directory

    @classmethod
    def from_pretrained(cls: type[T], name_or_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> T:
        """Build the module from a saved folder or a registry name and load its weights strictly."""
        folder = resolve(name_or_path)
        config = yaml.safe_load((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "class_path" not in config:
            raise ValueError(f"{folder / CONFIG_NAME} has no class_path")
        module_cls = import_class(config["class_path"])
        if cls is not PretrainedMixin and not issubclass(module_cls, cls):
            raise TypeError(
                f"{folder} holds a {config['class_path']}, which is not a {class_path_of(cls)}"
            )
        module = module_cls(**(config.get("init_args") or {}))
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing next to {folder / CONFIG_NAME}")
        load_model(module, str(weights), strict=True, device=str(map_location))
        return module


def load_pretrained(name_or_path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load any saved zoo module, whatever its class (the class comes from its config)."""
    return PretrainedMixin.from_pretrained.__func__(PretrainedMixin, name_or_path, map_location)
