"""Unpickling files a user downloaded without running code from them.

`pickle.load` calls whatever callable a file names (`os.system` included). The data files the
zoo reads as pickles (body fits, split indices, the SMPL model files) need only containers,
numbers, strings and numpy arrays; `safe_unpickle` accepts exactly those (plus the classes a
caller adds, e.g. scipy sparse matrices and chumpy arrays for SMPL models) and refuses anything
else with an error that names the file and the refused global.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
from collections.abc import Iterable
from pathlib import Path

PLAIN_DATA = {
    ("builtins", name) for name in ("list", "dict", "tuple", "set", "frozenset", "complex", "bytearray", "slice")
} | {
    ("collections", "OrderedDict"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("_codecs", "encode"),  # protocol-2 pickles of numpy arrays carry their bytes as latin1 text
} | {
    (module, name)
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                   "numpy._core.numeric")
    for name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle, allowed: set[tuple[str, str]], allowed_modules: tuple[str, ...]):
        super().__init__(handle, encoding="latin1")
        self.allowed, self.allowed_modules = allowed, allowed_modules

    def find_class(self, module: str, name: str):
        if ((module, name) in self.allowed or (module.startswith("numpy") and name == "dtype")
                or any(module == m or module.startswith(m + ".") for m in self.allowed_modules)):
            if module.startswith("numpy.core") and importlib.util.find_spec("numpy._core") is not None:
                module = module.replace("numpy.core", "numpy._core", 1)  # numpy 1 pickles on numpy 2
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_unpickle(path: str | Path, extra: Iterable[tuple[str, str]] = (), extra_modules: Iterable[str] = (),
                  what: str = "data pickles may hold only lists, dicts, numbers, strings and numpy arrays",
                  how: str = "Re-save the file with plain data (e.g. {'vertices': array, 'cam_t': array}).") -> object:
    """Unpickle `path` (latin1 for Python 2 pickles) allowing only `PLAIN_DATA` plus `extra`
    (module, name) globals and every global of `extra_modules`; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileNotFoundError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return _Unpickler(io.BytesIO(data), PLAIN_DATA | set(extra), tuple(extra_modules)).load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing"):
            raise ValueError(f"{path}: {err}: {what} (unpickling other objects can run code). {how}") from None
        raise ValueError(f"{path} is not a readable pickle ({err}): the file is corrupt or not a pickle; "
                         "re-export it.") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable pickle ({type(err).__name__}: {err}): the file is truncated "
                         "or corrupt; re-export it.") from err


__all__ = ["PLAIN_DATA", "safe_unpickle"]
