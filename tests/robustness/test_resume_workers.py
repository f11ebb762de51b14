"""Exact resume of the DataModules' training data (Market-1501, DeepFashion, the synthetic people,
DINAR's stage-2 neural texture pairs) with worker processes.

Each training item's random choices (partner view, background and its flip, reference texture) come
from a generator seeded by the item's draw of the resumable sampler, not from the global RNG or a
worker's, so a run resumed mid-epoch reads exactly the batches the uninterrupted run read, with
`num_workers=2` as with 0. A recording module stands in for the system (the systems' own state is
covered by test_resume.py); the worker processes make these tests slow.
"""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from tests.datamodules.fixtures import write_deepfashion, write_pools, write_smpl_market, write_tiny_smpl
from zoo.datamodules import SyntheticPeopleDataModule
from zoo.datamodules.deepfashion import DeepFashionDataModule
from zoo.datamodules.market1501 import Market1501DataModule

pytestmark = pytest.mark.slow
MAX_STEPS = 8


class _Recorder(pl.LightningModule):
    """Records what each training batch holds (a sum per item of every tensor: views, partners,
    backgrounds, textures, ids)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[dict] = []

    def training_step(self, batch, batch_idx):
        self.seen.append({key: value.reshape(value.shape[0], -1).double().sum(1).tolist()
                          for key, value in sorted(batch.items()) if torch.is_tensor(value) and value.ndim})
        return self.weight * batch["texture_mask" if "texture_mask" in batch else "image"].float().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, tiny_data_dir):
    base = tmp_path_factory.mktemp("photos")
    smpl = write_tiny_smpl(base / "smpl")
    write_smpl_market(base / "SMPLMarket", smpl)
    write_deepfashion(base / "DeepFashion", smpl)
    return {"base": base, "smpl": smpl, "synthetic": tiny_data_dir, **write_pools(base)}


def _data(kind: str, photos, num_workers: int):
    if kind == "neural_texture_pairs":  # DINAR stage 2 (VQGAN / inpainting configs)
        from tests.datamodules.test_neural_texture_pairs import OVERRIDES, tiny_net
        from zoo.datamodules.neural_texture_pairs import NeuralTexturePairsDataModule

        return NeuralTexturePairsDataModule(tiny_net(), preset="tiny", overrides=OVERRIDES, data_dir=str(photos["synthetic"]),
                                            cache_dir=str(photos["base"] / "pairs_cache"), batch_size=2,
                                            num_workers=num_workers, progress=False)
    if kind == "synthetic":  # random partner views and backgrounds
        return SyntheticPeopleDataModule("tiny", data_dir=str(photos["synthetic"]), batch_size=4,
                                         num_workers=num_workers, progress=False)
    smpl = photos["smpl"]
    common = dict(smpl_model_path=smpl["model"], smpl_uv_path=smpl["uv"], backgrounds_dir=photos["backgrounds"],
                  textures_dir=photos["textures"], texture_size=16, batch_size=2, num_workers=num_workers,
                  items_per="image", drop_last=False)
    if kind == "market":
        return Market1501DataModule(str(photos["base"] / "SMPLMarket"), val_fraction=0.25, **common)
    return DeepFashionDataModule(str(photos["base"] / "DeepFashion"), image_size=(64, 64), val_fraction=0.34, **common)


def _fit(data, folder, ckpt_path=None) -> list[dict]:
    pl.seed_everything(0)
    module = _Recorder()
    checkpoints = ModelCheckpoint(dirpath=str(folder), filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(max_steps=MAX_STEPS, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[checkpoints])
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module.seen


@pytest.mark.parametrize("kind", ["market", "deepfashion", "synthetic", "neural_texture_pairs"])
def test_resume_with_workers_reads_the_uninterrupted_batches(kind, photos, tmp_path):
    straight = _fit(_data(kind, photos, num_workers=2), tmp_path / "a")
    assert len(straight) == MAX_STEPS
    assert straight == _fit(_data(kind, photos, num_workers=0), tmp_path / "a0"), "workers change nothing"
    per_epoch = len(_data(kind, photos, 0).train_dataloader())
    assert 2 < per_epoch < MAX_STEPS - 1, per_epoch  # stops mid-epoch in the first and the second epoch
    for stop in (2, per_epoch + 1):
        resumed = _fit(_data(kind, photos, num_workers=2), tmp_path / f"b{stop}",
                       ckpt_path=tmp_path / "a" / f"step={stop}.ckpt")
        assert resumed == straight[stop:], f"{kind}: resumed after step {stop} read other batches"
