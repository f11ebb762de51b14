"""Layers import downwards only (parsed with ast, so imports inside functions count too):

    utils < render, pretrained < body, modules, losses, metrics, diffusion, preprocess
      < datamodules, callbacks, export, inference < fit < systems < cli, avatar (and the command-line tools: zoo.__main__,
      zoo.pretrained.convert)

Packages on one layer do not import each other, and a system never imports another system (a
module of `zoo.systems` that defines a LightningModule); what systems share lives in helper
modules there (`zoo.systems.common`)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "zoo": 0, "zoo.utils": 0,
    "zoo.render": 1, "zoo.pretrained": 1,
    "zoo.body": 2, "zoo.modules": 2, "zoo.losses": 2, "zoo.metrics": 2, "zoo.diffusion": 2, "zoo.preprocess": 2,
    "zoo.datamodules": 3, "zoo.callbacks": 3, "zoo.export": 3, "zoo.inference": 3,  # export: GLB / rigged GLB / motion files / videos
    "zoo.fit": 3.5,  # body fitting to photos: uses the synthetic people's painter (datamodules)
    "zoo.systems": 4,
    "zoo.cli": 5, "zoo.avatar": 5, "zoo.pretrained.convert": 5, "zoo.__main__": 6,
}


def unit(module: str) -> str:
    """The most specific LAYERS key that `module` belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    if module == "zoo" or (len(parts) == 2 and parts[1].startswith("__")):  # the package root, zoo.__version__
        return "zoo"
    raise KeyError(f"{module} is in no layer: add its package to LAYERS in tests/test_layering.py")


def imported_modules(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every zoo import in `source` (relative imports resolved)."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]  # `from zoo import systems`
    return [(line, name) for line, name in found if name == "zoo" or name.startswith("zoo.")]


def defines_a_system(name: str) -> bool:
    """Whether zoo/systems/<name>.py defines a LightningModule (helpers such as common.py do not)."""
    path = ROOT / "zoo" / "systems" / f"{name}.py"
    if not path.is_file():
        return True  # e.g. the test's own examples: a missing file is treated as a system
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and any("LightningModule" in ast.unparse(base) for base in node.bases):
            return True
    return False


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    here = unit(module)
    bad = []
    for line, target in imported_modules(module, source, is_package):
        try:
            there = unit(target)
        except KeyError:
            continue  # `from zoo.x import name`: `zoo.x.name` is an attribute, `zoo.x` was checked
        if target.startswith("zoo.systems.") and here == "zoo.systems" and module != "zoo.systems":
            own, other = module.split(".")[2], target.split(".")[2]
            if other != own and defines_a_system(other):
                bad.append(f"{module}:{line} imports {target}: a system imports another system")
            continue
        if there == here or LAYERS[there] < LAYERS[here]:
            continue
        if LAYERS[there] == LAYERS[here] and (here.startswith(there + ".") or there == "zoo"):
            continue  # e.g. zoo.pretrained.convert -> zoo.pretrained: a tool inside its package
        kind = "a peer package on the same layer" if LAYERS[there] == LAYERS[here] else "a higher layer"
        bad.append(f"{module}:{line} imports {target} ({there}, layer {LAYERS[there]}): {kind} of "
                   f"{here} (layer {LAYERS[here]})")
    return bad


def zoo_files() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / "zoo").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


@pytest.mark.parametrize("module,path", zoo_files(), ids=[m for m, _ in zoo_files()])
def test_imports_go_downwards(module, path):
    assert violations(module, path.read_text(encoding="utf-8"), path.name == "__init__.py") == []


def test_the_checker_catches_upward_peer_and_cross_system_imports():
    assert violations("zoo.utils.paths", "def f():\n    from zoo.systems.refinetex import X\n")
    assert violations("zoo.losses.reid", "from zoo.modules.reid import freeze\n")  # peers
    assert violations("zoo.pretrained.mixin", "import zoo.modules.reid\n")
    assert violations("zoo.body.smpl_body", "from zoo.datamodules import x\n")
    assert violations("zoo.systems.latent_inpainting", "from zoo.systems.vqgan import preview\n")
    assert violations("zoo.render.export", "from ..modules import fusion\n")  # relative import resolved
    assert not violations("zoo.systems.vqgan", "from zoo.systems.common import log_image_grid\nimport zoo.modules.vqgan\n")
    assert not violations("zoo.pretrained.convert", "from zoo.modules.reid import PCBReID\n")
    with pytest.raises(KeyError, match="in no layer"):
        unit("zoo.newpackage.file")
