"""Checkpoints that cannot resume this run, and output folders a run could not write to."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from tests.robustness.helpers import load, tiny_data, tiny_system, tiny_trainer
from zoo.callbacks import CheckpointError, CheckpointGuard
from zoo.cli import ZooCLI

bad_input = pytest.mark.bad_input
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    tiny_trainer(folder, callbacks=[CheckpointGuard()], max_epochs=1).fit(tiny_system(), datamodule=tiny_data(tiny_data_dir))
    return folder / "checkpoints" / "last.ckpt"


def _resume(path, tiny_data_dir, tmp_path, system=None):
    trainer = tiny_trainer(tmp_path / "resumed", callbacks=[CheckpointGuard()], max_epochs=2)
    trainer.fit(system or tiny_system(), datamodule=tiny_data(tiny_data_dir), ckpt_path=path)
    return trainer


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ZOO_MARKER']}",))


def _write(kind: str, trained: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.ckpt"
    data = trained.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "code":
        os.environ["ZOO_MARKER"] = str(tmp_path / "ran")
        path.write_bytes(pickle.dumps({"state_dict": {}, "x": _RunsCode()}))
    elif kind == "bare_state_dict":
        torch.save(load(trained)["state_dict"], path)
    else:
        checkpoint = load(trained)
        if kind == "other_system":
            checkpoint["zoo"]["system"] = "zoo.systems.reid.ReIDSystem"
        elif kind == "other_version":
            checkpoint["zoo"]["version"] = "0.0.1"
        elif kind == "nan_weights":
            name = next(iter(checkpoint["state_dict"]))
            checkpoint["state_dict"][name] = checkpoint["state_dict"][name] * float("nan")
        torch.save(checkpoint, path)
    return path


CASES = [
    ("missing", "checkpoint not found", "--ckpt_path to a file that does not exist",
     "CheckpointError: 'checkpoint not found: <path>' and where run checkpoints live"),
    ("empty", "is empty", "empty checkpoint file (save killed, copy failed)",
     "CheckpointError naming the file: empty, killed while saving"),
    ("truncated", "truncated", "truncated checkpoint (half a file)",
     "CheckpointError naming the file: truncated or not a PyTorch checkpoint"),
    ("text", "cannot load checkpoint", "a text file passed as checkpoint",
     "CheckpointError naming the file: not a readable PyTorch checkpoint"),
    ("code", "never loads", "a checkpoint pickle that would run a command when loaded",
     "CheckpointError: only weights_only loads; nothing runs"),
    ("bare_state_dict", "not a Lightning checkpoint", "a bare state dict (torch.save(model.state_dict()))",
     "CheckpointError: not a Lightning checkpoint, cannot resume a run"),
    ("other_system", "written by the system zoo.systems.reid.ReIDSystem", "a checkpoint of another system",
     "CheckpointError naming both systems and the config to use"),
    ("other_version", "written by zoo 0.0.1", "a checkpoint of another zoo version",
     "CheckpointError naming both versions"),
    ("nan_weights", "NaN / inf weights", "a checkpoint holding NaN weights",
     "CheckpointError: resume from an earlier checkpoint"),
]


@pytest.mark.parametrize("kind,message", [pytest.param(k, m, marks=bad_input(case, answer), id=k)
                                          for k, m, case, answer in CASES])
def test_unusable_checkpoints_are_refused_naming_the_file(trained, tiny_data_dir, tmp_path, kind, message):
    path = tmp_path / "nowhere.ckpt" if kind == "missing" else _write(kind, trained, tmp_path)
    with pytest.raises(CheckpointError, match=message) as err:
        _resume(path, tiny_data_dir, tmp_path)
    assert str(path) in str(err.value)
    assert not (tmp_path / "ran").exists(), "no code from a checkpoint may run"
    assert not (tmp_path / "resumed" / "checkpoints").exists(), "nothing trained, nothing saved"


@bad_input("a checkpoint of the same system with other network sizes",
           "CheckpointError listing tensors of other shapes and the config to pass")
def test_other_network_sizes_are_refused(trained, tiny_data_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"weights of other sizes.*config.yaml"):
        _resume(trained, tiny_data_dir, tmp_path, system=tiny_system(base_channels=8))


@bad_input("a checkpoint without the zoo stamp (older zoo, plain Lightning) whose weights match",
           "loaded, with a warning that it carries no stamp")
def test_unstamped_matching_checkpoint_still_resumes(trained, tiny_data_dir, tmp_path):
    checkpoint = load(trained)
    del checkpoint["zoo"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert _resume(tmp_path / "old.ckpt", tiny_data_dir, tmp_path).global_step == 6


def _cli_args(data_dir) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--data.init_args.preset=tiny",
            f"--data.init_args.data_dir={data_dir}", "--data.init_args.progress=false",
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", "--trainer.logger=false",
            "--model.init_args.network.init_args.base_channels=4", "--model.init_args.network.init_args.depth=2"]


@bad_input("outputs/ (the run folder) not writable: a file in its place",
           "PermissionError naming the folder and --trainer.default_root_dir, before data or training")
def test_unwritable_output_folder_fails_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").write_text("a file where the run folder should be")
    data_dir = tmp_path / "data"
    with pytest.raises(PermissionError, match=r"run output folder outputs is not writable.*default_root_dir"):
        ZooCLI(args=_cli_args(data_dir))
    assert not data_dir.exists(), "nothing generated"


@bad_input("the run folder on a read-only mount (--trainer.default_root_dir=/proc/...)",
           "PermissionError naming the folder before any work")
def test_read_only_output_folder_fails_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PermissionError, match=r"/proc/zoo-run-test is not writable"):
        ZooCLI(args=[*_cli_args(tmp_path / "data"), "--trainer.default_root_dir=/proc/zoo-run-test"])


def test_cli_runs_carry_the_guards_and_stamp_checkpoints(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = ZooCLI(args=_cli_args(tiny_data_dir))
    kinds = {type(c).__name__ for c in cli.trainer.callbacks}
    assert {"NonFiniteGuard", "InterruptCheckpoint", "CheckpointGuard"} <= kinds
    last = next((tmp_path / "outputs").rglob("last.ckpt"))
    stamp = load(last)["zoo"]
    assert stamp["system"] == "zoo.systems.texture_completion.TextureCompletionSystem"


class _DiesWriting:
    """Stands in for a writer killed half-way: writes the first bytes into the file it was given, then stops."""

    def __init__(self, head: bytes):
        self.head = head

    def __call__(self, target) -> None:
        Path(target).write_bytes(self.head)  # (pathlib: not the patched builtins.open)
        raise KeyboardInterrupt  # what Ctrl-C does; a SIGKILL stops at the same point without cleanup


@bad_input("an export interrupted while writing (texture PNG, animation, .glb avatar, OBJ mesh)",
           "the file under its name stays the previous complete one (or absent): written beside it and renamed "
           "only when whole; the next export replaces it")
def test_an_interrupted_export_leaves_no_half_written_file(tmp_path, monkeypatch):
    from PIL import Image

    from zoo.export.gltf import GLBWriter
    from zoo.render.export import write_textured_obj
    from zoo.utils.images import save_png

    picture = torch.zeros(4, 4, 3, dtype=torch.uint8)
    png = save_png(picture, tmp_path / "texture.png")
    glb = GLBWriter().write(tmp_path / "avatar.glb")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    dies = _DiesWriting(b"\x89PNG\r\n")
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, *args, **kwargs: dies(fp))
    with pytest.raises(KeyboardInterrupt):
        save_png(picture + 255, png)
    with pytest.raises(KeyboardInterrupt):  # the OBJ export writes its texture first
        write_textured_obj(tmp_path, torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), torch.zeros(1, 3, 2),
                           torch.zeros(3, 4, 4), name="mesh")
    monkeypatch.undo()

    real_open = open

    def open_then_die(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".glb"):
            dies(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_then_die)
    with pytest.raises(KeyboardInterrupt):
        GLBWriter().write(glb)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "old files intact, nothing half-written"


def test_interrupted_photo_outputs_leave_no_half_written_file(tmp_path, monkeypatch):
    """The photo path's own writers (MP4 animation, the fit's pickle) follow the same rule as the
    exports above: a write killed half-way leaves the previous file (here: none) and no leftovers."""
    import imageio_ffmpeg
    import numpy as np

    import zoo.fit.io as fit_io
    from zoo.export.avatar import save_mp4

    dies = _DiesWriting(b"\x00\x00\x00\x18ftypmp42")
    monkeypatch.setattr(imageio_ffmpeg, "write_frames", lambda path, *args, **kwargs: dies(path))
    with pytest.raises(KeyboardInterrupt):
        save_mp4([np.zeros((4, 4, 3), np.uint8)], tmp_path / "walk.mp4")

    def pickle_then_die(data, handle):
        handle.write(b"\x80\x05")
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_io.pickle, "dump", pickle_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_io._save_pickle({"betas": np.zeros(3)}, tmp_path / "smpl" / "photo.pkl")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [], "nothing half-written, no temporary left"
