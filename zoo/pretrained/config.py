"""Capture of constructor arguments, so that a module can be rebuilt from a config file.

Every public module of the zoo records the arguments it was built with (after defaults are
applied). `save_pretrained` writes them as `class_path` + `init_args`, the same shape that
LightningCLI uses in YAML, so a saved module can be pasted into an experiment config. A module
built from other zoo modules (RefineTexNet = backbone + refiner + fusion) records each of them
as a nested `class_path` / `init_args` entry.

Rebuilding never calls an arbitrary callable named in a file: a `class_path` must name a
subclass of `PretrainedMixin` (every one registers itself in `MODULE_CLASSES` when its class is
defined). Only modules of the `zoo` package are imported on demand; a class of another project is
found once that project has imported it.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
import typing
from typing import Any

from torch import nn

# Types that survive a YAML round trip unchanged (tuples become lists, which every
# zoo constructor accepts as a sequence).
_PLAIN = (bool, int, float, str, type(None))
_DOTTED = re.compile(r"^[A-Za-z]\w*(\.[A-Za-z]\w*)+$")

# class_path -> class of every PretrainedMixin subclass defined so far (filled by the mixin).
MODULE_CLASSES: dict[str, type] = {}
# class_path a module may have been saved under -> where that class lives now (a file split in two
# keeps the folders saved before loading).
MOVED_CLASSES: dict[str, str] = {"zoo.modules.vqgan.VectorQuantizer": "zoo.modules.quantize.VectorQuantizer"}


def current_class_path(class_path: str) -> str:
    """`class_path`, or where its class moved to (`MOVED_CLASSES`)."""
    return MOVED_CLASSES.get(class_path, class_path)


def to_plain(value: Any, where: str) -> Any:
    """Return `value` as YAML-friendly data, or raise naming the argument that is not.

    A zoo module (a PretrainedMixin `nn.Module`) becomes its own `{"class_path", "init_args"}`."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): to_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, nn.Module) and class_path_of(type(value)) in MODULE_CLASSES:
        return value.config
    raise TypeError(
        f"constructor argument {where!r} has type {type(value).__name__}; only numbers, strings, "
        "booleans, None, zoo modules and lists/dicts of them can be saved in a module config"
    )


def record_init_args(init):
    """Decorate an `__init__` so the outermost call stores its bound arguments on `self`.

    Only the outermost constructor records (a subclass calling `super().__init__` does not
    overwrite what its own caller passed).
    """

    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        outermost = getattr(self, "_zoo_init_args", None) is None
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded = dict(bound.arguments)
            recorded.pop(next(iter(signature.parameters)))  # self
            for name, param in signature.parameters.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD and name in recorded:
                    recorded.update(recorded.pop(name))
                elif param.kind is inspect.Parameter.VAR_POSITIONAL and name in recorded:
                    raise TypeError(f"{type(self).__name__}: *{name} cannot be recorded in a config")
            self._zoo_init_args = recorded  # a plain dict: nn.Module stores it as an ordinary attribute
        init(self, *args, **kwargs)

    wrapper._zoo_records = True  # type: ignore[attr-defined]
    return wrapper


def class_path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def module_class(class_path: Any, where: str = "config") -> type:
    """The PretrainedMixin subclass named `class_path`, or an error; never any other callable.

    Only `zoo.*` modules are imported to find it (their names checked first, no `_private` or
    `__main__` parts); any other class must already be defined (imported by its project)."""
    if not isinstance(class_path, str) or not _DOTTED.match(class_path):
        raise ValueError(f"{where}: class_path must be a dotted path 'package.module.Class', got {class_path!r}")
    class_path = current_class_path(class_path)
    if class_path not in MODULE_CLASSES and class_path.split(".")[0] == "zoo":
        module_name = class_path.rpartition(".")[0]
        try:
            importlib.import_module(module_name)
        except ImportError:
            pass  # reported below, with what is allowed
    cls = MODULE_CLASSES.get(class_path)
    if cls is None:
        raise ValueError(
            f"{where}: class_path {class_path!r} is not a zoo module class (a subclass of "
            "zoo.pretrained.PretrainedMixin); a saved config may only name those, so nothing else is "
            "imported or called. A module class of your own project must be imported before loading."
        )
    return cls


def is_module_config(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value and set(value) <= {"class_path", "init_args"}


def build_module(config: Any, where: str = "config"):
    """Instantiate `{"class_path": ..., "init_args": {...}}`.

    A nested `{"class_path", "init_args"}` argument is built into a module (with the same checks)
    when the constructor's type hint for it is a module class (as LightningCLI would); an argument
    typed as plain data (e.g. `dict`) receives the mapping itself."""
    if not is_module_config(config):
        raise ValueError(f"{where} must be a mapping with class_path (and init_args), got {config!r}")
    cls = module_class(config["class_path"], where)
    init_args = config.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise ValueError(f"{where}.init_args must be a mapping, got {type(init_args).__name__}")
    hints = _init_hints(cls)
    return cls(**{name: _materialise(value, f"{where}.init_args.{name}", _wants_module(hints.get(name)))
                  for name, value in init_args.items()})


def _init_hints(cls: type) -> dict:
    try:
        return typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an unresolvable hint: every argument is passed as plain data
        return {}


def _wants_module(hint: Any) -> bool:
    if isinstance(hint, type):
        return issubclass(hint, nn.Module)
    return any(_wants_module(arg) for arg in typing.get_args(hint))


def _materialise(value: Any, where: str, as_module: bool) -> Any:
    if as_module and is_module_config(value):
        return build_module(value, where)
    if as_module and isinstance(value, list):
        return [_materialise(v, f"{where}[{i}]", True) for i, v in enumerate(value)]
    return value


def import_class(class_path: str) -> type:
    """`module_class` (kept for callers that build paper configs by class_path)."""
    return module_class(class_path, "class_path")
