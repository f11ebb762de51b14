"""One run of a tiny system on 1 or N CPU processes (gloo DDP), for tests/robustness/test_multiprocess.py.

    python tests/robustness/ddp_run.py SYSTEM DEVICES fit|validate|test DATA_DIR OUT_DIR [CKPT]

`fit` trains 2 steps and saves OUT_DIR/model.ckpt; `validate` / `test` evaluate CKPT's weights.
Rank 0 writes the logged metrics to OUT_DIR/metrics.json. Lightning's DDP launcher starts the
other processes by running this same command line again.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from tests.robustness.test_resume import SYSTEMS  # noqa: E402
from zoo.callbacks import CheckpointGuard, RNGState  # noqa: E402

GANS = ("vqgan", "neural_avatar")


def main() -> None:
    name, devices, mode, data_dir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
    ckpt = sys.argv[6] if len(sys.argv) > 6 else None
    torch.set_num_threads(1)
    pl.seed_everything(0)
    make_system, make_data, per_batch = SYSTEMS[name]
    # GAN systems step G and D separately (manual optimisation): each step leaves the other's
    # parameters without gradients, which DDP must be told to expect.
    strategy = "auto" if devices == 1 else ("ddp_find_unused_parameters_true" if name in GANS else "ddp")
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy,
                         max_steps=2 * per_batch, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, num_sanity_val_steps=0, callbacks=[RNGState(), CheckpointGuard()],
                         default_root_dir=str(out))  # files a system writes (test tables) stay in OUT_DIR
    system, data = make_system(), make_data(data_dir)
    if mode == "fit":
        trainer.fit(system, datamodule=data)
        trainer.save_checkpoint(out / "model.ckpt")
    elif mode == "validate":
        trainer.validate(system, datamodule=data, ckpt_path=ckpt)
    else:
        trainer.test(system, datamodule=data, ckpt_path=ckpt)
    if trainer.is_global_zero:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        (out / "metrics.json").write_text(json.dumps({"world_size": trainer.world_size, "metrics": metrics}))


if __name__ == "__main__":
    main()
