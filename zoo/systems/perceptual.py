"""The perceptual distance of DINAR's avatar training (a helper of `zoo.systems.neural_avatar`, no
LightningModule): LPIPS(vgg) as the paper, or a stand-in the config names (`perceptual_fallback`),
and the check that its files exist before any data is prepared."""
from __future__ import annotations

import logging

from zoo.losses.avatar import PerceptualDistance
from zoo.metrics.lpips import MetricUnavailable, load_lpips_vgg, lpips_status
from zoo.pretrained import load_pretrained
from zoo.pretrained.registry import resolve

log = logging.getLogger(__name__)
PERCEPTUAL = ("lpips_vgg", "reid", "none")


def build_perceptual(kind: str, fallback: str | None, reid: str | None) -> tuple[PerceptualDistance | None, str]:
    """The perceptual distance and a line saying which one is used (see the module docstring)."""
    for choice in (kind, fallback):
        if choice is None:
            continue
        if choice not in PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {choice!r}")
        if choice == "none":
            return None, "perceptual loss disabled (perceptual='none')"
        if choice == "reid":
            if reid is None:
                raise ValueError("perceptual 'reid' needs `reid`: a pretrained ReID name or folder (e.g. reid-synthetic)")
            return PerceptualDistance(load_pretrained(reid), "reid"), f"perceptual loss: ReID features of {reid!r} (stand-in)"
        try:
            return PerceptualDistance(load_lpips_vgg(), "lpips"), "perceptual loss: LPIPS(vgg), as the paper"
        except MetricUnavailable as err:
            if fallback is None or choice == fallback:
                raise MetricUnavailable(f"{err}. Set perceptual_fallback (e.g. 'reid') to train with a stand-in") from err
            log.warning("NeuralAvatarSystem: %s; falling back to %r", err, fallback)
    raise ValueError(f"no usable perceptual loss among {kind!r} and {fallback!r}")


def check_perceptual_kinds(kind: str, fallback: str | None) -> None:
    """Raise, naming them, when `kind` is not in PERCEPTUAL or `fallback` is neither in it nor None."""
    if kind not in PERCEPTUAL or fallback not in (*PERCEPTUAL, None):
        raise ValueError(f"perceptual and perceptual_fallback must be in {PERCEPTUAL}, got {kind!r} and {fallback!r}")


def check_perceptual_assets(kind: str, fallback: str | None, reid: str | None) -> None:
    """Raise MetricUnavailable naming the missing files when neither `kind` nor `fallback` can be built."""
    reasons = []
    for choice in (kind, fallback):
        if choice is None:
            continue
        if choice == "none":
            return
        if choice == "lpips_vgg":
            status = lpips_status(net="vgg")
            if status == "ok":
                return
            reasons.append(status)
        elif reid is None:
            reasons.append("perceptual 'reid' needs `reid` (a pretrained ReID name or folder)")
        else:
            try:
                resolve(reid)
                return
            except FileNotFoundError as err:
                reasons.append(str(err))
    if fallback is None:
        reasons.append("set perceptual_fallback (e.g. 'reid') to train with a stand-in")
    raise MetricUnavailable("no usable perceptual network: " + "; ".join(reasons))
