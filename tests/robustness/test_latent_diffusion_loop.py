"""scripts/latent_diffusion_loop.py: a finished run continued to a longer budget equals one run to that
budget (weights, optimiser, EMA and its update count, losses): the DINAR complete budget study keeps
the shorter models and continues the same run."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from zoo.diffusion import GaussianDiffusion
from zoo.utils.ema import ExponentialMovingAverage

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "latent_diffusion_loop.py"


def loop_module():
    spec = importlib.util.spec_from_file_location("latent_diffusion_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TinyDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.time = nn.Embedding(20, 2)

    def forward(self, x, t):
        return self.conv(x) + self.time(t)[:, :, None, None]


class TinySystem(nn.Module):
    """What train_on_latents uses of a LatentInpaintingSystem: denoiser, ema, diffusion, optimiser."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.denoiser = TinyDenoiser()
        self.ema = ExponentialMovingAverage(self.denoiser, decay=0.9, warmup=True)
        self.diffusion = GaussianDiffusion(num_train_timesteps=20)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.denoiser.parameters(), lr=1e-2, weight_decay=0.01)


def run(tmp: Path, budgets: list[int]) -> tuple[TinySystem, list[float]]:
    loop = loop_module()
    z0 = torch.randn(7, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    cond = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    for steps in budgets:  # a fresh process per budget, as a re-run of the script
        system = TinySystem()
        history, _, resumed = loop.train_on_latents(system, z0, cond, steps=steps, batch_size=3, seed=0, resume=tmp / "resume.pt",
                                                    loss_type="l2", save_every=2, log_every=100)
        assert resumed == (steps != budgets[0])
    return system, history


def test_continuing_a_finished_run_equals_one_longer_run(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight, losses = run(tmp_path / "a", [9])
    continued, losses_c = run(tmp_path / "b", [5, 9])  # epochs of 3 batches: the budgets cut epochs mid-way
    assert len(losses) == len(losses_c) == 9
    assert losses == losses_c
    assert int(continued.ema.num_updates) == int(straight.ema.num_updates) == 9
    for (name, a), (_, b) in zip(straight.state_dict().items(), continued.state_dict().items()):
        assert torch.equal(a, b), name
