"""RefineTex training step: LightningModule under a Trainer vs a plain PyTorch loop, same run.

Both paths train fresh copies (same seed) of the same RefineTexSystem modules (full RefineTex:
Texformer + deformable refiner + uncertainty head, all losses, a tiny frozen ReID network) on the
same pre-built batches served by the same DataLoader. The plain loop calls
`system.compute_losses`, backward and Adam itself; the Lightning path runs `Trainer.fit` (no
checkpointing, no validation) without a logger, and with the zoo's default logger (Weights &
Biases, offline, as `python -m zoo fit` sets it up) at Lightning's default interval
(`log_every_n_steps=50`), and with a CSVLogger writing every step. A step is the full cycle from
one batch's end to the next (data, hooks, logging included); times are process CPU time (robust on
a shared machine; W&B's writer runs in its own process and is not counted). Rounds alternate
between the paths, in a new order every round, so that load from other processes hits all alike;
means over the timed steps of every round (a logger writes on one step in 50, so means, not
medians, carry its cost), pooled and as per-round ratios to the plain loop (median, min-max: the
spread shows the machine's noise). A second table measures Lightning's own cost per step directly,
on a one-layer model fed the same batches. Tiny CPU sizes, one thread. Run:

    python benchmarks/refinetex_train_step.py [--steps 60] [--rounds 2]
"""
from __future__ import annotations

import sys
from pathlib import Path

# This checkout's zoo and its tests/ helpers (the batch builder below), wherever it is run from.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from tests.systems.refinetex_batches import random_refinetex_batch, tiny_uv_maps  # noqa: E402
from zoo.losses.refinetex import RefineTexLoss  # noqa: E402
from zoo.modules.refiners import DeformableRefiner  # noqa: E402
from zoo.modules.refinetex import RefineTexNet  # noqa: E402
from zoo.modules.reid import SmallReID  # noqa: E402
from zoo.modules.texformer import TexformerBackbone  # noqa: E402
from zoo.modules.uncertainty import UncertaintyHead  # noqa: E402
from zoo.systems.refinetex import RefineTexSystem  # noqa: E402

H, W, T, UV, FEAT, BATCH = 64, 32, 32, 32, 16, 4


def make_batches(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [random_refinetex_batch(BATCH, (H, W), T, g) for _ in range(n)]


UV_MAPS = tiny_uv_maps(T)


class Batches(pl.LightningDataModule):
    """The pre-built batches and the UV maps the system reads in `setup` (what a datamodule gives)."""

    def __init__(self, loader):
        super().__init__()
        self.loader = loader

    def train_dataloader(self):
        return self.loader

    def uv_maps(self) -> dict:
        return UV_MAPS


class LogEveryTermEveryStep(RefineTexSystem):
    """The system's training step as it was before issue 13: every loss term through `self.log` on
    every step, though the logger writes one step in 50 (kept here to show the difference)."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, terms = self.compute_losses(batch, self.global_step)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=bs)
        return loss


def make_system(reid: str, cls: type[RefineTexSystem] = RefineTexSystem) -> RefineTexSystem:
    torch.manual_seed(0)
    network = RefineTexNet(TexformerBackbone(feat_dim=FEAT, num_heads=4, uv_size=(UV, UV)),
                           refiner=DeformableRefiner(hidden_channels=FEAT, feature_channels=FEAT))
    system = cls(network, uncertainty=UncertaintyHead(width=FEAT), reid=reid,
                             loss=RefineTexLoss(deep_supervision_steps=20), log_images_every_n_steps=0)
    system.configure_data(UV_MAPS)
    system.load_reid()
    return system


def timed_steps(loss_of, optimizer, loader, warmup: int) -> list[float]:
    """CPU seconds of each plain-PyTorch step (`loss_of(batch, step)`, backward, optimiser step),
    the first `warmup` dropped."""
    times, last = [], time.process_time()
    for step, batch in enumerate(loader):
        loss = loss_of(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        now = time.process_time()
        times.append(now - last)
        last = now
    return times[warmup:]


def plain_loop(reid: str, loader, warmup: int) -> list[float]:
    system = make_system(reid).train()
    return timed_steps(lambda batch, step: system.compute_losses(batch, step)[0], system.configure_optimizers(),
                       loader, warmup)


class StepTimer(pl.Callback):
    """CPU time between consecutive ends of training batches (the whole loop cycle)."""

    def __init__(self):
        self.times, self._last = [], 0.0

    def on_train_start(self, trainer, pl_module):
        self._last = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.process_time()
        self.times.append(now - self._last)
        self._last = now


def make_logger(kind: str | None, folder: str):
    if kind == "wandb":
        return pl.loggers.WandbLogger(project="zoo-benchmark", offline=True, save_dir=folder)
    if kind == "csv":
        return pl.loggers.CSVLogger(folder)
    return False


def lightning_fit(reid: str, loader, steps: int, warmup: int, logger: str | None, folder: str,
                  log_every_n_steps: int = 50, cls: type[RefineTexSystem] = RefineTexSystem) -> list[float]:
    system = make_system(reid, cls)
    timer = StepTimer()
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=make_logger(logger, folder),
                         log_every_n_steps=log_every_n_steps, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(system, datamodule=Batches(loader))
    if logger == "wandb":
        import wandb

        wandb.finish()
    return timer.times[warmup:]


class TrivialStep(pl.LightningModule):
    """A one-layer model on the same batches: what is left of its Lightning step is the framework."""

    def __init__(self, log_loss: bool):
        super().__init__()
        self.layer, self.log_loss = torch.nn.Linear(W, 1), log_loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch["image"]).square().mean()
        if self.log_loss:
            self.log("train/loss", loss, prog_bar=True, batch_size=BATCH)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


def framework_cost(loader, warmup: int) -> dict[str, float]:
    """Median CPU ms per step of `TrivialStep` in a plain loop and under a Trainer (no logger),
    without and with one `self.log` per step: Lightning's own cost per step, free of the model."""
    def plain() -> list[float]:
        model = TrivialStep(log_loss=False)
        return timed_steps(model.training_step, model.configure_optimizers(), loader, warmup)

    def fit(log_loss: bool) -> list[float]:
        timer = StepTimer()
        pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                   num_sanity_val_steps=0, callbacks=[timer]).fit(TrivialStep(log_loss), loader)
        return timer.times[warmup:]

    runs = {"plain loop": [], "Lightning": [], "Lightning + one self.log": []}
    for _ in range(3):
        runs["plain loop"] += plain()
        runs["Lightning"] += fit(False)
        runs["Lightning + one self.log"] += fit(True)
    return {name: 1000 * statistics.median(times) for name, times in runs.items()}


def quartiles(values: list[float]) -> str:
    """p25-p75 of a few numbers ("-" for fewer than two)."""
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=4, method="inclusive")
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps of every run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-csv", action="store_true", help="leave out the CSVLogger-every-step path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    n = args.steps + args.warmup
    loader = torch.utils.data.DataLoader(make_batches(n), batch_size=None, shuffle=False)
    paths = {
        "plain PyTorch loop": None,
        "Lightning, no logger": {"logger": None},
        "Lightning, default logger (W&B offline, every 50 steps)": {"logger": "wandb"},
        "same, every term logged every step (before issue 13)": {"logger": "wandb", "cls": LogEveryTermEveryStep},
        "Lightning, CSVLogger every step": {"logger": "csv", "log_every_n_steps": 1},
    }
    if args.skip_csv:
        paths.pop("Lightning, CSVLogger every step")
    names = list(paths)
    results = {name: [] for name in paths}  # one list of step times per round
    with tempfile.TemporaryDirectory() as tmp:
        reid = str(Path(tmp) / "reid")
        SmallReID(num_classes=4, widths=(16, 32, 64, 64), embedding_dim=16, input_size=(H, W)).save_pretrained(reid)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # a new order every round
                options = paths[name]
                if options is None:
                    results[name].append(plain_loop(reid, loader, args.warmup))
                else:
                    results[name].append(lightning_fit(reid, loader, n, args.warmup, folder=str(Path(tmp) / "logs"),
                                                       **options))
    plain = results["plain PyTorch loop"]
    print(f"RefineTex full training step, batch {BATCH}, image {H}x{W}, UV {UV}x{UV}, width {FEAT}, "
          f"1 CPU thread; {args.rounds} rounds x {args.steps} timed steps (after {args.warmup} warm-up); CPU time")
    print()
    print("| path | mean ms/step | p10-p90 ms | ratio to plain (pooled means) | per-round ratio: median [min-max] "
          "| per-round ratio: p25-p75 |")
    print("|---|---|---|---|---|---|")
    for name, rounds in results.items():
        times = [t for one in rounds for t in one]
        q = statistics.quantiles(times, n=10)
        ratios = [statistics.mean(one) / statistics.mean(base) for one, base in zip(rounds, plain)]
        pooled = statistics.mean(times) / statistics.mean([t for one in plain for t in one])
        print(f"| {name} | {1000 * statistics.mean(times):.1f} | {1000 * q[0]:.0f}-{1000 * q[-1]:.0f} | "
              f"{pooled:.3f} | {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] | {quartiles(ratios)} |")
    cost = framework_cost(loader, args.warmup)
    step = 1000 * statistics.median([t for one in plain for t in one])
    print()
    print("Lightning's own cost per step (a one-layer model on the same batches; median CPU ms per step, 3 rounds):")
    print()
    print("| path | ms/step | extra over the plain loop | share of a plain RefineTex step |")
    print("|---|---|---|---|")
    for name, ms in cost.items():
        extra = ms - cost["plain loop"]
        print(f"| {name} | {ms:.2f} | {extra:+.2f} | {100 * extra / step:.2f}% |")


if __name__ == "__main__":
    main()
