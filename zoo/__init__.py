"""zoo: a PyTorch Lightning model zoo for 3D human appearance from images.

Sub-packages:
    zoo.modules      plain nn.Modules (one architecture family per file)
    zoo.pretrained   save_pretrained / from_pretrained and the name registry
    zoo.render       cameras, the exact rasteriser, UV render, texture sampling, scatter to UV
    zoo.body         parametric bodies behind one interface (anny default; SMPL / SMPL-X)
    zoo.losses       stateless losses
    zoo.metrics      thin wrappers over torchmetrics / kornia / lpips
    zoo.diffusion    schedules and samplers around a denoiser passed in
    zoo.datamodules  LightningDataModules (synthetic people, Market-1501, DeepFashion)
    zoo.systems      LightningModules composing the above from YAML
"""

__version__ = "0.1.0"
