"""Inference-time procedures built from trained networks (layer 3: above modules, losses, render,
diffusion and body; below systems): DINAR's RGB fine-tuning (`dinar_finetune`)."""
from zoo.inference.dinar_finetune import FinetuneResult, finetune_gradient_mask, finetune_rgb, finetune_schedule

__all__ = ["FinetuneResult", "finetune_gradient_mask", "finetune_rgb", "finetune_schedule"]
