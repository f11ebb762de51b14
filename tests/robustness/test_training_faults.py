"""Faults during training: NaN / inf in a view or a loss, NaN weights at save time, Ctrl-C, SIGTERM."""
from __future__ import annotations

import math
import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from tests.robustness.helpers import load, tiny_data, tiny_system, tiny_trainer
from zoo.callbacks import CheckpointGuard, InterruptCheckpoint, NonFiniteError, NonFiniteGuard

bad_input = pytest.mark.bad_input


class _Poisoned(Dataset):
    """The training split with `value` written into a corner of the image of view `index`."""

    def __init__(self, dataset, index: int, value: float):
        self.dataset, self.index, self.value = dataset, index, value

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        if i == self.index:
            item["image"][:, :3, :3] = self.value
        return item


def _poisoned_data(tiny_data_dir, value: float, index: int = 5):
    dm = tiny_data(tiny_data_dir)
    dm.setup("fit")
    dataset = _Poisoned(dm.datasets["train"], index, value)
    return DataLoader(dataset, batch_size=4, shuffle=False)


@pytest.mark.parametrize("value", [
    pytest.param(math.nan, marks=bad_input("NaN pixels in one training view",
                                           "NonFiniteError before the step: names epoch, step, batch and the "
                                           "batch key / items holding NaN; no NaN weights, no NaN checkpoint")),
    pytest.param(math.inf, marks=bad_input("inf pixels in one training view",
                                           "NonFiniteError naming step, batch and the inf values (as for NaN)")),
])
def test_non_finite_view_stops_training_before_any_weight_changes(tiny_data_dir, tmp_path, value):
    system = tiny_system()
    trainer = tiny_trainer(tmp_path, callbacks=[NonFiniteGuard(), CheckpointGuard()], max_epochs=3)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(system, train_dataloaders=_poisoned_data(tiny_data_dir, value))
    message = str(err.value)
    assert "epoch 0, global step 1, batch 1" in message  # view 5 is in the second batch of 4
    assert "image: 27 NaN / inf values (items [1])" in message and "action='skip'" in message
    assert all(torch.isfinite(p).all() for p in system.parameters())
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


@bad_input("NaN loss with NonFiniteGuard(action='skip')",
           "the bad steps are skipped (weights and Adam moments untouched), logged, training goes on")
def test_skip_mode_drops_the_bad_step_only(tiny_data_dir, tmp_path):
    system = tiny_system()
    guard = NonFiniteGuard(action="skip")
    trainer = tiny_trainer(tmp_path, callbacks=[guard, CheckpointGuard()], max_epochs=2)
    trainer.fit(system, train_dataloaders=_poisoned_data(tiny_data_dir, math.nan))
    assert guard.skipped_steps == [1, 4]  # the poisoned batch of each epoch
    assert trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in system.parameters())
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


@bad_input("every step non-finite with action='skip' (a diverged run)",
           "NonFiniteError after max_consecutive_skips skipped steps in a row")
def test_skip_mode_still_stops_a_diverged_run(tiny_data_dir, tmp_path):
    dm = tiny_data(tiny_data_dir)
    dm.setup("fit")

    class AllBad(_Poisoned):
        def __getitem__(self, i):
            item = self.dataset[i]
            item["image"][:] = math.nan
            return item

    trainer = tiny_trainer(tmp_path, callbacks=[NonFiniteGuard(action="skip", max_consecutive_skips=2)], max_epochs=3)
    with pytest.raises(NonFiniteError, match="3 steps in a row were skipped"):
        trainer.fit(tiny_system(), train_dataloaders=DataLoader(AllBad(dm.datasets["train"], 0, 0.0), batch_size=4))


class _Corrupt(pl.Callback):
    """Writes NaN into one weight after a step, the way a bad in-place update would."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = math.nan


@bad_input("NaN weights at checkpoint time",
           "NonFiniteError: the checkpoint is not written, the newest file on disk stays the last finite one")
def test_a_nan_checkpoint_is_never_written(tiny_data_dir, tmp_path):
    trainer = tiny_trainer(tmp_path, callbacks=[_Corrupt(), CheckpointGuard()], max_epochs=2)
    with pytest.raises(NonFiniteError, match="refusing to write a checkpoint with NaN"):
        trainer.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir))
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


class _SendSignal(pl.Callback):
    def __init__(self, signum: int, at_step: int):
        self.signum, self.at_step = signum, at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGINT, id="sigint", marks=bad_input("Ctrl-C (SIGINT) in the middle of an epoch",
                                                "the step finishes, last.ckpt of that step is written, exit 1; "
                                                "resuming from it continues the run")),
    pytest.param(signal.SIGTERM, id="sigterm", marks=bad_input("SIGTERM (scheduler kill) in the middle of an epoch",
                                                 "the step finishes, last.ckpt of that step is written")),
])
def test_interrupt_saves_a_newest_last_checkpoint(tiny_data_dir, tmp_path, signum):
    previous = signal.getsignal(signal.SIGINT)
    interrupt = InterruptCheckpoint()
    trainer = tiny_trainer(tmp_path, callbacks=[_SendSignal(signum, at_step=4), interrupt, CheckpointGuard()],
                           max_epochs=5)
    with pytest.raises(BaseException) as stop:  # Lightning turns Ctrl-C into sys.exit(1); SIGTERM is a SystemExit
        trainer.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir))
    assert isinstance(stop.value, SystemExit)
    assert signal.getsignal(signal.SIGINT) == previous, "the Ctrl-C handler is put back"
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 5 and last["epoch"] == 1, "saved after the interrupted step, mid-epoch 1"
    assert interrupt.saved_path == tmp_path / "checkpoints" / "last.ckpt"
    # The saved run resumes and finishes.
    resumed = tiny_trainer(tmp_path / "resumed", callbacks=[CheckpointGuard()], max_epochs=5)
    resumed.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir), ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert resumed.global_step == 15
