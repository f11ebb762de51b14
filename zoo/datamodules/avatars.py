"""LightningDataModule of (source, target) synthetic avatar pairs for DINAR's stage 1."""
from __future__ import annotations

import logging

import numpy as np

from zoo.datamodules.datasets.synthetic_avatars import AVATAR_UV_FILES, SyntheticAvatarPairs
from zoo.datamodules.datasets.synthetic_people import avatar_uv_maps
from zoo.datamodules.synthetic import SyntheticPeopleDataModule
from zoo.utils.files import atomic_file

log = logging.getLogger(__name__)


class SyntheticAvatarDataModule(SyntheticPeopleDataModule):
    """Synthetic people as DINAR's training pairs: a source view to build the avatar from and a
    target view of the same person in another pose and camera to render and compare.

    Batch keys (B items; H x W views, T x T textures, V body vertices; images in [-1, 1]):
        source_image (B, 3, H, W) person on black; source_mask (B, 1, H, W);
        source_uv (B, H, W, 2) body UV render (background -2); source_uv_mask (B, 1, H, W);
        source_rgb_texture (B, 5, T, T) RGB + known-or-filled mask + gap-fill mask (the last 5
            of the 21 neural-texture channels; concatenate after the 16 generated ones);
        source_occlusion (B, 1, H, W) pixels kept out of the texture by the occlusion detector;
        source_K (B, 3, 3), source_vertices (B, V, 3) camera-space body;
        source_texel_cosines (B, 1, T, T) per-texel cosine of the view (merging weights' input);
        target_image (B, 3, H, W) person over white; target_mask (B, 1, H, W);
        target_uv (B, H, W, 2); target_uv_mask (B, 1, H, W); target_face_mask (B, 1, H, W);
        target_K (B, 3, 3), target_vertices (B, V, 3) (project a vertex to centre a crop:
            u = K @ v / v_z);
        texture (B, 3, T, T) ground-truth albedo, texture_mask (B, 1, T, T) the atlas;
        person_id, person_index, source_view, target_view (B,) int64.
    The encoder's noise channel is not in the batch: it is drawn by the model. For multi-view
    merging, `datasets[split].person_views(p)` stacks every view of person p (source_* keys).

    Args:
        preset: a `zoo.datamodules.synthetic.PRESETS` name; "dinar" (default) has shading and
            clothes off the body surface, which a per-texel RGB texture cannot explain.
        overrides, data_dir, batch_size, num_workers, body, progress: as for
            `SyntheticPeopleDataModule`.
        erode: odd erosion of the source person mask before scattering (DINAR: 5).
        occlusion_detector: keep self-occlusion outlines out of the RGB texture (DINAR 3.5).
    """

    def __init__(self, preset: str = "dinar", overrides: dict | None = None, data_dir: str | None = None,
                 batch_size: int = 4, num_workers: int = 0, erode: int = 5, occlusion_detector: bool = True,
                 body: dict | None = None, progress: bool = True) -> None:
        super().__init__(preset=preset, overrides=overrides, data_dir=data_dir, batch_size=batch_size,
                         num_workers=num_workers, pairs="random", body=body, progress=progress)
        if erode < 0 or (erode and erode % 2 == 0):
            raise ValueError(f"erode must be 0 or odd, got {erode}")
        self.erode, self.occlusion_detector = erode, occlusion_detector

    def prepare_data(self) -> None:
        super().prepare_data()
        if all((self.folder / f"{name}.npy").is_file() for name in AVATAR_UV_FILES):
            return
        from zoo.body import AnnyBody  # caches written before these maps existed

        log.info("writing the avatar UV maps into %s", self.folder)
        maps = avatar_uv_maps(AnnyBody(**self.body_options), self.settings.texture_size, self.settings.image_size[0])
        for name, value in maps.items():
            with atomic_file(self.folder / f"{name}.npy") as temporary:  # a kill leaves no truncated map
                np.save(temporary, value)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = SyntheticAvatarPairs(
                    self.folder, split, pairs="random" if split == "train" else "fixed", erode=self.erode,
                    occlusion_detector=self.occlusion_detector)
