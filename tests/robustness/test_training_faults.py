"""Faults during training: NaN / inf in a view or a loss, NaN weights at save time, Ctrl-C (in a training
step or a validation), SIGTERM."""
from __future__ import annotations

import math
import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from tests.robustness.helpers import load, tiny_data, tiny_system, tiny_trainer
from tests.robustness.resume_check import flat_state, max_difference
from zoo.callbacks import CheckpointGuard, InterruptCheckpoint, NonFiniteError, NonFiniteGuard, RNGState

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


class _CtrlCInValidation(pl.Callback):
    """Ctrl-C at the first batch of the validation after `at_step` training steps; counts the
    validation batches that still started afterwards."""

    def __init__(self, at_step: int):
        self.at_step, self.sent, self.batches_after = at_step, False, 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.sanity_checking:
            return
        if self.sent:
            self.batches_after += 1
        elif trainer.global_step == self.at_step:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def _validating_trainer(folder, callbacks, max_steps: int = 7) -> pl.Trainer:
    checkpoint = ModelCheckpoint(dirpath=str(folder / "checkpoints"), save_last=True, every_n_epochs=1)
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=2,
                      callbacks=[*callbacks, RNGState(), CheckpointGuard(), checkpoint], deterministic=True)


@bad_input("Ctrl-C during a validation of `fit`",
           "the validation batch finishes, last.ckpt is written at once (the training state of the last step), "
           "exit 1; the resumed run continues exactly as the uninterrupted one")
def test_ctrl_c_during_validation_saves_at_once_and_resumes_exactly(tiny_data_dir, tmp_path):
    previous = signal.getsignal(signal.SIGINT)
    pl.seed_everything(0)
    straight = _validating_trainer(tmp_path / "straight", [])
    straight.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir, batch_size=2))

    pl.seed_everything(0)
    ctrl_c = _CtrlCInValidation(at_step=4)
    stopped = _validating_trainer(tmp_path / "stopped", [ctrl_c, InterruptCheckpoint()])
    with pytest.raises(SystemExit):
        stopped.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir, batch_size=2))
    assert signal.getsignal(signal.SIGINT) == previous, "the Ctrl-C handler is put back"
    assert ctrl_c.sent and ctrl_c.batches_after == 0, "no further validation batch ran after Ctrl-C"
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 4, "saved before any further training step"

    pl.seed_everything(1)
    resumed = _validating_trainer(tmp_path / "resumed", [])
    resumed.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir, batch_size=2), ckpt_path=last)
    diff, where = max_difference(flat_state(straight), flat_state(resumed))
    assert diff <= 1e-6, f"resumed after Ctrl-C in validation differs by {diff:.3g} at {where}"


class _ValidationDraws(pl.Callback):
    """A validation that draws from the global RNG (as the DINAR encoder's noise does)."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        torch.rand(3)


def test_validation_in_fit_leaves_the_training_rng_alone(tiny_data_dir, tmp_path):
    """Training draws do not depend on whether validation ran: with RNGState, a run validating every
    2 steps draws what a run without validation draws (checked through a draw at each step)."""
    draws = {}
    for name, limit in (("with", 2), ("without", 0)):
        class _Record(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx, _name=name):
                draws.setdefault(_name, []).append(float(torch.rand(())))

        pl.seed_everything(0)
        trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                             val_check_interval=2, limit_val_batches=limit,
                             callbacks=[_ValidationDraws(), _Record(), RNGState()])
        trainer.fit(tiny_system(), datamodule=tiny_data(tiny_data_dir, batch_size=2))
    assert len(draws["with"]) == 5 and draws["with"] == draws["without"]
