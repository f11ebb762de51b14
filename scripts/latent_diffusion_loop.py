"""The resumable plain training loop of a latent-diffusion system over latents encoded once.

Shared by scripts/inpainting_results.py and scripts/dinar_complete_results.py: both encode the
training textures with the frozen VQGAN once and then train the denoiser on those tensors (the
LatentInpaintingSystem's Lightning step would re-encode every batch). Epochs draw a new order from
a seeded generator; the state (weights, optimiser, EMA, both RNGs, order and position, losses,
elapsed seconds) is saved every `save_every` steps to `resume`, so a killed run continues exactly.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("latent_diffusion_loop")


def train_on_latents(system, z0: torch.Tensor, cond: torch.Tensor, *, steps: int, batch_size: int, seed: int,
                     resume: Path, loss_type: str, save_every: int, log_every: int,
                     lr: float | None = None) -> tuple[list[float], float, bool]:
    """Train `system.denoiser` (EMA in `system.ema`) for `steps` optimiser steps, resuming from `resume`.

    `lr`: set the optimiser's learning rate after a resume (None: the system's, or the resumed run's).
    Returns (loss per step over the whole run, wall seconds over every segment, whether it resumed).
    """
    optimiser = system.configure_optimizers()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # training_loss draws timesteps and noise from the global generator
    history, order, pos, elapsed = [], torch.zeros(0, dtype=torch.long), 0, 0.0
    if resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        system.load_state_dict(state["state_dict"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        history, order, pos, elapsed = state["losses"].tolist(), state["order"], int(state["pos"]), float(state["elapsed"])
        log.info("diffusion: resuming at step %d from %s", len(history), resume)
    if lr is not None:
        for group in optimiser.param_groups:
            group["lr"] = lr
    resumed = bool(history)
    system.denoiser.train()
    start = time.perf_counter()
    while len(history) < steps:
        if pos >= len(order):  # a new epoch, drop_last=False as the datamodules
            order, pos = torch.randperm(len(z0), generator=generator), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        loss = system.diffusion.training_loss(system.denoiser, z0[idx], cond=cond[idx], loss_type=loss_type).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        system.ema.update(system.denoiser)
        history.append(loss.item())
        if len(history) % log_every == 0:
            log.info("diffusion step %d/%d loss %.4f (%.0f s)", len(history), steps, np.mean(history[-log_every:]),
                     elapsed + time.perf_counter() - start)
        if len(history) % save_every == 0 and len(history) < steps:
            torch.save({"state_dict": system.state_dict(), "optimiser": optimiser.state_dict(),
                        "generator": generator.get_state(), "rng": torch.get_rng_state(),
                        "losses": torch.tensor(history), "order": order, "pos": pos,
                        "elapsed": elapsed + time.perf_counter() - start}, resume)
    return history, elapsed + time.perf_counter() - start, resumed
