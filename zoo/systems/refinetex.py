"""RefineTex training, evaluation and export (Altindis et al.; implementation notes sections 1-3).

Network: Texformer backbone -> (deformable | conv | no) refiner -> mask fusion gives a UV texture
from one image + its part labels. Training renders the texture into the input view (same view,
SV) and into another view of the same person (novel view, NV), each composited over the
protocol's background (the batch's `background`, a random frame from the data module that both
views of a pair share, as Texformer does; never the real image, whose pixels outside the body
silhouette would leak the real person into the render), and minimises (paper eq. 5 and 8)

    L = L_base(SV) + nv * L_base(NV) + 0.1 L_cyc + 1e-3 L_url [+ texture_l1 * |T - T_gt|]
    L_base = 5000 L_reid + 0.4 L_style (per view) ; 0.01 L_face (once per texture, see below)

- L_reid / L_style read a frozen ReID network (`reid`, loaded in `setup()`); without one both are
  off (weights forced to 0, logged).
- L_face compares the face/hand UV region of the texture with a reference texture: the batch's
  `reference_texture` when present, else another identity's ground-truth texture (the batch's
  `texture` rolled by one sample; with a batch of one that is the sample's own texture). The
  paper uses random synthetic human textures. It depends on the texture only, so it enters once
  per texture instead of once per view (which would double lambda_3).
- L_cyc: render the texture into the novel view, run the whole network on that render with the
  novel view's parts; the L2 norm of the difference to the first texture over the atlas texels
  (eq. 7 as written), batch mean, both sides keep gradients. A per-texel mean of squares is an
  option, though at weight 0.1 it is ~1e-3 of the other terms.
- L_url: UncertaintyHead(input image) -> sigma (paper section 3.3: the confidence network sees the
  image alone, never the render, so sigma cannot track the current error), Laplacian NLL of the
  SV render summed over the person's pixels (eq. 6 sums; one term, on the input image), batch mean.
- Deep supervision (with a refiner): the backbone's own fused texture gets the base losses (and
  the texture L1) too, weighted by `deep_supervision_weight * s(step)`, s = 1 -> 0 over
  `deep_supervision_steps` optimiser steps: "linear", "cosine", "step" (1 then 0) or "constant".

Batch (SyntheticPeopleDataModule items, any dataset with these keys works): image (B, 3, H, W) in
[-1, 1], parts (B, H, W) int labels, uv (B, H, W, 2) grid, mask (B, 1, H, W) and the same with a
`novel_` prefix; background (B, 3, H, W) (needed by the ReID / style / cycle losses and the
texformer-variant metrics); optional render_parts / novel_render_parts (mesh part labels when the
image parts come from a 2D parser; default the image parts), texture, texture_mask, known_mask,
reference_texture, person_id, view_id.

Evaluation (validation / test): SV metrics per view; NV metrics render the texture predicted from
each view into EVERY other view of the same person in the evaluated split (the paper's NV
protocol), gathered over the epoch by person_id / view_id and averaged over all ordered pairs.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.losses import cycle_consistency_loss, face_structure_loss, uncertainty_reconstruction_loss
from zoo.losses.reid import part_style_loss_from_features
from zoo.metrics import NovelViewMetrics, build_image_metrics, render_scores, texture_metrics
from zoo.metrics.image import VARIANTS
from zoo.modules.fusion import MaskFusion
from zoo.modules.refiners import ConvRefiner, DeformableRefiner
from zoo.modules.reid import freeze
from zoo.modules.texformer import TexformerBackbone
from zoo.modules.uncertainty import UncertaintyHead
from zoo.pretrained import load_pretrained
from zoo.render import composite, sample_texture
from zoo.render import render_over_image as render_view
from zoo.systems.common import (
    FrozenNetworks,
    export_textures,
    log_image_grid,
    run_dir,
    write_metric_tables,
)

log = logging.getLogger(__name__)

SCHEDULES = ("linear", "cosine", "step", "constant")
VIEW_KEYS = ("image", "parts", "uv", "mask")
RUN_OPTIONS = ("metric_variant", "use_lpips", "reid_r", "predict_dir", "predict_render_size", "log_images_every_n_steps")


def deep_supervision_scale(step: int, schedule: str, steps: int) -> float:
    """Factor of the deep-supervision weight at optimiser step `step` (1 at step 0, 0 from `steps` on)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"deep_supervision_schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return 1.0
    if steps <= 0 or step >= steps:
        return 0.0
    t = step / steps
    return {"linear": 1.0 - t, "cosine": 0.5 * (1.0 + math.cos(math.pi * t)), "step": 1.0}[schedule]


def _resize(x: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kw = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    return F.interpolate(x, size=tuple(size), mode=mode, **kw)


class RefineTexSystem(FrozenNetworks, pl.LightningModule):
    """RefineTex (or its ablations) as one LightningModule; see the module docstring for the losses.

    Args:
        backbone: the Texformer "deep network" (its uv_size is the predicted texture size).
        refiner: DeformableRefiner (RefineTex), ConvRefiner ("Conv Refine" ablation) or None
            (the baseline BL: the backbone's fused texture is the output).
        fusion: MaskFusion of flow-sampled and predicted colours (default MaskFusion()).
        uncertainty: UncertaintyHead (in_channels 3: the input image alone) for L_url; None disables L_url.
        reid: frozen ReID network for L_reid, L_style and the CosSim metric: a pretrained name
            (e.g. "reid-synthetic", "reid-pcb-market1501") or folder; None disables them.
        reid_weight, style_weight, face_weight: lambda_1..3 of L_base (5000, 0.4, 0.01; eq. 5).
        novel_view_weight: weight of L_base(NV) (1, eq. 8; 0 = the single-view training of Table 1).
        cycle_weight, url_weight: lambda_4 = 0.1, lambda_5 = 1e-3 (eq. 8).
        texture_l1_weight: L1 to the ground-truth texture on atlas texels (synthetic data only; 0
            in the paper configs).
        deep_supervision_weight: initial weight of the backbone's own texture losses (1, our choice).
        deep_supervision_schedule: "linear" (default), "cosine", "step" or "constant".
        deep_supervision_steps: optimiser steps until it reaches 0 (2250, our choice: the first
            quarter of Market-1501 training, 200 epochs of ~45 steps with one pair per identity).
        num_parts, style_min_coverage: part-style loss settings (7 parts, 0.4%).
        face_average: "image" (Texformer) or "mask" averaging of the face loss.
        url_min_sigma: lower clamp of sigma in L_url.
        cycle_reduction: "norm" (eq. 7 read literally: the L2 norm of each texture difference over
            the atlas texels, averaged over the batch) or "mean" (per-texel mean of squares).
        url_reduction: "sum" (eq. 6: summed over the person's pixels and channels, then averaged
            over the batch; lambda_5 = 1e-3 is scaled for it) or "mean" over those elements.
        lr, betas: Adam (1e-3, (0.9, 0.999), paper).
        metric_variant: "standard" or "texformer" image metrics at test time.
        use_lpips: try LPIPS(alex) at test time (reported unavailable without local weights).
        reid_r: second ReID network for the CosSim-R test metric (a pretrained name such as
            "reid-resnet50-market1501", or a folder); None: CosSim-R not reported. Loaded at test
            start; a missing file is an error saying how to produce it.
        predict_dir: output folder of `predict` (default <run dir>/predictions).
        predict_render_size: (H, W) of the front/side/back renders written by `predict`.
        log_images_every_n_steps: training image grid period (0: off); validation logs batch 0.

    metric_variant, use_lpips, predict_dir, predict_render_size and log_images_every_n_steps are
    run options, not saved with the checkpoint, so `test` / `predict --ckpt_path` read them from the
    command line or config.
    """

    def __init__(self, backbone: TexformerBackbone, refiner: DeformableRefiner | ConvRefiner | None = None,
                 fusion: MaskFusion | None = None, uncertainty: UncertaintyHead | None = None,
                 reid: str | None = None, reid_weight: float = 5000.0, style_weight: float = 0.4,
                 face_weight: float = 0.01, novel_view_weight: float = 1.0, cycle_weight: float = 0.1,
                 url_weight: float = 1e-3, texture_l1_weight: float = 0.0, deep_supervision_weight: float = 1.0,
                 deep_supervision_schedule: str = "linear", deep_supervision_steps: int = 2250,
                 num_parts: int = 7, style_min_coverage: float = 0.004, face_average: str = "image",
                 url_min_sigma: float = 1e-3, url_reduction: str = "sum",
                 cycle_reduction: str = "norm", lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 metric_variant: str = "standard", use_lpips: bool = True, reid_r: str | None = None,
                 predict_dir: str | None = None,
                 predict_render_size: tuple[int, int] = (256, 128), log_images_every_n_steps: int = 500) -> None:
        super().__init__()
        if not isinstance(backbone, TexformerBackbone):
            raise TypeError(f"backbone must be a TexformerBackbone, got {type(backbone).__name__}")
        if refiner is not None and (not isinstance(refiner, (DeformableRefiner, ConvRefiner)) or refiner.in_channels != 4):
            raise ValueError(f"refiner must be a DeformableRefiner / ConvRefiner reading the 4-channel key image, got {refiner!r}")
        if uncertainty is not None and (not isinstance(uncertainty, UncertaintyHead) or uncertainty.in_channels != 3):
            raise ValueError(f"uncertainty must be an UncertaintyHead with in_channels=3 (the input image alone, "
                             f"paper section 3.3), got {uncertainty!r}")
        weights = dict(reid_weight=reid_weight, style_weight=style_weight, face_weight=face_weight,
                       novel_view_weight=novel_view_weight, cycle_weight=cycle_weight, url_weight=url_weight,
                       texture_l1_weight=texture_l1_weight, deep_supervision_weight=deep_supervision_weight)
        bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and v >= 0)}
        if bad:
            raise ValueError(f"loss weights must be floats >= 0, got {bad}")
        if deep_supervision_schedule not in SCHEDULES:
            raise ValueError(f"deep_supervision_schedule must be one of {SCHEDULES}, got {deep_supervision_schedule!r}")
        if metric_variant not in VARIANTS:
            raise ValueError(f"metric_variant must be one of {VARIANTS}, got {metric_variant!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if url_reduction not in ("sum", "mean"):
            raise ValueError(f"url_reduction must be 'sum' or 'mean', got {url_reduction!r}")
        if cycle_reduction not in ("norm", "mean"):
            raise ValueError(f"cycle_reduction must be 'norm' or 'mean', got {cycle_reduction!r}")
        # Evaluation / export options stay out of the checkpoint's hyperparameters: LightningCLI's
        # `--ckpt_path` restores saved ones over the config, which would pin them to training values.
        self.save_hyperparameters(ignore=["backbone", "refiner", "fusion", "uncertainty", *RUN_OPTIONS])
        self.metric_variant, self.use_lpips, self.predict_dir = metric_variant, bool(use_lpips), predict_dir
        self.reid_r = reid_r
        self.predict_render_size = tuple(int(s) for s in predict_render_size)
        self.log_images_every_n_steps = int(log_images_every_n_steps)
        self.backbone, self.refiner, self.uncertainty = backbone, refiner, uncertainty
        self.fusion = fusion if fusion is not None else MaskFusion()
        self.weights = {k.removesuffix("_weight"): float(v) for k, v in weights.items()}
        if uncertainty is None:
            self.weights["url"] = 0.0
        # From the data's uv_maps() in setup(): face/hand mask (Huv, Wuv), atlas mask (1, 1, Huv, Wuv).
        self.register_buffer("face_mask", None, persistent=False)
        self.register_buffer("atlas_mask", None, persistent=False)
        self._warned: set[str] = set()
        self._test_values: dict[str, list[torch.Tensor]] = {}
        self.test_results: dict[str, float] = {}

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        uv_maps = None
        if hasattr(datamodule, "uv_maps"):
            try:
                uv_maps = datamodule.uv_maps()
            except ValueError as err:  # e.g. SMPL data without the model file
                log.warning("RefineTexSystem: the data's uv_maps() failed (%s)", err)
        self.configure_data(uv_maps)
        self.load_reid()

    def configure_data(self, uv_maps: dict | None) -> None:
        """Install what the body's UV atlas gives: the query colour code, face/hand and atlas masks."""
        size = self.backbone.uv_size
        if uv_maps is None:
            log.info("RefineTexSystem: the data gives no uv_maps(); keeping the analytic query code, face loss off")
            return
        if "position_code" in uv_maps:
            code = _resize(uv_maps["position_code"].float()[None], size)[0].clamp(-1, 1)
            self.backbone.set_query_code(code.to(self.backbone.query_code.device))
        if "face_hands_mask" in uv_maps:
            self.face_mask = _resize(uv_maps["face_hands_mask"].float()[None, None], size, "nearest")[0, 0].to(self.device)
        if "texture_mask" in uv_maps:
            self.atlas_mask = _resize(uv_maps["texture_mask"].float().reshape(1, 1, *uv_maps["texture_mask"].shape[-2:]),
                                      size, "nearest").to(self.device)

    def load_reid(self) -> None:
        """Load the frozen ReID network once; without one the ReID and style losses are switched off."""
        if self.frozen("reid") is not None:
            return
        if self.hparams.reid is None:
            if self.weights["reid"] > 0 or self.weights["style"] > 0:
                log.warning("RefineTexSystem: reid=None, so the ReID and part-style losses are disabled "
                            "(their weights are set to 0) and CosSim is unavailable")
            self.weights["reid"] = self.weights["style"] = 0.0
            return
        self.attach_frozen("reid", freeze(load_pretrained(self.hparams.reid)).to(self.device))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("RefineTexSystem: %s", message)

    # ---------------------------------------------------------------- network
    def forward(self, image: torch.Tensor, parts: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) in [-1, 1], parts (B, H, W) -> {"texture", "backbone_texture"} (B, 3, Huv, Wuv)."""
        first = self.backbone(image, parts)
        backbone_texture = self.fusion(image, first.flow, first.rgb, first.mask).texture
        if self.refiner is None:
            return {"texture": backbone_texture, "backbone_texture": backbone_texture}
        refined = self.refiner(self.backbone.key_input(image, parts), first)
        texture = self.fusion(image, refined.flow, refined.rgb, refined.mask).texture
        return {"texture": texture, "backbone_texture": backbone_texture}

    # ---------------------------------------------------------------- losses
    @staticmethod
    def _check_batch(batch: dict, novel: bool) -> None:
        keys = list(VIEW_KEYS) + ([f"novel_{k}" for k in VIEW_KEYS] if novel else [])
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(f"RefineTex batch lacks {missing}; it has {sorted(batch)}")

    def _view(self, batch: dict, prefix: str = "") -> dict:
        parts = batch[f"{prefix}parts"]
        return {"image": batch[f"{prefix}image"], "parts": parts, "uv": batch[f"{prefix}uv"],
                "mask": batch[f"{prefix}mask"], "render_parts": batch.get(f"{prefix}render_parts", parts),
                "background": batch.get(f"{prefix}background", batch.get("background"))}

    @staticmethod
    def over_background(texture: torch.Tensor, view: dict, who: str) -> torch.Tensor:
        """The texture rendered into `view` over the protocol's background (never the real image)."""
        if view["background"] is None:
            raise ValueError(f"RefineTex {who} composites the render over the batch's 'background' (Texformer's "
                             "protocol: a random frame from the data module), but the batch has none: give the "
                             "data module backgrounds (Market-1501 / DeepFashion: backgrounds_dir)")
        return composite(sample_texture(texture, view["uv"], view["mask"]), view["mask"], view["background"])

    def _view_terms(self, render: torch.Tensor, view: dict, target_features) -> dict[str, torch.Tensor]:
        """Unweighted ReID perceptual and part-style losses of one render (features computed once)."""
        reid, terms = self.frozen("reid"), {}
        if reid is None or (self.weights["reid"] == 0 and self.weights["style"] == 0):
            return terms
        fr = reid.features(render)
        if self.weights["reid"] > 0:
            terms["reid"] = sum(F.mse_loss(F.normalize(a.flatten(1), dim=1), F.normalize(b.flatten(1), dim=1))
                                for a, b in zip(fr, target_features))
        if self.weights["style"] > 0:
            terms["style"] = part_style_loss_from_features(fr[0], view["render_parts"], target_features[0], view["parts"],
                                                           self.hparams.num_parts, self.hparams.style_min_coverage)
        return terms

    def _face_reference(self, batch: dict, like: torch.Tensor) -> torch.Tensor | None:
        reference = batch.get("reference_texture")
        if reference is None and "texture" in batch:
            reference = batch["texture"].roll(1, dims=0)
        return None if reference is None else _resize(reference.to(like), like.shape[-2:])

    def _texture_terms(self, texture: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """View-independent terms of one texture: face structure and L1 to the ground truth."""
        terms = {}
        if self.weights["face"] > 0:
            reference = self._face_reference(batch, texture)
            if self.face_mask is None or reference is None:
                self._warn_once("face", "face-structure loss skipped: needs uv_maps()['face_hands_mask'] from the data "
                                "and a reference texture (batch 'reference_texture' or 'texture')")
            else:
                terms["face"] = face_structure_loss(texture, reference.detach(), self.face_mask,
                                                    average=self.hparams.face_average)
        if self.weights["texture_l1"] > 0:
            if "texture" not in batch:
                self._warn_once("l1", "texture L1 skipped: the batch has no ground-truth 'texture'")
            else:
                target = batch["texture"]
                pred = _resize(texture, target.shape[-2:])
                weight = batch.get("texture_mask", torch.ones_like(target[:, :1])).expand_as(target)
                terms["texture_l1"] = ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)
        return terms

    def compute_losses(self, batch: dict, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its unweighted terms (prefixed sv/, nv/, deep/) for one batch at optimiser `step`."""
        w = self.weights
        use_nv = w["novel_view"] > 0 or w["cycle"] > 0
        self._check_batch(batch, novel=use_nv)
        views = {"sv": self._view(batch)}
        if use_nv:
            views["nv"] = self._view(batch, "novel_")
        out = self(views["sv"]["image"], views["sv"]["parts"])
        if self.frozen("reid") is None and self.hparams.reid is not None:
            self.load_reid()
        reid = self.frozen("reid")
        targets = {}
        if reid is not None and (w["reid"] > 0 or w["style"] > 0):
            with torch.no_grad():
                targets = {name: reid.features(v["image"]) for name, v in views.items()}
        view_weight = {"sv": 1.0, "nv": w["novel_view"]}
        textures = [("", out["texture"], 1.0)]
        scale = deep_supervision_scale(step, self.hparams.deep_supervision_schedule, self.hparams.deep_supervision_steps)
        if self.refiner is not None and w["deep_supervision"] * scale > 0:
            textures.append(("deep/", out["backbone_texture"], w["deep_supervision"] * scale))
        total, logs, renders = out["texture"].new_zeros(()), {"deep_supervision_scale": out["texture"].new_tensor(scale)}, {}
        needs_background = bool(targets) or w["cycle"] > 0
        for prefix, texture, tw in textures:
            for name, view in views.items():
                if needs_background:
                    render = self.over_background(texture, view, "ReID / style / cycle losses")
                else:  # only L_url reads it, on the person's pixels
                    render = render_view(texture, view["uv"], view["mask"], view["image"])
                renders[prefix + name] = render
                if view_weight[name] == 0:
                    continue
                for term, value in self._view_terms(render, view, targets.get(name)).items():
                    logs[f"{prefix}{name}/{term}"] = value
                    total = total + tw * view_weight[name] * w[term] * value
            for term, value in self._texture_terms(texture, batch).items():
                logs[prefix + term] = value
                total = total + tw * w[term] * value
        if w["url"] > 0:
            sv = views["sv"]
            sigma = self.uncertainty(sv["image"])
            logs["url"] = uncertainty_reconstruction_loss(sv["image"], renders["sv"], sigma, sv["mask"],
                                                          self.hparams.url_min_sigma, self.hparams.url_reduction)
            if self.hparams.url_reduction == "sum":
                logs["url"] = logs["url"] / sv["image"].shape[0]
            logs["sigma_mean"] = sigma.detach().mean()
            total = total + w["url"] * logs["url"]
        if w["cycle"] > 0:
            nv = views["nv"]
            again = self(renders["nv"], nv["parts"])["texture"]
            if self.hparams.cycle_reduction == "mean":
                logs["cycle"] = cycle_consistency_loss(out["texture"], again, self.atlas_mask)
            else:
                per_sample = [cycle_consistency_loss(out["texture"][i:i + 1], again[i:i + 1], self.atlas_mask, "sum")
                              for i in range(again.shape[0])]
                logs["cycle"] = torch.stack(per_sample).clamp(min=1e-12).sqrt().mean()
            total = total + w["cycle"] * logs["cycle"]
        self._last_renders = {k: v.detach() for k, v in renders.items()} | {"texture": out["texture"].detach()}
        return total, logs

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, terms = self.compute_losses(batch, self.global_step)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
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
    def _evaluate(self, batch: dict, metrics, novel: NovelViewMetrics | None) -> tuple[dict[str, torch.Tensor], dict]:
        """Per-sample SV and texture metrics {name: (B,)} of one batch and the renders; the views go to
        `novel` (NV over every other view of the person, formed at the end of the epoch)."""
        self._check_batch(batch, novel=False)
        texture = self(batch["image"], batch["parts"])["texture"]
        view = self._view(batch)
        renders = {"texture": texture, "sv": render_view(texture, view["uv"], view["mask"], view["image"])}
        scores = render_scores(metrics, texture, view["uv"], view["mask"], view["image"], view["background"])
        values = {f"sv/{k}": v for k, v in scores.items()}
        if novel is not None:
            if "person_id" in batch and "view_id" in batch:
                novel.update(texture, view["image"], view["uv"], view["mask"], batch["person_id"], batch["view_id"],
                             view["background"])
            else:
                self._warn_once("nv", "no NV metrics: the evaluation batches lack person_id / view_id")
        if all(f"novel_{k}" in batch for k in VIEW_KEYS):
            nv = self._view(batch, "novel_")
            renders["nv"] = render_view(texture, nv["uv"], nv["mask"], nv["image"])
        if "texture" in batch:
            gt = batch["texture"]
            mask = batch.get("texture_mask", torch.ones_like(gt[:, :1]))
            scores = texture_metrics(_resize(texture, gt.shape[-2:]), gt, mask, batch.get("known_mask"))
            values.update({f"texture/{k}": v for k, v in scores.items()})
        return values, renders

    def _novel_metrics(self, stage: str, image_metrics) -> NovelViewMetrics:
        metric = self.frozen(f"{stage}_nv")
        if metric is None:
            metric = self.attach_frozen(f"{stage}_nv", NovelViewMetrics(image_metrics).to(self.device))
        return metric

    def on_validation_epoch_start(self) -> None:
        metrics = self.frozen("val_metrics") or self.attach_frozen(
            "val_metrics", build_image_metrics("standard", reid=None, use_lpips=False))
        self._novel_metrics("val", metrics).reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        values, renders = self._evaluate(batch, self.frozen("val_metrics"), self.frozen("val_nv"))
        for name, v in values.items():
            finite = v[torch.isfinite(v)]
            if finite.numel():
                self.log(f"val/{name}", finite.mean(), batch_size=finite.numel())
        if batch_idx == 0:
            self._log_images("val/images", batch, renders)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.frozen("val_nv").compute().items():
            if name != "pairs" and torch.isfinite(value):
                self.log(f"val/nv/{name}", value)

    def on_test_start(self) -> None:
        self.load_reid()
        reid_r = None if self.reid_r is None else freeze(load_pretrained(self.reid_r))
        metrics = build_image_metrics(self.metric_variant, reid=self.frozen("reid"), use_lpips=self.use_lpips,
                                      reid_r=reid_r)
        self.attach_frozen("test_metrics", metrics.to(self.device))
        self._novel_metrics("test", metrics).reset()
        self._test_values = {}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        values, _ = self._evaluate(batch, self.frozen("test_metrics"), self.frozen("test_nv"))
        for name, v in values.items():
            self._test_values.setdefault(name, []).append(v.detach().float().cpu())

    def on_test_epoch_end(self) -> None:
        """Means over the test set (NaN-skipping: a texture with an empty split counts in no mean);
        NV means over every ordered pair of views of a person. The per-sample SV values are gathered
        in this process only: test on one device."""
        results = {}
        for name, chunks in self._test_values.items():
            v = torch.cat(chunks)
            v = v[~torch.isnan(v)]
            results[name] = float(v.mean()) if v.numel() else math.nan
        for name, value in self.frozen("test_nv").compute().items():
            results[f"nv/{name}"] = float(value)
        for name, value in results.items():
            if math.isfinite(value):
                self.log(f"test/{name}", value)
        self.test_results = results

    def on_test_end(self) -> None:
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        r, unavailable = self.test_results, self.frozen("test_metrics").unavailable
        image_table = {}
        for metric in ("ssim", "psnr", "lpips", "cossim", "cossim_r"):
            if metric in unavailable:
                image_table[metric] = {"SV": unavailable[metric], "NV": "-"}
            elif f"sv/{metric}" in r:
                image_table[metric] = {col: r[f"{key}/{metric}"] for col, key in (("SV", "sv"), ("NV", "nv"))
                                       if f"{key}/{metric}" in r}
        tables = {f"Image metrics ({self.metric_variant})": (["SV", "NV"], image_table)}
        if any(k.startswith("texture/") for k in r):
            tex = {m: {s: r[f"texture/{m}/{s}"] for s in ("all", "visible", "invisible") if f"texture/{m}/{s}" in r}
                   for m in ("l1", "psnr", "ssim")}
            tables["Texture metrics vs ground truth"] = (["all", "visible", "invisible"], tex)
        notes = [f"SV: render in the input view; NV: the texture of each view rendered into every other view of that "
                 f"person ({int(r.get('nv/pairs', 0))} ordered pairs).",
                 "visible = texels seen in the input view (known_mask); invisible = the other atlas texels."]
        md, _ = write_metric_tables(run_dir(self.trainer), "refinetex_test_metrics", tables, notes)
        log.info("RefineTex test metrics written to %s", md)

    # ---------------------------------------------------------------- prediction
    def predict_step(self, batch: dict, batch_idx: int) -> list[str]:
        """Write UV texture PNGs per view and, per person, a textured OBJ and front/side/back renders."""
        folder = Path(self.predict_dir).expanduser() if self.predict_dir else run_dir(self.trainer) / "predictions"
        texture = self(batch["image"], batch["parts"])["texture"].clamp(-1, 1).float().cpu()
        views = batch["view_id"].tolist() if "view_id" in batch else [batch_idx * len(texture) + i for i in range(len(texture))]
        people = batch["person_id"].tolist() if "person_id" in batch else views
        seen = self.__dict__.setdefault("_exported_people", set())
        return export_textures(folder, texture, views, people, self._predict_body(), seen, self.predict_render_size)

    def _predict_body(self):
        """The Anny body of the synthetic people (built once); None for other data (textures only)."""
        if "_body" not in self.__dict__:
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            body = None
            if datamodule is None or hasattr(datamodule, "body_options"):
                from zoo.body import AnnyBody

                body = AnnyBody(**getattr(datamodule, "body_options", {}))
            else:
                log.warning("RefineTexSystem.predict: meshes and renders need the synthetic people's Anny body; "
                            "%s gets texture PNGs only", type(datamodule).__name__)
            self.__dict__["_body"] = body
        return self.__dict__["_body"]
