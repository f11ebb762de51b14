"""Novel-view (NV) image metrics as RefineTex evaluates them: every view against every other view.

The texture predicted from one image of a person is rendered with the UV render (camera and pose)
of EVERY other image of that person in the evaluated set and compared with that image; the score
is the mean over all ordered pairs (i, j), i != j, of the same person. One fixed partner per view
would measure a sixth (synthetic data) or less of the pairs and depend on which partner the data
module happens to pick.

`NovelViewMetrics` is a torchmetrics `Metric`: `update` stores each view once (texture predicted
from it and what is needed to render into it), `compute` forms the pairs. States are lists
concatenated across processes (`dist_reduce_fx="cat"`), so distributed evaluation sees every view
of a person. Memory: all views of the evaluated split are kept until `compute`.
"""
from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from zoo.metrics.image import ImageMetrics
from zoo.render import composite, sample_texture


def render_scores(metrics: ImageMetrics, texture: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor,
                  image: torch.Tensor, background: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-image scores (B,) of `texture` rendered through (uv, mask) against `image`.

    "standard": the render over the real image (only the person's pixels differ), compared as
    given. "texformer": the bare render, its mask and the protocol's `background` (required: the
    CosSim input is render over that background, never over the real image)."""
    person = sample_texture(texture, uv, mask)
    if metrics.variant == "standard":
        return metrics(composite(person, mask, image), image)
    if background is None:
        raise ValueError("the 'texformer' metric variant composites the render over the protocol's background "
                         "for CosSim: the batch needs a 'background' (B, 3, H, W)")
    return metrics(person, image, mask, background)


class NovelViewMetrics(Metric):
    """NV metrics over all ordered pairs of views of the same person.

    Args:
        image_metrics: the `ImageMetrics` (variant, ReID, LPIPS) applied to each pair.

    update(texture (B, 3, T, T), image (B, 3, H, W), uv (B, H, W, 2), mask (B, 1, H, W),
    person_id (B,), view_id (B,), background (B, 3, H, W) or None). A view_id seen before is
    ignored (data modules that list a view more than once count it once).
    compute() -> {metric: mean over pairs} plus "pairs" (the number of ordered pairs); NaN when
    no person has two views.
    """

    full_state_update = False

    def __init__(self, image_metrics: ImageMetrics, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(image_metrics, ImageMetrics):
            raise TypeError(f"image_metrics must be an ImageMetrics, got {type(image_metrics).__name__}")
        self.image_metrics = image_metrics
        for name in ("texture", "image", "uv", "mask", "background", "person_id", "view_id"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, texture: torch.Tensor, image: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor,
               person_id: torch.Tensor, view_id: torch.Tensor, background: torch.Tensor | None = None) -> None:
        b = texture.shape[0]
        for name, value in (("image", image), ("uv", uv), ("mask", mask), ("person_id", person_id), ("view_id", view_id)):
            if value.shape[0] != b:
                raise ValueError(f"{name} has batch {value.shape[0]}, texture has {b}")
        if person_id.dim() != 1 or view_id.dim() != 1:
            raise ValueError(f"person_id and view_id must be (B,), got {tuple(person_id.shape)} and {tuple(view_id.shape)}")
        if background is None:
            background = torch.full_like(image, math.nan)  # marks "no background" through the cat
        self.texture.append(texture.detach())
        self.image.append(image.detach())
        self.uv.append(uv.detach())
        self.mask.append(mask.detach())
        self.background.append(background.detach().to(image.dtype))
        self.person_id.append(person_id.detach().long())
        self.view_id.append(view_id.detach().long())

    def _cat(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        return torch.cat(value) if isinstance(value, list) else value

    def pair_scores(self) -> dict[str, torch.Tensor]:
        """{metric: (N_pairs,)} per ordered pair, in (person, source view, target view) order."""
        if isinstance(self.view_id, list) and not self.view_id:
            return {}
        views = self._cat("view_id")
        people, order, seen = self._cat("person_id"), [], set()
        for i, v in enumerate(views.tolist()):
            if v not in seen:
                seen.add(v)
                order.append(i)
        keep = torch.tensor(order, device=views.device)
        tex, img, uv, mask, bg = (self._cat(n)[keep] for n in ("texture", "image", "uv", "mask", "background"))
        people = people[keep]
        scores: dict[str, list[torch.Tensor]] = {}
        for person in torch.unique(people).tolist():
            idx = torch.nonzero(people == person).flatten()
            if len(idx) < 2:
                continue
            for i in idx.tolist():
                others = idx[idx != i]
                back = bg[others]
                out = render_scores(self.image_metrics, tex[i:i + 1].expand(len(others), -1, -1, -1), uv[others],
                                    mask[others], img[others], None if torch.isnan(back).all() else back)
                for k, v in out.items():
                    scores.setdefault(k, []).append(v.float())
        return {k: torch.cat(v) for k, v in scores.items()}

    def compute(self) -> dict[str, torch.Tensor]:
        scores = self.pair_scores()
        if not scores:
            return {"pairs": torch.tensor(0.0)}
        out = {k: v[~torch.isnan(v)].mean() if (~torch.isnan(v)).any() else v.new_tensor(math.nan)
               for k, v in scores.items()}
        out["pairs"] = torch.tensor(float(len(next(iter(scores.values())))))
        return out
