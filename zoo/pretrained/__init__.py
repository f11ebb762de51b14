"""Saving, loading and naming pretrained modules (local files only, strict loading)."""
from zoo.pretrained.mixin import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin, load_pretrained
from zoo.pretrained.registry import REGISTRY, PretrainedEntry, export_folder, resolve
from zoo.utils.paths import zoo_home

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PretrainedMixin",
    "load_pretrained",
    "REGISTRY",
    "PretrainedEntry",
    "resolve",
    "export_folder",
    "zoo_home",
]
