"""LightningDataModule of DeepFashion In-shop Clothes with per-image SMPL fits (RefineTex's second dataset)."""
from __future__ import annotations

from collections.abc import Sequence

from zoo.datamodules.datasets.deepfashion import DeepFashionInShop, read_deepfashion_split
from zoo.datamodules.market1501 import SMPLFitDataModule


class DeepFashionDataModule(SMPLFitDataModule):
    """DeepFashion in-shop images with SMPL fits, same item keys as `Market1501DataModule`.

    train / val: the split file's train list divided by identity (val: fixed pairs); test: its
    test list (HPBTT's 20,185 / 6,639 images in the RefineTex setting). Layout and fit formats:
    `zoo.datamodules.datasets.deepfashion`.

    Args:
        root: the DeepFashion folder (train_test_list.pkl, img/, smpl/, parts/).
        smpl_model_path: the user's SMPL model; needed for fits stored as SMPL parameters, for
            render_parts="mesh" and for `uv_maps()`.
        smpl_uv_path: SMPL UV layout (smpl_uv.obj or .npz); None: `zoo_home()/body/smpl/smpl_uv.obj`.
        backgrounds_dir / textures_dir / texture_size / texture_filter: as in `Market1501DataModule`.
        batch_size: 16 (RefineTex). num_workers: DataLoader workers.
        val_fraction / split_seed: the identity-disjoint validation split of the train list.
        image_size: (H, W); 256x256 (the in-shop images' size and HPBTT's DeepFashion input; the
            papers do not give RefineTex's). Every image is resized to it and intrinsics scaled.
        items_per: "image" (one item per image, HPBTT's epoch) or "person".
        pairs / test_pairs: second image of the same person (`novel_` keys) in train+val / test;
            identities with a single image are left out while pairs are on.
        render_parts: "mesh" (from the model's face labels, needs smpl_model_path) or "png"
            (smpl_parts/<key>.png with SMPL labels 0..12).
        drop_last: drop the last incomplete training batch.
    """

    def __init__(self, root: str, smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 backgrounds_dir: str | None = None, textures_dir: str | None = None, batch_size: int = 16,
                 num_workers: int = 0, val_fraction: float = 0.05, split_seed: int = 0,
                 image_size: Sequence[int] = (256, 256), texture_size: int = 128, texture_filter: str = "nongrey",
                 items_per: str = "image", pairs: bool = True, test_pairs: bool = True,
                 render_parts: str = "mesh", drop_last: bool = True) -> None:
        super().__init__(root, smpl_model_path, smpl_uv_path, backgrounds_dir, textures_dir, batch_size, num_workers,
                         val_fraction, split_seed, image_size, texture_size, texture_filter, items_per, pairs,
                         test_pairs, render_parts, drop_last)
        if render_parts not in ("mesh", "png"):
            raise ValueError(f"render_parts must be 'mesh' or 'png', got {render_parts!r}")

    def setup(self, stage: str | None = None) -> None:
        index = read_deepfashion_split(self.root)
        common = dict(topology=self.topology, image_size=self.image_size, render_parts=self.render_parts,
                      index=index, **self._pools())
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            train_ids, val_ids = self.split_identities(list(index["train"]))
            pairs = dict(items_per=self.items_per, pairs=self.pairs)
            self.datasets["train"] = DeepFashionInShop(self.root, "train", identities=train_ids, random=True,
                                                       **pairs, **common)
            self.datasets["val"] = (DeepFashionInShop(self.root, "train", identities=val_ids, random=False,
                                                      **pairs, **common) if val_ids else None)
        if stage in (None, "test", "predict") and "test" not in self.datasets:
            self.datasets["test"] = DeepFashionInShop(self.root, "test", items_per="image", pairs=self.test_pairs,
                                                      random=False, **common)


__all__ = ["DeepFashionDataModule"]
