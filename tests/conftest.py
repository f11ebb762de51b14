"""Test-wide settings: no network, no user caches, tiny data generated once per session."""
from __future__ import annotations

import os

import pytest
import torch

# The user's cache before the private test $ZOO_HOME replaces it: fetched preprocessing models live there.
USER_ZOO_HOME = os.environ.get("ZOO_HOME", os.path.join(os.path.expanduser("~"), ".cache", "zoo"))

# Before anything imports wandb: never touch the network, keep its files in a temp dir.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("WANDB_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "zoo-tests-wandb"))
os.makedirs(os.environ["WANDB_DIR"], exist_ok=True)

# One thread: the tests are many small ops, where thread hand-offs cost more than they give
# (and a machine shared with other jobs makes two threads much slower still).
torch.set_num_threads(1)


def pytest_configure(config):
    # Registered here so that they work with --strict-markers whatever the ini file holds.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one; ZOO_TEST_DEVICE=cpu runs "
                                       "them on the CPU, as `benchmarks/gpu.sh --dry-run` does)")
    config.addinivalue_line("markers", "slow: takes more than ~20 s (deselect with -m 'not slow')")


@pytest.fixture
def device() -> str:
    """The accelerator for `gpu`-marked tests: CUDA, or the CPU when ZOO_TEST_DEVICE=cpu (a check that the
    tests themselves work, e.g. in the GPU script's dry run); skips otherwise."""
    if os.environ.get("ZOO_TEST_DEVICE") == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (ZOO_TEST_DEVICE=cpu runs it on the CPU)")
    return "cuda"


@pytest.fixture(scope="session", autouse=True)
def zoo_home(tmp_path_factory):
    """A private $ZOO_HOME so tests never read or write the user's cache."""
    home = tmp_path_factory.mktemp("zoo_home")
    old = os.environ.get("ZOO_HOME")
    os.environ["ZOO_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ZOO_HOME", None)
    else:
        os.environ["ZOO_HOME"] = old


@pytest.fixture(scope="session")
def tiny_data_dir(zoo_home):
    """The "tiny" synthetic people, generated once for the whole session."""
    from zoo.datamodules import SyntheticPeopleDataModule

    root = zoo_home / "data"
    SyntheticPeopleDataModule("tiny", data_dir=str(root), progress=False).prepare_data()
    return root


@pytest.fixture(scope="session")
def mediapipe_models(zoo_home):
    """The real MediaPipe .tflite files (`python -m zoo.preprocess.fetch`, run by .ci/run), linked
    into the private $ZOO_HOME; the test is skipped, naming the command, when they are not fetched."""
    from pathlib import Path

    from zoo.preprocess.fetch import FETCH_COMMAND, MEDIAPIPE_VERSION, MODEL_FILES

    pytest.importorskip("ai_edge_litert", reason="pip install ai-edge-litert")
    source = Path(USER_ZOO_HOME) / "preprocess" / f"mediapipe-{MEDIAPIPE_VERSION}"
    if not all((source / name).is_file() for name in MODEL_FILES):
        pytest.skip(f"MediaPipe models not fetched into {source}: run `{FETCH_COMMAND}`")
    target = Path(zoo_home) / "preprocess" / f"mediapipe-{MEDIAPIPE_VERSION}"
    target.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if not (target / name).exists():
            (target / name).symlink_to(source / name)
    return target
