"""Stateless losses: each a function (unweighted) and an `nn.Module` wrapper holding the paper's weight.

RefineTex (eq. 5 and 8): L_base = 5000 ReID + 0.4 part style + 0.01 face structure, computed for the
same view and a novel view; L_total = L_base-sv + L_base-nv + 0.1 L_cyc + 1e-3 L_url.
DINAR (section 3.2): 2.2 L2 + 1.0 perceptual (crop) + 1.0 Dice + 0.01 adversarial + lazy R1 0.1 / 16
steps, face region again x 0.1 (`zoo.losses.avatar`, `zoo.losses.adversarial`).
The only state a loss may hold is a frozen feature network (the ReID network) passed in.
"""
from zoo.losses.adversarial import LazyR1, logistic_discriminator_loss, nonsaturating_generator_loss, r1_penalty
from zoo.losses.avatar import AvatarReconstructionLoss, PerceptualDistance, dinar_loss_mask, masked_l2
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
    "AvatarReconstructionLoss",
    "LazyR1",
    "PerceptualDistance",
    "dinar_loss_mask",
    "logistic_discriminator_loss",
    "masked_l2",
    "nonsaturating_generator_loss",
    "r1_penalty",
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
