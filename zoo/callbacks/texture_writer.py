"""Prediction export: write the textures a system predicts (and textured meshes) to disk."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from zoo.render.export import export_textures
from zoo.utils.runs import run_dir

log = logging.getLogger(__name__)


class TextureWriter(BasePredictionWriter):
    """Writes `textures/view_<id>.png` for every predicted texture and, per person, a textured OBJ
    with front / side / back renders on the datamodule's body (`datamodule.body_model()`; data
    without one, e.g. photos fitted with another body, gets the texture PNGs only).

    The system's `predict_step` returns {"texture": (B, 3, T, T) in [-1, 1], "view_id": (B,),
    "person_id": (B,)} (ids optional: running indices are used instead).

    Args:
        output_dir: output folder (None: `<run dir>/predictions`).
        render_size: (H, W) of the front/side/back renders.
        meshes: write meshes and renders where the data has a body (False: textures only).
    """

    def __init__(self, output_dir: str | None = None, render_size: Sequence[int] = (256, 128), meshes: bool = True):
        super().__init__(write_interval="batch")
        if len(render_size) != 2 or any(int(s) < 1 for s in render_size):
            raise ValueError(f"render_size must be two positive ints (H, W), got {render_size!r}")
        self.output_dir, self.render_size, self.meshes = output_dir, tuple(int(s) for s in render_size), meshes
        self.written: list[str] = []
        self._seen: set = set()
        self._body = None

    def folder(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else run_dir(trainer) / "predictions"

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.written, self._seen, self._body = [], set(), None
        make_body = getattr(trainer.datamodule, "body_model", None)
        if self.meshes and make_body is not None:
            self._body = make_body()
        elif self.meshes:
            log.info("TextureWriter: %s provides no body_model(), so only texture PNGs are written",
                     type(trainer.datamodule).__name__)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        texture = prediction["texture"].detach().clamp(-1, 1).float().cpu()
        n = len(texture)
        views = prediction["view_id"].tolist() if "view_id" in prediction else [batch_idx * n + i for i in range(n)]
        people = prediction["person_id"].tolist() if "person_id" in prediction else views
        self.written += export_textures(self.folder(trainer), texture, views, people, self._body, self._seen,
                                        self.render_size)
