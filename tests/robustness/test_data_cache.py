"""Dataset caches under concurrent starts, kills and unwritable folders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoo.datamodules import SyntheticPeopleDataModule
from zoo.datamodules.datasets.synthetic_people import SyntheticPeople, is_generated
from zoo.utils.files import partial_folders

bad_input = pytest.mark.bad_input
ROOT = Path(__file__).resolve().parents[2]
SMALL = {"num_identities": 3, "views_per_identity": 2, "image_size": [16, 8], "texture_size": 16}

# A child process that waits for `go`, then prepares the dataset, logging what it did.
CHILD = """
import logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
import torch; torch.set_num_threads(1)
from zoo.datamodules import SyntheticPeopleDataModule
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
dm = SyntheticPeopleDataModule("tiny", overrides={overrides}, data_dir=sys.argv[1], progress=False)
dm.prepare_data()
print("FOLDER", dm.folder)
"""


def _child(data_dir: Path, go: Path, overrides: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD.replace("{overrides}", repr(overrides)), str(data_dir),
                             str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@bad_input("two processes generate the same dataset at once (fresh $ZOO_HOME, DDP ranks, two shells)",
           "one generates under a file lock into its own partial folder, the other waits and reuses the result")
def test_two_processes_generate_one_dataset(tmp_path):
    go = tmp_path / "go"
    children = [_child(tmp_path / "data", go, SMALL) for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err[-2000:] for _, err in outputs]
    folders = {line.split(" ", 1)[1] for out, _ in outputs for line in out.splitlines() if line.startswith("FOLDER")}
    assert len(folders) == 1
    logs = "".join(err for _, err in outputs)
    assert logs.count("generated ") == 1 and "already built by another process" in logs
    folder = Path(folders.pop())
    assert is_generated(folder) and not partial_folders(folder)
    assert len(SyntheticPeople(folder, "train")) > 0


@bad_input("a dataset generation killed (SIGKILL) half-way",
           "nothing is left where readers look; the next run removes the partial folder and generates anew")
def test_a_killed_generation_leaves_nothing_later_runs_fail_on(tmp_path):
    go = tmp_path / "go"
    go.touch()
    child = _child(tmp_path / "data", go, SMALL)
    dm = SyntheticPeopleDataModule("tiny", overrides=SMALL, data_dir=str(tmp_path / "data"), progress=False)
    deadline = time.monotonic() + 120
    while not partial_folders(dm.folder) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    stale = partial_folders(dm.folder)
    assert stale, "the child should be generating (its partial folder exists while it builds the body)"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert not is_generated(dm.folder) and all(p.exists() for p in stale)
    dm.setup("fit")  # a later run: takes the lock (released by the kernel), removes the leftovers, generates
    assert is_generated(dm.folder) and not partial_folders(dm.folder)
    assert len(dm.datasets["train"]) == 2


@bad_input("a cache folder left incomplete (no meta.json, e.g. by an older zoo)",
           "removed and regenerated under the lock instead of failing on missing files")
def test_an_incomplete_cache_folder_is_rebuilt(tmp_path):
    dm = SyntheticPeopleDataModule("tiny", overrides=SMALL, data_dir=str(tmp_path), progress=False)
    (dm.folder / "train").mkdir(parents=True)
    (dm.folder / "train" / "images.npy").write_bytes(b"half")
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and is_generated(dm.folder)


@pytest.mark.parametrize("make_unwritable", [
    pytest.param("file", marks=bad_input("dataset cache root is a file / not a folder",
                                         "PermissionError naming the folder and $ZOO_HOME / data_dir, before "
                                         "the body is built or anything generated")),
    pytest.param("proc", marks=bad_input("read-only $ZOO_HOME (e.g. a read-only mount)",
                                         "PermissionError naming the folder and how to set a writable one, "
                                         "before any work")),
])
def test_unwritable_cache_fails_before_any_work(tmp_path, monkeypatch, make_unwritable):
    if make_unwritable == "file":
        (tmp_path / "home").write_text("not a folder")
        home = tmp_path / "home"
    else:
        home = Path("/proc/zoo-cache-test")  # writes fail there even for root
    monkeypatch.setenv("ZOO_HOME", str(home))
    dm = SyntheticPeopleDataModule("tiny", overrides=SMALL, progress=False)
    with pytest.raises(PermissionError, match=r"not writable.*\$ZOO_HOME or the datamodule's data_dir"):
        dm.prepare_data()
