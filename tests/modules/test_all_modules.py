"""The shared checks, run over every public module class of `zoo.modules` (tiny configs in
`tests/modules/specs.py`): output shapes at two batch sizes, every parameter gets a finite
non-zero gradient, no NaN, and a save_pretrained / from_pretrained round trip. A public module
class without a tiny config fails here, so a new module cannot skip the checks."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import zoo.modules
from tests.module_checks import assert_all_parameters_get_gradients, assert_batch_shapes, assert_save_load_round_trip, output_tensors
from tests.modules.specs import SPECS
from zoo.pretrained import PretrainedMixin

BATCHES = (2, 3)  # 2, not 1: BatchNorm1d heads (PCB) cannot train on one sample


def public_module_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(zoo.modules.__path__):
        module = importlib.import_module(f"zoo.modules.{info.name}")
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, PretrainedMixin) and issubclass(cls, torch.nn.Module)
                    and cls.__module__ == module.__name__ and not name.startswith("_") and not inspect.isabstract(cls)):
                found.append(cls)
    return found


def test_every_public_module_class_has_a_tiny_config():
    missing = [f"{c.__module__}.{c.__qualname__}" for c in public_module_classes() if c not in SPECS]
    assert not missing, f"add a tiny config for {missing} to tests/modules/specs.py"


def build(cls: type) -> torch.nn.Module:
    torch.manual_seed(0)
    return SPECS[cls].prepare(SPECS[cls].build())


@pytest.mark.parametrize("cls", list(SPECS), ids=lambda c: c.__name__)
def test_shapes_at_two_batch_sizes(cls):
    module = build(cls).eval()
    with torch.no_grad():
        outputs = {b: module(*SPECS[cls].inputs(b)) for b in BATCHES}
    assert_batch_shapes(outputs)
    for out in outputs.values():
        assert all(torch.isfinite(t).all() for t in output_tensors(out) if t.is_floating_point()), "NaN / inf output"


@pytest.mark.parametrize("cls", list(SPECS), ids=lambda c: c.__name__)
def test_every_parameter_gets_a_finite_gradient(cls):
    module = build(cls).train()
    inputs = SPECS[cls].inputs(BATCHES[0])
    if not any(p.requires_grad for p in module.parameters()):
        pytest.skip(f"{cls.__name__} has no parameters")
    assert_all_parameters_get_gradients(module, lambda m: m(*inputs), allow_zero=SPECS[cls].allow_zero)


@pytest.mark.parametrize("cls", list(SPECS), ids=lambda c: c.__name__)
def test_save_load_round_trip(cls, tmp_path):
    module = build(cls)
    inputs = SPECS[cls].inputs(BATCHES[0])
    loaded = assert_save_load_round_trip(module, lambda m: m(*inputs), tmp_path)
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}
