"""The quick-start baseline: scatter one view into UV space, complete the texture with a U-Net.

Losses: L1 to the ground-truth texture on atlas texels, and L1 between the real images and
renders of the predicted texture in the input view and in a novel view of the same person
(a render is the texture looked up at the view's UV render, composited over the real image's
background, so only the person's pixels differ). Test: texture L1 / PSNR / SSIM on all,
visible and invisible texels, and novel-view image metrics.
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.metrics import build_image_metrics, texture_metrics
from zoo.metrics.item_means import item_mean, log_item_means
from zoo.metrics.tables import write_metric_tables
from zoo.modules.texture_unet import TextureUNet
from zoo.render import render_over_image as render_in_view
from zoo.utils.images import grid, log_picture, to_uint8
from zoo.utils.runs import run_dir

log = logging.getLogger(__name__)


class TextureCompletionSystem(pl.LightningModule):
    """Partial texture of one view -> complete UV texture (the zoo's baseline system).

    Args:
        network: the completion network (injected from YAML).
        lr: Adam learning rate.
        texture_weight: weight of the L1 to the ground-truth texture (synthetic data only).
        same_view_weight: weight of the L1 between the input image and the render in its view.
        novel_view_weight: weight of the L1 between a second image and the render in its view.
        use_position_code: feed the body's rest-pose position code as extra channels (needs
            `network.extra_channels == 3` and a datamodule with `uv_maps()`).
        metrics_variant: "standard" or "texformer" image metrics (zoo.metrics.VARIANTS).
        log_images_every_n_steps: image logging period in training steps (0: never).
    """

    def __init__(self, network: TextureUNet, lr: float = 1e-3, texture_weight: float = 1.0,
                 same_view_weight: float = 1.0, novel_view_weight: float = 1.0, use_position_code: bool = True,
                 metrics_variant: str = "standard", log_images_every_n_steps: int = 200) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if use_position_code and network.extra_channels != 3:
            raise ValueError(f"use_position_code needs network.extra_channels == 3, got {network.extra_channels}")
        self.network = network
        self.save_hyperparameters(ignore=["network"])
        self.register_buffer("position_code", torch.zeros(3, 1, 1), persistent=False)
        self.image_metrics = None
        self._test_items, self._test_names = 0, []

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.use_position_code:
            if dm is None or not hasattr(dm, "uv_maps"):
                raise ValueError("use_position_code needs a datamodule with uv_maps() (e.g. SyntheticPeopleDataModule)")
            self.position_code = dm.uv_maps()["position_code"].to(self.device)
        self.image_metrics = build_image_metrics(self.hparams.metrics_variant)
        for name, why in self.image_metrics.unavailable.items():
            log.warning("image metric %s unavailable: %s", name, why)

    def forward(self, partial: torch.Tensor, known_mask: torch.Tensor) -> torch.Tensor:
        extra = None
        if self.hparams.use_position_code:
            extra = F.interpolate(self.position_code[None], size=partial.shape[-2:], mode="nearest")[0]
        return self.network(partial, known_mask, extra)

    def _losses(self, batch: dict, texture: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        losses = {}
        if h.texture_weight and "texture" in batch:
            m = batch["texture_mask"]
            losses["texture_l1"] = ((texture - batch["texture"]).abs() * m).sum() / (m.sum() * texture.shape[1]).clamp(min=1)
        if h.same_view_weight:
            render = render_in_view(texture, batch["uv"], batch["mask"], batch["image"])
            losses["same_view_l1"] = (render - batch["image"]).abs().mean()
        if h.novel_view_weight and "novel_image" in batch:
            render = render_in_view(texture, batch["novel_uv"], batch["novel_mask"], batch["novel_image"])
            losses["novel_view_l1"] = (render - batch["novel_image"]).abs().mean()
        weights = {"texture_l1": h.texture_weight, "same_view_l1": h.same_view_weight, "novel_view_l1": h.novel_view_weight}
        losses["total"] = sum(weights[k] * v for k, v in losses.items())
        return losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        texture = self(batch["partial"], batch["known_mask"])
        losses = self._losses(batch, texture)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=texture.shape[0])
        every = self.hparams.log_images_every_n_steps
        if every and self.global_step % every == 0:
            self._log_pictures("train/examples", batch, texture)
        return losses["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        texture = self(batch["partial"], batch["known_mask"])
        losses = self._losses(batch, texture)
        log_item_means(self, {f"val/{k}": v for k, v in losses.items()}, batch_size=texture.shape[0])
        if "texture" in batch:
            tm = texture_metrics(texture, batch["texture"], batch["texture_mask"], batch["known_mask"])
            log_item_means(self, {f"val/texture_{k}": v for k, v in tm.items() if "l1" in k or "psnr" in k})
        if batch_idx == 0:
            self._log_pictures("val/examples", batch, texture)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        texture = self(batch["partial"], batch["known_mask"])
        rows: dict[str, torch.Tensor] = {}
        if "texture" in batch:
            rows.update({f"texture/{k}": v for k, v in texture_metrics(
                texture, batch["texture"], batch["texture_mask"], batch["known_mask"]).items()})
        if "novel_image" in batch:
            render = render_in_view(texture, batch["novel_uv"], batch["novel_mask"], batch["novel_image"])
            metrics = self.image_metrics(render, batch["novel_image"])
            rows.update({f"novel_view/{k}": v for k, v in metrics.items()})
        log_item_means(self, {f"test/{k}": v for k, v in rows.items()})
        self._test_names = sorted(rows)
        self._test_items += texture.shape[0]

    def on_test_epoch_end(self) -> None:
        # Item means over every process (torchmetrics sums values and counts across processes).
        items = int(self.all_gather(torch.tensor(self._test_items, device=self.device)).sum())
        summary = {name: float(item_mean(self, f"test/{name}").compute()) for name in self._test_names}
        self._test_items, self._test_names = 0, []
        folder = run_dir(self.trainer)  # on every process: Trainer.log_dir is a collective under DDP
        if not self.trainer.is_global_zero or not summary:
            return
        unavailable = self.image_metrics.unavailable if self.image_metrics else {}
        md, _ = write_metric_tables(
            folder, "test_metrics", {f"Test metrics (mean over {items} items)":
                                                    (["value"], {k: {"value": v} for k, v in summary.items()})},
            notes=[f"{k}: {why}" for k, why in unavailable.items()])
        log.info("test metrics written to %s (and .csv)", md)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """The completed textures (B, C, T, T) in [-1, 1] with the batch's person ids."""
        out = {"texture": self(batch["partial"], batch["known_mask"])}
        if "person_id" in batch:
            out["person_id"] = batch["person_id"]
        return out

    def configure_optimizers(self):
        return torch.optim.Adam(self.network.parameters(), lr=self.hparams.lr)

    def _log_pictures(self, key: str, batch: dict, texture: torch.Tensor, n: int = 4) -> None:
        if not self.loggers:
            return
        rows = []
        for b in range(min(n, texture.shape[0])):
            row = [to_uint8(batch["image"][b]), to_uint8(batch["partial"][b]), to_uint8(texture[b])]
            if "texture" in batch:
                row.append(to_uint8(batch["texture"][b]))
            if "novel_image" in batch:
                render = render_in_view(texture[b:b + 1], batch["novel_uv"][b:b + 1], batch["novel_mask"][b:b + 1],
                                        batch["novel_image"][b:b + 1])[0]
                row += [to_uint8(render), to_uint8(batch["novel_image"][b])]
            rows.append(row)
        log_picture(self.loggers, key, grid(rows), self.global_step, run_dir(self.trainer))

