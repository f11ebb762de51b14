"""Stateless losses: each a function (unweighted) and an `nn.Module` wrapper holding the paper's weight.

RefineTex (eq. 5 and 8): L_base = 5000 ReID + 0.4 part style + 0.01 face structure, computed for the
same view and a novel view; L_total = L_base-sv + L_base-nv + 0.1 L_cyc + 1e-3 L_url.
The only state a loss may hold is a frozen feature network (the ReID network) passed in.
"""
from zoo.losses.reconstruction import (
    CycleConsistencyLoss,
    DiceLoss,
    UncertaintyReconstructionLoss,
    cycle_consistency_loss,
    dice_loss,
    uncertainty_reconstruction_loss,
)
from zoo.losses.reid import (
    PartStyleLoss,
    ReIDPerceptualLoss,
    part_style_loss,
    part_style_loss_from_features,
    reid_perceptual_loss,
)
from zoo.losses.structure import FaceStructureLoss, face_structure_loss, ssim_structure_map

__all__ = [
    "CycleConsistencyLoss",
    "DiceLoss",
    "FaceStructureLoss",
    "PartStyleLoss",
    "ReIDPerceptualLoss",
    "UncertaintyReconstructionLoss",
    "cycle_consistency_loss",
    "dice_loss",
    "face_structure_loss",
    "part_style_loss",
    "part_style_loss_from_features",
    "reid_perceptual_loss",
    "ssim_structure_map",
    "uncertainty_reconstruction_loss",
]
