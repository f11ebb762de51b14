"""LightningDataModule of a DINAR input folder (rgb/, segm/, smplx/): avatars from real photos."""
from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from zoo.datamodules.datasets.dinar_folder import DinarFolder


class DinarFolderDataModule(pl.LightningDataModule):
    """Frames of a DINAR folder for `predict` / `test` (one avatar source per frame).

    Batch keys (see `zoo.datamodules.datasets.dinar_folder.DinarFolder`): source_image,
    source_mask, source_uv, source_uv_mask, source_rgb_texture (the 5 image channels of the
    neural texture), source_occlusion, source_K, source_vertices, source_texel_cosines, crop_box,
    frame (list of ids).
    The same source_* keys as `SyntheticAvatarDataModule`, so one system reads both.

    Args:
        data_dir: folder with rgb/<id>.png, segm/<id>.png, smplx/<id>.pkl.
        body: options of `zoo.body.SMPLXBody` (model_path, uv_path, gender, num_betas, ...;
            DINAR: 6 hand PCA components, the default). The SMPL-X files are the user's own.
        image_size: side of the square crop (DINAR: 512).
        texture_size: side of the neural texture (DINAR: 256).
        scale_bbox: enlargement of the person boxes (DINAR: 1.2).
        focal: focal length in pixels of the original images (DINAR: 5000).
        erode: odd erosion of the person mask before scattering (DINAR: 5).
        occlusion_detector: keep self-occlusion outlines out of the RGB texture (DINAR 3.5).
        batch_size, num_workers: DataLoader settings.
    """

    def __init__(self, data_dir: str, body: dict | None = None, image_size: int = 512, texture_size: int = 256,
                 scale_bbox: float = 1.2, focal: float = 5000.0, erode: int = 5, occlusion_detector: bool = True,
                 batch_size: int = 1, num_workers: int = 0) -> None:
        super().__init__()
        if erode < 0 or (erode and erode % 2 == 0):
            raise ValueError(f"erode must be 0 or odd, got {erode}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data_dir, self.body_options = data_dir, dict(body or {})
        self.image_size, self.texture_size, self.scale_bbox, self.focal = image_size, texture_size, scale_bbox, focal
        self.erode, self.occlusion_detector = erode, occlusion_detector
        self.batch_size, self.num_workers = batch_size, num_workers
        self.dataset: DinarFolder | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        from zoo.body import SMPLXBody
        from zoo.render.occlusion import limb_colour_texture, smooth_iterations_for

        body = SMPLXBody(**self.body_options).eval()
        colours = None
        if self.occlusion_detector:
            colours = limb_colour_texture(body.template_vertices, body.faces, body.face_parts, body.corner_uvs,
                                          self.texture_size, smooth_iterations_for(self.image_size))
        self.dataset = DinarFolder(self.data_dir, body, self.image_size, self.texture_size, self.scale_bbox,
                                   self.focal, self.erode, colours)

    def _loader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()
