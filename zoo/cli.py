"""The zoo's command line: `python -m zoo fit|validate|test|predict --config X.yaml`.

A LightningCLI in subclass mode: the model and the data are any LightningModule /
LightningDataModule named by `class_path` + `init_args` in YAML, so each paper's system is a
config file. OmegaConf interpolation (`${model.init_args.uv_size}`) works inside one file.

Defaults that differ from Lightning's:
- the logger is Weights & Biases, *offline* (no account or network needed; `wandb sync`
  uploads later). `--trainer.logger.init_args.offline=false` goes online, a CSVLogger or
  `--trainer.logger=false` replace it;
- runs are written under `./outputs` (the directory the command runs in), and every fit saves
  its resolved config next to its checkpoints and into the W&B run;
- every run checkpoints its RNG states (`rng_state`, so a resume is exact) and gets three guards
  (`zoo.callbacks`), configurable as top-level keys:
  `nonfinite` (a NaN / inf loss stops the run naming the step and batch; `--nonfinite.action=skip`
  skips such steps), `interrupt` (Ctrl-C / SIGTERM save a newest `last.ckpt`) and
  `checkpoint_guard` (checkpoints are stamped with their system and zoo version, loaded with
  `weights_only=True`, and refused with a reason when they do not fit the run);
- the output folders are checked to be writable before anything runs.
"""
from __future__ import annotations

import logging
import os

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from zoo import __version__
from zoo.callbacks import CheckpointGuard, InterruptCheckpoint, NonFiniteGuard, RNGState
from zoo.utils.files import require_writable
from zoo.utils.runs import run_dir

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = "outputs"


class SaveResolvedConfig(SaveConfigCallback):
    """Writes the resolved config into the run's folder (beside `checkpoints/`) and the W&B run.

    Lightning's default writes to `trainer.log_dir`, which for a W&B logger is the shared save
    directory, so two runs would collide; the checkpoint folder is per run.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        return None  # the checkpoint folder is only known once every callback is set up

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        text = f"# zoo {__version__} (python -m zoo)\n" + self.parser.dump(self.config, skip_none=False)
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.config_filename).write_text(text, encoding="utf-8")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "config") and hasattr(experiment.config, "update"):
                import yaml

                experiment.config.update({"zoo_config": yaml.safe_load(text)}, allow_val_change=True)
        self.already_saved = True
        log.info("resolved config written to %s", folder / self.config_filename)


class ZooCLI(LightningCLI):
    """LightningCLI with the zoo's defaults (see the module docstring)."""

    def __init__(self, args=None, run: bool = True, **kwargs):
        trainer_defaults = {
            "default_root_dir": DEFAULT_OUTPUT_DIR,
            "logger": {
                "class_path": "pytorch_lightning.loggers.WandbLogger",
                "init_args": {"project": "zoo", "offline": True, "save_dir": DEFAULT_OUTPUT_DIR},
            },
        }
        trainer_defaults.update(kwargs.pop("trainer_defaults", {}))
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveResolvedConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults=trainer_defaults,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt")
        parser.add_lightning_class_args(CheckpointGuard, "checkpoint_guard")
        parser.add_lightning_class_args(RNGState, "rng_state")

    def before_instantiate_classes(self) -> None:
        """Fail before any data is generated or any step runs if the run could not save its results."""
        config = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        trainer = config.get("trainer") or {}
        how = ("Run from a writable folder, or set --trainer.default_root_dir (and the logger's save_dir, "
               "e.g. --trainer.logger.init_args.save_dir) to a writable folder.")
        folders = {trainer.get("default_root_dir") or DEFAULT_OUTPUT_DIR}
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            args = getattr(logger, "init_args", None) or (logger.get("init_args") if isinstance(logger, dict) else None)
            save_dir = args.get("save_dir") if args is not None and hasattr(args, "get") else None
            if save_dir:
                folders.add(save_dir)
        for folder in sorted(str(f) for f in folders):
            require_writable(folder, "the run output folder", how)

    # Close the W&B run once a subcommand is done, so that a second command in the same process
    # (a notebook, a test) starts its own run instead of silently reusing this one.
    def _finish_wandb(self) -> None:
        import sys

        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()

    after_fit = after_validate = after_test = after_predict = _finish_wandb

    def before_fit(self) -> None:
        """A model's `check_assets()` (if it has one) runs before any data is prepared, so that a
        missing weight file fails the run at start, not after minutes of data generation."""
        check = getattr(self.model, "check_assets", None)
        if callable(check):
            check()

    def before_predict(self) -> None:
        """As `before_fit` for what a model needs to predict (`check_predict_assets()`)."""
        check = getattr(self.model, "check_predict_assets", None)
        if callable(check):
            check()


APPS = {"avatar": "zoo.avatar.command", "demo": "zoo.avatar.demo"}


def main(args=None) -> None:
    """Entry point of `python -m zoo` and the `zoo` console script (`avatar` and `demo` are plain
    commands, everything else is the LightningCLI)."""
    import sys

    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in APPS:
        import importlib

        sys.exit(importlib.import_module(APPS[argv[0]]).main(argv[1:]))
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ZooCLI(args=args)


if __name__ == "__main__":
    main()
