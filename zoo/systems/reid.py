"""Training of the zoo's own ReID network (`SmallReID`) on synthetic identities.

The trained network is the default feature extractor of the ReID / part-style losses and of the
CosSim metric (`reid-synthetic` in the registry), so those work without third-party weights.

Batch contract (the synthetic people datamodule): a dict with
    "image":     (B, 3, H, W) float in [-1, 1]
    "person_id": (B,) int64 in [0, num_identities)
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from zoo.metrics.item_means import log_item_means
from zoo.modules.reid import SmallReID
from zoo.pretrained import export_folder

log = logging.getLogger(__name__)


def batch_hard_triplet_loss(embedding: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss: per anchor, hardest positive vs hardest negative (Euclidean).

    Anchors without a positive or a negative in the batch are skipped; 0 when none is left.
    """
    dist = torch.cdist(embedding, embedding)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    usable = pos_mask.any(1) & neg_mask.any(1)
    if not bool(usable.any()):
        return embedding.sum() * 0.0
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[usable].mean()


def export_dir(name_or_path: str) -> Path:
    """A bare name means `$ZOO_HOME/<name>`; anything with a separator, `~`, `.` or absolute is a path."""
    return export_folder(name_or_path)


class ReIDSystem(pl.LightningModule):
    """Identity classification (cross-entropy, optional batch-hard triplet) of a `SmallReID`.

    Args:
        network: the ReID network to train (injected; `class_path: zoo.modules.reid.SmallReID`).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        triplet_weight: weight of the batch-hard triplet loss on the embedding (0 disables it).
        triplet_margin: margin of the triplet loss.
        export_name_or_path: where `on_train_end` saves the trained network with `save_pretrained`:
            a bare name (e.g. "reid-synthetic") means `$ZOO_HOME/<name>`; None saves nothing.
    """

    def __init__(self, network: SmallReID, lr: float = 1e-3, weight_decay: float = 5e-4,
                 triplet_weight: float = 0.0, triplet_margin: float = 0.3,
                 export_name_or_path: str | None = None):
        super().__init__()
        if not isinstance(network, SmallReID):
            raise TypeError(f"network must be a zoo.modules.reid.SmallReID, got {type(network).__name__}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if triplet_weight < 0 or triplet_margin < 0:
            raise ValueError(f"triplet_weight and triplet_margin must be >= 0, got {triplet_weight!r}, {triplet_margin!r}")
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.train_acc = MulticlassAccuracy(num_classes=network.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=network.num_classes, average="micro")

    def _unpack(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, dict) or "image" not in batch or "person_id" not in batch:
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"a ReID batch must be a dict with 'image' and 'person_id', got {keys}")
        image, pid = batch["image"], batch["person_id"]
        if pid.dim() != 1 or pid.shape[0] != image.shape[0] or pid.is_floating_point():
            raise ValueError(f"person_id must be (B,) integer labels, got {tuple(pid.shape)} {pid.dtype}")
        n = self.network.num_classes
        if pid.numel() and (int(pid.min()) < 0 or int(pid.max()) >= n):
            raise ValueError(f"person_id must be in [0, {n}) (the network's num_classes), "
                             f"got values in [{int(pid.min())}, {int(pid.max())}]")
        return image, pid.long()

    def forward(self, image: torch.Tensor):
        return self.network(image)

    def _losses(self, image: torch.Tensor, pid: torch.Tensor):
        out = self.network(image)
        ce = F.cross_entropy(out.logits, pid)
        loss = ce
        parts = {"ce": ce}
        if self.hparams.triplet_weight > 0:
            triplet = batch_hard_triplet_loss(out.embedding, pid, self.hparams.triplet_margin)
            loss = loss + self.hparams.triplet_weight * triplet
            parts["triplet"] = triplet
        return loss, parts, out.logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        image, pid = self._unpack(batch)
        loss, parts, logits = self._losses(image, pid)
        self.train_acc(logits.detach(), pid)
        bs = image.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        image, pid = self._unpack(batch)
        loss, _, logits = self._losses(image, pid)
        self.val_acc(logits, pid)
        bs = image.shape[0]
        log_item_means(self, {"val/loss": loss}, batch_size=bs, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True, on_epoch=True, batch_size=bs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.network.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_train_end(self) -> None:
        target = self.hparams.export_name_or_path
        if target is None or not self.trainer.is_global_zero:
            return
        folder = self.network.save_pretrained(export_dir(target))
        log.info("exported the trained ReID network to %s", folder)
