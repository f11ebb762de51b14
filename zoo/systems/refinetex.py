"""RefineTex training and evaluation (Altindis et al.; implementation notes sections 1-3).

The network (`zoo.modules.refinetex.RefineTexNet`: backbone -> refiner -> fusion), the training-only
uncertainty head and the objective (`zoo.losses.refinetex.RefineTexLoss`, paper eq. 5-8) are
injected from YAML; this module owns the optimiser, the frozen ReID network, logging and the
test metrics. Prediction returns textures; `zoo.callbacks.TextureWriter` writes them.

Batch (SyntheticPeopleDataModule items, any dataset with these keys works): image (B, 3, H, W) in
[-1, 1], parts (B, H, W) int labels, uv (B, H, W, 2) grid, mask (B, 1, H, W) and the same with a
`novel_` prefix; optional render_parts / novel_render_parts (mesh part labels when the image
parts come from a 2D parser; default the image parts), texture, texture_mask, known_mask,
reference_texture, person_id, view_id; background (B, 3, H, W), the frame the ReID / style / cycle
renders and the texformer-variant metrics composite over (required by those).

Evaluation: SV metrics per view; NV metrics render the texture predicted from each view into EVERY
other view of the same person in the evaluated split (the paper's NV protocol; `NovelViewMetrics`
gathers the views by person_id / view_id and averages over all ordered pairs).
"""
from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
import torch
from torch import nn

from zoo.losses.refinetex import VIEW_KEYS, RefineTexLoss, batch_view, check_batch, resize
from zoo.metrics import NovelViewMetrics, build_image_metrics, render_scores, texture_metrics
from zoo.metrics.image import VARIANTS
from zoo.metrics.item_means import NamedMeans, log_item_means
from zoo.metrics.tables import write_view_and_texture_tables
from zoo.modules.refinetex import RefineTexNet
from zoo.modules.uncertainty import UncertaintyHead
from zoo.pretrained import load_pretrained
from zoo.render import render_over_image
from zoo.systems.common import FrozenNetworks, log_image_grid, logger_writes_this_step, require_prediction_writer
from zoo.utils.frozen import freeze
from zoo.utils.runs import run_dir

log = logging.getLogger(__name__)

RUN_OPTIONS = ("metric_variant", "use_lpips", "reid_r", "log_images_every_n_steps")


class RefineTexSystem(FrozenNetworks, pl.LightningModule):
    """RefineTex (or one of its ablations) as a LightningModule.

    Args:
        network: the RefineTexNet being trained (its refiner None is the baseline BL).
        uncertainty: UncertaintyHead (in_channels 3: the input image alone, paper section 3.3) for
            L_url; None needs `loss.url_weight: 0.0`.
        loss: the objective (None: RefineTexLoss() with the paper's weights).
        reid: frozen ReID network for L_reid, L_style and the CosSim metric: a pretrained name
            (e.g. "reid-synthetic", "reid-pcb-market1501") or folder, loaded in `setup`. None is
            allowed only when the loss's ReID and style weights are 0 (CosSim is then unavailable).
        lr, betas: Adam (1e-3, (0.9, 0.999), paper).
        metric_variant: "standard" or "texformer" image metrics at test time.
        use_lpips: try LPIPS(alex) at test time (reported unavailable without local weights).
        reid_r: second ReID network for the CosSim-R test metric (a pretrained name such as
            "reid-resnet50-market1501", or a folder; loaded at test start, a missing one is an error
            saying how to produce it); None: CosSim-R is not reported.
        log_images_every_n_steps: training image grid period (0: off); validation logs batch 0.

    metric_variant, use_lpips, reid_r and log_images_every_n_steps are run options, not saved with the
    checkpoint, so `test --ckpt_path` reads them from the command line or config.
    """

    def __init__(self, network: RefineTexNet, uncertainty: UncertaintyHead | None = None,
                 loss: RefineTexLoss | None = None, reid: str | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), metric_variant: str = "standard",
                 use_lpips: bool = True, reid_r: str | None = None, log_images_every_n_steps: int = 500) -> None:
        super().__init__()
        if not isinstance(network, RefineTexNet):
            raise TypeError(f"network must be a RefineTexNet, got {type(network).__name__}")
        if uncertainty is not None and (not isinstance(uncertainty, UncertaintyHead) or uncertainty.in_channels != 3):
            raise ValueError(f"uncertainty must be an UncertaintyHead with in_channels=3 (the input image alone, "
                             f"paper section 3.3), got {uncertainty!r}")
        loss = loss if loss is not None else RefineTexLoss()
        if not isinstance(loss, RefineTexLoss):
            raise TypeError(f"loss must be a RefineTexLoss, got {type(loss).__name__}")
        if loss.weights["url"] > 0 and uncertainty is None:
            raise ValueError(f"loss.url_weight={loss.weights['url']} needs an uncertainty head; "
                             "give `uncertainty` or set url_weight: 0.0")
        if metric_variant not in VARIANTS:
            raise ValueError(f"metric_variant must be one of {VARIANTS}, got {metric_variant!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        # Evaluation options stay out of the checkpoint's hyperparameters: LightningCLI's
        # `--ckpt_path` restores saved ones over the config, which would pin them to training values.
        self.save_hyperparameters(ignore=["network", "uncertainty", "loss", *RUN_OPTIONS])
        self.metric_variant, self.use_lpips, self.reid_r = metric_variant, bool(use_lpips), reid_r
        self.log_images_every_n_steps = int(log_images_every_n_steps)
        self.network, self.uncertainty, self.loss = network, uncertainty, loss
        self.test_means = NamedMeans()  # SV / texture test means over every process (not checkpointed)
        self.test_results: dict[str, float] = {}

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        if stage == "fit":
            datamodule = self.trainer.datamodule
            uv_maps = datamodule.uv_maps() if hasattr(datamodule, "uv_maps") else None
            self.configure_data(uv_maps)
            if self.loss.uses_reid:
                self.load_reid()

    def configure_data(self, uv_maps: dict | None) -> None:
        """Install what the body's UV atlas gives: the query colour code (saved with the network)
        and the loss's face/hand and atlas masks. No uv_maps keeps what is installed (the analytic
        query code at first); the face loss then needs a face mask installed before, or face_weight: 0.0."""
        size = self.network.uv_size
        self.loss.set_uv_masks(uv_maps, size)  # raises when the face loss is on and no face mask is known
        self.loss.to(self.device)
        if uv_maps is None:
            log.info("RefineTexSystem: the data gives no uv_maps(); keeping the analytic query code")
        elif "position_code" in uv_maps:
            code = resize(uv_maps["position_code"].float()[None], size)[0].clamp(-1, 1)
            self.network.backbone.set_query_code(code.to(self.network.backbone.query_code.device))

    def load_reid(self) -> nn.Module | None:
        """The frozen ReID network (loaded once); a missing one is an error when the losses need it."""
        if self.frozen("reid") is None and self.hparams.reid is not None:
            self.attach_frozen("reid", freeze(load_pretrained(self.hparams.reid)))
        if self.frozen("reid") is None and self.loss.uses_reid:
            raise ValueError("reid=None, but the loss's reid_weight / style_weight are > 0: name a ReID network "
                             "(e.g. reid: reid-synthetic) or set both weights to 0.0")
        return self.frozen("reid")

    # ---------------------------------------------------------------- training
    def forward(self, image: torch.Tensor, parts: torch.Tensor):
        """image (B, 3, H, W) in [-1, 1], parts (B, H, W) -> RefineTexOutput(texture, backbone_texture)."""
        return self.network(image, parts)

    def compute_losses(self, batch: dict, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its unweighted terms (prefixed sv/, nv/, deep/) for one batch at optimiser `step`."""
        reid = self.load_reid() if self.loss.uses_reid else None
        total, terms, self._last_renders = self.loss(self.network, batch, step, reid, self.uncertainty)
        return total, terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, terms = self.compute_losses(batch, self.global_step)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        if logger_writes_this_step(self):  # ~20 terms: logging them on every step cost ~5% of a step
            for name, value in terms.items():
                self.log(f"train/{name}", value, batch_size=bs)
        every = self.log_images_every_n_steps
        if every and self.global_step % every == 0:
            self._log_images("train/images", batch, self._last_renders)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas))

    def _log_images(self, key: str, batch: dict, renders: dict) -> None:
        columns = [batch["image"], renders["sv"]]
        if "nv" in renders:
            columns += [batch["novel_image"], renders["nv"]]
        columns.append(renders["texture"])
        if "texture" in batch:
            columns.append(batch["texture"])
        log_image_grid(self, key, columns, caption="input | SV render | NV image | NV render | texture | GT")

    # ---------------------------------------------------------------- evaluation
    def _evaluate(self, batch: dict, metrics, novel: NovelViewMetrics) -> tuple[dict[str, torch.Tensor], dict]:
        """Per-sample SV and texture metrics {name: (B,)} of one batch and the renders; the views go to
        `novel` (NV over every other view of the person, formed at the end of the epoch)."""
        check_batch(batch, novel=False)
        texture = self.network(batch["image"], batch["parts"]).texture
        view = batch_view(batch)
        renders = {"texture": texture, "sv": render_over_image(texture, view["uv"], view["mask"], view["image"])}
        scores = render_scores(metrics, texture, view["uv"], view["mask"], view["image"], view["background"])
        values = {f"sv/{k}": v for k, v in scores.items()}
        if "person_id" not in batch or "view_id" not in batch:
            raise ValueError("RefineTex evaluation renders each texture into every other view of its person: "
                             f"the batch needs person_id and view_id; it has {sorted(batch)}")
        novel.update(texture, view["image"], view["uv"], view["mask"], batch["person_id"], batch["view_id"],
                     view["background"])
        if all(f"novel_{k}" in batch for k in VIEW_KEYS):
            nv = batch_view(batch, "novel_")
            renders["nv"] = render_over_image(texture, nv["uv"], nv["mask"], nv["image"])
        if "texture" in batch:
            gt = batch["texture"]
            mask = batch.get("texture_mask", torch.ones_like(gt[:, :1]))
            scores = texture_metrics(resize(texture, gt.shape[-2:]), gt, mask, batch.get("known_mask"))
            values.update({f"texture/{k}": v for k, v in scores.items()})
        return values, renders

    def _novel_metrics(self, stage: str, image_metrics) -> NovelViewMetrics:
        """The stage's NV metric (kept out of the checkpoint), reset for a new epoch."""
        metric = self.attach_frozen(f"{stage}_nv", NovelViewMetrics(image_metrics).to(self.device))
        metric.reset()
        return metric

    def on_validation_epoch_start(self) -> None:
        metrics = self.frozen("val_metrics") or self.attach_frozen(
            "val_metrics", build_image_metrics("standard", reid=None, use_lpips=False))
        self._novel_metrics("val", metrics)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        values, renders = self._evaluate(batch, self.frozen("val_metrics"), self.frozen("val_nv"))
        log_item_means(self, {f"val/{name}": v for name, v in values.items()})  # exact on N processes
        if batch_idx == 0:
            self._log_images("val/images", batch, renders)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.frozen("val_nv").compute().items():
            if name != "pairs" and torch.isfinite(value):
                self.log(f"val/nv/{name}", value)

    def on_test_start(self) -> None:
        if self.frozen("reid") is None and self.hparams.reid is not None:
            self.attach_frozen("reid", freeze(load_pretrained(self.hparams.reid)))
        reid_r = None if self.reid_r is None else freeze(load_pretrained(self.reid_r))
        metrics = build_image_metrics(self.metric_variant, reid=self.frozen("reid"), use_lpips=self.use_lpips,
                                      reid_r=reid_r)
        self._novel_metrics("test", self.attach_frozen("test_metrics", metrics.to(self.device)))
        self.test_means.reset()
        self.test_results = {}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_means.update(self._evaluate(batch, self.frozen("test_metrics"), self.frozen("test_nv"))[0])

    def on_test_epoch_end(self) -> None:
        """SV and texture means over the test set, gathered over every process by torchmetrics
        (NaN-skipping: a texture with an empty split counts in no mean; a metric NaN everywhere is
        NaN); NV means over every ordered pair of views of a person (`NovelViewMetrics`)."""
        self.test_results = self.test_means.compute()
        self.test_results.update({f"nv/{k}": float(v) for k, v in self.frozen("test_nv").compute().items()})
        for name, value in self.test_results.items():
            if not math.isnan(value):
                self.log(f"test/{name}", value)

    def on_test_end(self) -> None:
        if self._trainer is None:
            return
        folder = run_dir(self.trainer)  # on every process: Trainer.log_dir is a collective under DDP
        if not self.trainer.is_global_zero:
            return
        md = write_view_and_texture_tables(folder, "refinetex_test_metrics", self.test_results,
                                           self.frozen("test_metrics").unavailable, self.metric_variant)
        log.info("RefineTex test metrics written to %s", md)

    # ---------------------------------------------------------------- prediction
    def on_predict_start(self) -> None:
        require_prediction_writer(self, "textures", "zoo.callbacks.TextureWriter")

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """{"texture": (B, 3, Huv, Wuv)} plus the batch's view_id / person_id when present."""
        out = {"texture": self.network(batch["image"], batch["parts"]).texture}
        out.update({k: batch[k] for k in ("view_id", "person_id") if k in batch})
        return out
