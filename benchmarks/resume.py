"""Kill a training run with SIGKILL at a random step, resume it from its newest checkpoint, and
print how far its final state is from an uninterrupted run, for every system.

Per system (the tiny configurations of tests/robustness/test_resume.py on the "tiny" synthetic
people, CPU): three child processes
  1. straight: trains `--steps` batches uninterrupted, writes its final state;
  2. killed:   same run with a checkpoint after every step, SIGKILLed as soon as the checkpoint
               of a random step (1 .. steps-1) appears (the kill lands wherever the child is);
  3. resumed:  a fresh process resuming from the newest checkpoint the killed run left, to the end.
The printed difference is the largest absolute difference over every weight, optimiser moment
and callback state (EMA) between 1 and 3; the goal is <= 1e-6.

    PYTHONPATH=. python benchmarks/resume.py [--steps 7] [--seed 0] [--systems quickstart reid ...]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import pytorch_lightning as pl
    import torch

    from tests.robustness.resume_check import _trainer, flat_state
    from tests.robustness.test_resume import SYSTEMS
    from zoo.datamodules import SyntheticPeopleDataModule

    torch.set_num_threads(1)
    make_system, make_data, per_batch = SYSTEMS[args.system]
    SyntheticPeopleDataModule("tiny", data_dir=args.data, progress=False).prepare_data()
    pl.seed_everything(args.seed)
    trainer = _trainer(Path(args.folder), args.steps * per_batch, list, save_every_step=True)
    ckpt = args.ckpt if args.mode == "resumed" else None
    trainer.fit(make_system(), datamodule=make_data(args.data), ckpt_path=ckpt)
    torch.save(flat_state(trainer), args.out)


def _child(system: str, mode: str, folder: Path, out: Path, data: str, steps: int, seed: int,
           ckpt: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--system", system, "--mode", mode, "--folder", str(folder),
               "--out", str(out), "--data", data, "--steps", str(steps), "--seed", str(seed)]
    if ckpt is not None:
        command += ["--ckpt", str(ckpt)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("step=*.ckpt"), key=lambda p: int(p.stem.split("=")[1]))


def _wait(child: subprocess.Popen, what: str) -> None:
    _, err = child.communicate()
    if child.returncode != 0:
        sys.exit(f"{what} failed (exit {child.returncode}):\n{err[-3000:]}")


def run(system: str, steps: int, seed: int, data: str, work: Path, rng: random.Random) -> dict:
    import torch

    from tests.robustness.resume_check import max_difference

    folder = work / system
    _wait(_child(system, "straight", folder / "straight", folder / "straight.pt", data, steps, seed), "straight run")
    kill_after = rng.randint(1, steps - 1)
    killed = _child(system, "killed", folder / "killed", folder / "killed.pt", data, steps, seed)
    while len(_checkpoints(folder / "killed")) < kill_after and killed.poll() is None:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = _checkpoints(folder / "killed")
    newest = left[-1]
    resumed = _child(system, "resumed", folder / "resumed", folder / "resumed.pt", data, steps, seed, ckpt=newest)
    _wait(resumed, "resumed run")
    diff, where = max_difference(torch.load(folder / "straight.pt", weights_only=True),
                                 torch.load(folder / "resumed.pt", weights_only=True))
    return {"system": system, "kill_after_batch": kill_after, "resumed_from": newest.name,
            "batches_saved": len(left), "max_abs_diff": diff, "where": where or "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7, help="training batches of each run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs and of the kill steps")
    parser.add_argument("--systems", nargs="*", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("system", "mode", "folder", "out", "data", "ckpt"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(ROOT))
    from tests.robustness.test_resume import SYSTEMS

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = [run(name, args.steps, args.seed, str(work / "data"), work, rng) for name in (args.systems or SYSTEMS)]
    print(f"{'system':<18} {'killed after':>12} {'resumed from':>16} {'max |straight - resumed|':>26}  where")
    for row in rows:
        print(f"{row['system']:<18} {'batch ' + str(row['kill_after_batch']):>12} {row['resumed_from']:>16} "
              f"{row['max_abs_diff']:>26.3g}  {row['where']}")
    worst = max(row["max_abs_diff"] for row in rows)
    print(f"worst difference {worst:.3g} ({'within' if worst <= 1e-6 else 'ABOVE'} the 1e-6 goal)")


if __name__ == "__main__":
    main()
