"""Capture of constructor arguments, so that a module can be rebuilt from a config file.

Every public module of the zoo records the arguments it was built with (after defaults are
applied). `save_pretrained` writes them as `class_path` + `init_args`, the same shape that
LightningCLI uses in YAML, so a saved module can be pasted into an experiment config.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

# Types that survive a YAML round trip unchanged (tuples become lists, which every
# zoo constructor accepts as a sequence).
_PLAIN = (bool, int, float, str, type(None))


def to_plain(value: Any, where: str) -> Any:
    """Return `value` as YAML-friendly data, or raise naming the argument that is not."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): to_plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(
        f"constructor argument {where!r} has type {type(value).__name__}; only numbers, strings, "
        "booleans, None and lists/dicts of them can be saved in a module config"
    )


def record_init_args(init):
    """Decorate an `__init__` so the outermost call stores its bound arguments on `self`.

    Only the outermost constructor records (a subclass calling `super().__init__` does not
    overwrite what its own caller passed).
    """

    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        outermost = "_zoo_init_args" not in self.__dict__
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
            object.__setattr__(self, "_zoo_init_args", recorded)
        init(self, *args, **kwargs)

    wrapper._zoo_records = True  # type: ignore[attr-defined]
    return wrapper


def class_path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(class_path: str) -> type:
    """Import `package.module.Class` with an error that names the path when it fails."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"class_path {class_path!r} is not a dotted path 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import module {module_name!r} of class_path {class_path!r}: {err}") from err
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no class {name!r} (class_path {class_path!r})") from None
