"""ReIDSystem: a few CPU steps on random tensors, logging, triplet loss, export on train end."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.modules.reid import SmallReID
from zoo.pretrained import load_pretrained
from zoo.systems.reid import ReIDSystem, batch_hard_triplet_loss, export_dir

torch.set_num_threads(1)
NUM_IDS = 4


class _RandomPeople(Dataset):
    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 32, 16, generator=g) * 2 - 1
        self.ids = torch.arange(n) % NUM_IDS

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"image": self.images[i], "person_id": self.ids[i]}


class _TinyPeople(pl.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(_RandomPeople(), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(_RandomPeople(8), batch_size=8)


def _network() -> SmallReID:
    return SmallReID(num_classes=NUM_IDS, widths=(4, 6, 8, 8), embedding_dim=8, input_size=(32, 16))


def _fit(system) -> pl.Trainer:
    trainer = pl.Trainer(fast_dev_run=2, logger=False, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(system, datamodule=_TinyPeople())
    return trainer


def test_fit_logs_accuracy_and_updates_weights():
    torch.manual_seed(0)
    system = ReIDSystem(network=_network(), triplet_weight=1.0)
    before = {k: v.clone() for k, v in system.network.state_dict().items()}
    trainer = _fit(system)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/ce", "train/triplet", "train/acc", "val/acc"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0.0 <= float(metrics["train/acc"]) <= 1.0
    changed = [k for k, v in system.network.state_dict().items() if not torch.equal(v, before[k])]
    assert "classifier.weight" in changed and "layers.0.0.weight" in changed


def test_export_on_train_end_to_zoo_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    torch.manual_seed(0)
    system = ReIDSystem(network=_network(), export_name_or_path="reid-test")
    _fit(system)
    loaded = load_pretrained("reid-test").eval()
    assert isinstance(loaded, SmallReID)
    image = torch.rand(2, 3, 32, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(image).logits, system.network.eval()(image).logits)
    assert export_dir("reid-test") == tmp_path / "reid-test"
    assert export_dir(str(tmp_path / "x")) == tmp_path / "x"


def test_bad_batches_and_arguments():
    system = ReIDSystem(network=_network())
    with pytest.raises(ValueError, match="'image' and 'person_id'"):
        system.training_step({"image": torch.zeros(2, 3, 32, 16)}, 0)
    with pytest.raises(ValueError, match=r"person_id must be in \[0, 4\)"):
        system.training_step({"image": torch.zeros(2, 3, 32, 16), "person_id": torch.tensor([0, 4])}, 0)
    with pytest.raises(TypeError, match="SmallReID"):
        ReIDSystem(network=torch.nn.Linear(2, 2))


def test_batch_hard_triplet_by_hand():
    emb = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: pos 1, neg min 3 -> relu(1 - 3 + m); anchor 1: 1 - 2; anchor 2: 0.5 - 2; anchor 3: 0.5 - 2.5
    m = 2.0
    expected = (max(0, 1 - 3 + m) + max(0, 1 - 2 + m) + max(0, 0.5 - 2 + m) + max(0, 0.5 - 2.5 + m)) / 4
    assert batch_hard_triplet_loss(emb, labels, m).item() == pytest.approx(expected)
    assert batch_hard_triplet_loss(emb, torch.tensor([0, 1, 2, 3]), m).item() == 0.0


def test_fit_through_the_zoo_cli(tmp_path, monkeypatch):
    import yaml

    from zoo.cli import ZooCLI

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    monkeypatch.setattr("sys.argv", ["zoo"])
    config = {
        "model": {"class_path": "zoo.systems.reid.ReIDSystem",
                  "init_args": {"network": {"class_path": "zoo.modules.reid.SmallReID",
                                            "init_args": {"num_classes": NUM_IDS, "widths": [4, 4, 4, 4],
                                                          "embedding_dim": 8, "input_size": [32, 16]}},
                                "export_name_or_path": "reid-synthetic"}},
        "data": {"class_path": f"{__name__}._TinyPeople"},
        "trainer": {"accelerator": "cpu", "logger": False, "fast_dev_run": 2, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "outputs")},
    }
    path = tmp_path / "reid.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    cli = ZooCLI(args=["fit", "--config", str(path)])
    assert isinstance(cli.model, ReIDSystem) and cli.model.network.num_classes == NUM_IDS
    assert isinstance(load_pretrained("reid-synthetic"), SmallReID)
