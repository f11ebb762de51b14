"""zoo.utils.runs.run_checkpoint: a run named by its folder or by one of its checkpoints."""
import os

import pytest

from zoo.utils.runs import run_checkpoint


def make_run(root, names, config=True):
    run = root / "both_s0"
    (run / "ckpt").mkdir(parents=True)
    if config:
        (run / "row_config.yaml").write_text("model: {}\n")
    for i, name in enumerate(names):
        path = run / "ckpt" / name
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    return run


def test_folder_takes_the_highest_step_milestone(tmp_path):
    run = make_run(tmp_path, ["milestone-step=300-300.ckpt", "milestone-step=1200-300.ckpt",
                              "milestone-step=1200-1200.ckpt", "milestone-step=900-300.ckpt", "last.ckpt"])
    assert run_checkpoint(run) == (run, run / "ckpt" / "milestone-step=1200-1200.ckpt")


def test_folder_without_steps_takes_the_newest_last(tmp_path):
    run = make_run(tmp_path, ["last.ckpt", "last-v1.ckpt"])
    assert run_checkpoint(run)[1] == run / "ckpt" / "last-v1.ckpt"


def test_checkpoint_file_names_its_run(tmp_path):
    run = make_run(tmp_path, ["milestone-step=600-300.ckpt", "milestone-step=1200-300.ckpt"])
    assert run_checkpoint(run / "ckpt" / "milestone-step=600-300.ckpt") == (run, run / "ckpt" / "milestone-step=600-300.ckpt")


@pytest.mark.parametrize("case", ["missing", "not_ckpt", "outside_ckpt", "no_config", "no_checkpoint"])
def test_wrong_paths_are_errors_naming_them(tmp_path, case):
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "not_ckpt":
        run = make_run(tmp_path, ["last.ckpt"])
        path = run / "row_config.yaml"
    elif case == "outside_ckpt":
        path = tmp_path / "stray.ckpt"
        path.write_bytes(b"x")
    elif case == "no_config":
        path = make_run(tmp_path, ["last.ckpt"], config=False)
    else:
        path = make_run(tmp_path, [])
    with pytest.raises((FileNotFoundError, ValueError), match=str(path).replace("\\", "\\\\")):
        run_checkpoint(path)
