"""The command line end to end: fit, test, resolved config, W&B offline, and early clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zoo.cli import ZooCLI, main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")


def tiny_args(data_dir) -> list[str]:
    return [
        "--config", QUICKSTART,
        "--data.init_args.preset=tiny", f"--data.init_args.data_dir={data_dir}", "--data.init_args.progress=false",
        "--data.init_args.batch_size=4",
        "--model.init_args.network.init_args.base_channels=8", "--model.init_args.network.init_args.depth=2",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
    ]


@pytest.mark.slow
def test_fit_then_test_end_to_end_with_offline_wandb(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *tiny_args(tiny_data_dir), "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"])
    runs = list((tmp_path / "outputs" / "zoo").glob("*/checkpoints/last.ckpt"))
    assert len(runs) == 1, "one run with a last checkpoint"
    run = runs[0].parents[1]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["network"]["init_args"]["base_channels"] == 8  # resolved overrides
    assert list((tmp_path / "outputs" / "wandb").glob("offline-run-*")), "an offline W&B run, no network"

    main(["test", *tiny_args(tiny_data_dir), f"--ckpt_path={runs[0]}"])
    tables = list((tmp_path / "outputs" / "zoo").glob("*/test_metrics.md"))
    assert tables and "texture/psnr/invisible" in tables[0].read_text()


@pytest.mark.slow
def test_csv_logger_is_a_config_change(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *tiny_args(tiny_data_dir), "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
          "--trainer.log_every_n_steps=1", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
          f"--trainer.logger.init_args.save_dir={tmp_path}/csv"])
    assert list((tmp_path / "csv").rglob("metrics.csv"))


@pytest.mark.parametrize(
    "override,message",
    [
        pytest.param("--model.init_args.learning_rate=0.1", "learning_rate", marks=pytest.mark.bad_input(
            "a mistyped model option in a config / on the CLI", "exit 2 naming the key, before any data is touched")),
        pytest.param("--model.init_args.lr=fast", "lr", marks=pytest.mark.bad_input(
            "an option of the wrong type", "exit 2 naming the key and the expected type, before any work")),
        pytest.param("--model.init_args.network.class_path=zoo.modules.texture_unet.NoSuchNet", "NoSuchNet",
                     marks=pytest.mark.bad_input("an unknown class_path", "exit 2 naming the class, before any work")),
        pytest.param("--data.init_args.batchsize=3", "batchsize", marks=pytest.mark.bad_input(
            "a mistyped data option", "exit 2 naming the key, before any data is generated")),
    ],
)
def test_bad_configs_fail_before_any_data_is_touched(override, message, tmp_path, capsys):
    missing = tmp_path / "never-created"
    with pytest.raises(SystemExit) as exit_info:
        ZooCLI(args=["fit", *tiny_args(missing), override], run=True)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err
    assert not missing.exists(), "no data may be generated for a config that does not parse"


def test_print_config(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_args(tmp_path / "d"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "zoo.systems.texture_completion.TextureCompletionSystem"
