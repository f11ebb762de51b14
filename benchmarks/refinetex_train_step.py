"""RefineTex training step: LightningModule under a Trainer vs a plain PyTorch loop, same run.

Both paths train fresh copies (same seed) of the same RefineTexSystem modules (full RefineTex:
Texformer + deformable refiner + uncertainty head, all losses, a tiny frozen ReID network) on the
same pre-built batches. The plain loop calls `system.compute_losses`, backward and Adam itself;
the Lightning path runs `Trainer.fit` (no checkpointing, no validation), once without a logger
and once with a CSVLogger writing every step. Step time is the span from batch start to the end
of the optimiser step (a callback in Lightning, the loop body in plain PyTorch); rounds alternate
between the paths so that load from other processes hits both alike; medians over the timed
steps of every round. Tiny CPU sizes, one thread. Run:

    python benchmarks/refinetex_train_step.py [--steps 30] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from zoo.losses.refinetex import RefineTexLoss
from zoo.modules.refinetex import RefineTexNet
from zoo.modules.refiners import DeformableRefiner
from zoo.modules.reid import SmallReID
from zoo.modules.texformer import TexformerBackbone
from zoo.modules.uncertainty import UncertaintyHead
from zoo.systems.refinetex import RefineTexSystem

H, W, T, UV, FEAT, BATCH = 64, 32, 32, 32, 16, 4


def make_batches(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        b = {}
        for p in ("", "novel_"):
            b[p + "image"] = torch.rand(BATCH, 3, H, W, generator=g) * 2 - 1
            b[p + "parts"] = torch.randint(0, 8, (BATCH, H, W), generator=g)
            b[p + "uv"] = torch.rand(BATCH, H, W, 2, generator=g) * 1.8 - 0.9
            b[p + "mask"] = (torch.rand(BATCH, 1, H, W, generator=g) > 0.3).float()
        b["texture"] = torch.rand(BATCH, 3, T, T, generator=g) * 2 - 1
        b["texture_mask"] = torch.ones(BATCH, 1, T, T)
        batches.append(b)
    return batches


def make_system(reid: str) -> RefineTexSystem:
    torch.manual_seed(0)
    network = RefineTexNet(TexformerBackbone(feat_dim=FEAT, num_heads=4, uv_size=(UV, UV)),
                           refiner=DeformableRefiner(hidden_channels=FEAT, feature_channels=FEAT))
    system = RefineTexSystem(network, uncertainty=UncertaintyHead(width=FEAT), reid=reid,
                             loss=RefineTexLoss(deep_supervision_steps=20), log_images_every_n_steps=0)
    system.configure_data({"face_hands_mask": torch.zeros(T, T, dtype=torch.bool).index_fill_(0, torch.arange(4), True),
                           "texture_mask": torch.ones(1, T, T)})
    system.load_reid()
    return system


def plain_loop(reid: str, batches: list[dict], warmup: int) -> list[float]:
    system = make_system(reid).train()
    optimizer = system.configure_optimizers()
    times = []
    for step, batch in enumerate(batches):
        start = time.perf_counter()
        loss, _ = system.compute_losses(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


class StepTimer(pl.Callback):
    def __init__(self):
        self.times, self._start = [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)


def lightning_fit(reid: str, batches: list[dict], warmup: int, logger_dir: str | None) -> list[float]:
    system = make_system(reid)
    timer = StepTimer()
    logger = pl.loggers.CSVLogger(logger_dir) if logger_dir else False
    trainer = pl.Trainer(accelerator="cpu", max_steps=len(batches), logger=logger, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(system, train_dataloaders=loader)
    return timer.times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps of every run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    batches = make_batches(args.steps + args.warmup)
    results = {"plain PyTorch loop": [], "Lightning, no logger": [], "Lightning, CSVLogger every step": []}
    with tempfile.TemporaryDirectory() as tmp:
        reid = str(Path(tmp) / "reid")
        SmallReID(num_classes=4, widths=(16, 32, 64, 64), embedding_dim=16, input_size=(H, W)).save_pretrained(reid)
        for _ in range(args.rounds):
            results["plain PyTorch loop"] += plain_loop(reid, batches, args.warmup)
            results["Lightning, no logger"] += lightning_fit(reid, batches, args.warmup, None)
            results["Lightning, CSVLogger every step"] += lightning_fit(reid, batches, args.warmup, str(Path(tmp) / "logs"))
    base = statistics.median(results["plain PyTorch loop"])
    print(f"RefineTex full training step, batch {BATCH}, image {H}x{W}, UV {UV}x{UV}, width {FEAT}, "
          f"1 CPU thread; {args.rounds} rounds x {args.steps} timed steps (after {args.warmup} warm-up)")
    print(f"{'path':<34}{'median ms/step':>16}{'p10-p90 ms':>16}{'ratio to plain':>16}")
    for name, times in results.items():
        q = statistics.quantiles(times, n=10)
        print(f"{name:<34}{1000 * statistics.median(times):>16.1f}{f'{1000 * q[0]:.0f}-{1000 * q[-1]:.0f}':>16}"
              f"{statistics.median(times) / base:>16.3f}")


if __name__ == "__main__":
    main()
