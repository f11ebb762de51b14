"""Shared checks every public module passes (in the spirit of diffusers' tester mixins).

`tests/modules/test_all_modules.py` runs them over every public module class of `zoo.modules`
(tiny configs in `tests/modules/specs.py`); a module's own test file may use them for more cases:

    from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _first_tensor(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _first_tensor(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _first_tensor(v)]
    if hasattr(output, "__dict__"):
        return [t for v in vars(output).values() for t in _first_tensor(v)]
    return []


def output_tensors(output) -> list[torch.Tensor]:
    """Every tensor of a module's output (tensors, dicts, sequences and dataclasses, in order)."""
    return _first_tensor(output)


def assert_batch_shapes(outputs: dict[int, object]) -> None:
    """outputs {batch size: a module's output}: the same tensors for each batch size, each either a
    scalar or (batch, ...) with the same trailing shape."""
    shapes = {b: [tuple(t.shape) for t in _first_tensor(out)] for b, out in outputs.items()}
    counts = {b: len(s) for b, s in shapes.items()}
    assert len(set(counts.values())) == 1 and next(iter(counts.values())) > 0, f"output tensors per batch: {counts}"
    for per_tensor in zip(*shapes.values()):
        for b, shape in zip(shapes, per_tensor):
            assert shape == () or shape[0] == b, f"an output of shape {shape} at batch {b}: {per_tensor}"
        assert len({s[1:] for s in per_tensor}) == 1, f"trailing shapes differ between batch sizes: {per_tensor}"


def scalar_of(output) -> torch.Tensor:
    """A scalar that depends on every floating tensor of a module's output."""
    tensors = [t for t in _first_tensor(output) if t.is_floating_point() and t.requires_grad]
    assert tensors, "the output holds no differentiable tensor"
    return sum((t.float() ** 2).mean() for t in tensors)


def assert_all_parameters_get_gradients(module: nn.Module, run: Callable[[nn.Module], object],
                                        allow_zero: tuple[str, ...] = ()) -> None:
    """Every trainable parameter receives a finite, non-zero gradient from `run(module)`.

    `allow_zero` names parameters whose gradient may legitimately be all zero for this input
    (say why in the test)."""
    module.zero_grad(set_to_none=True)
    scalar_of(run(module)).backward()
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, f"parameter {name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"parameter {name} has a non-finite gradient"
        if name not in allow_zero:
            assert param.grad.abs().sum() > 0, f"parameter {name} got an all-zero gradient"


def assert_save_load_round_trip(module: nn.Module, run: Callable[[nn.Module], object], tmp_path,
                                atol: float = 1e-6) -> nn.Module:
    """save_pretrained then from_pretrained gives the same class, config and eval outputs."""
    module.eval()
    with torch.no_grad():
        before = _first_tensor(run(module))
    module.save_pretrained(tmp_path / "saved")
    loaded = type(module).from_pretrained(tmp_path / "saved").eval()
    assert type(loaded) is type(module)
    assert loaded.config == module.config
    with torch.no_grad():
        after = _first_tensor(run(loaded))
    assert len(before) == len(after)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    return loaded
