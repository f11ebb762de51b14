"""LightningDataModule of Market-1501 with Texformer's SMPL fits (SMPLMarket), and the shared base
of the real-photo DataModules (DeepFashion subclasses it).

Nothing here is shipped or downloaded: Market-1501, Texformer's SMPLMarket release, SMPL, the
background frames and the SURREAL textures are the user's own files, found through the paths of
the config (layouts in `zoo.datamodules.datasets.smpl_market` / `.deepfashion`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.datamodules.datasets.smpl_market import BACKGROUNDS_HOWTO, TEXTURES_HOWTO, ImagePool, SMPLMarket, pid_sort_key, read_market_index
from zoo.datamodules.datasets.smpl_uv import SMPLTopology, load_smpl_topology
from zoo.datamodules.resumable import EvalSampler, ResumableLoader

log = logging.getLogger(__name__)


class SMPLFitDataModule(pl.LightningDataModule):
    """Shared part of the real-photo DataModules: SMPL topology, background / texture pools,
    identity-disjoint train / val split, loaders. Subclasses build the datasets in `setup`.

    Args: see `Market1501DataModule` (the same names mean the same things in every subclass).
    """

    def __init__(self, root: str, smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 backgrounds_dir: str | None = None, textures_dir: str | None = None, batch_size: int = 16,
                 num_workers: int = 0, val_fraction: float = 0.05, split_seed: int = 0,
                 image_size: Sequence[int] = (128, 64), texture_size: int = 128, texture_filter: str = "nongrey",
                 items_per: str = "person", pairs: bool = True, test_pairs: bool = True,
                 render_parts: str = "release", drop_last: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
        if texture_size < 1:
            raise ValueError(f"texture_size must be >= 1, got {texture_size}")
        if items_per not in ("person", "image"):
            raise ValueError(f"items_per must be 'person' or 'image', got {items_per!r}")
        self.root, self.smpl_model_path, self.smpl_uv_path = root, smpl_model_path, smpl_uv_path
        self.backgrounds_dir, self.textures_dir = backgrounds_dir, textures_dir
        self.batch_size, self.num_workers, self.drop_last = batch_size, num_workers, drop_last
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.image_size = tuple(int(s) for s in image_size)
        self.texture_size, self.texture_filter = texture_size, texture_filter
        self.items_per, self.pairs, self.test_pairs, self.render_parts = items_per, pairs, test_pairs, render_parts
        self.datasets: dict[str, Dataset] = {}
        self._topology: SMPLTopology | None = None

    # -- shared resources --------------------------------------------------------------------
    @property
    def topology(self) -> SMPLTopology:
        """The SMPL faces / UVs (and body with a model file), loaded once for every split."""
        if self._topology is None:
            self._topology = load_smpl_topology(self.smpl_model_path, self.smpl_uv_path)
        return self._topology

    def _pools(self) -> dict[str, ImagePool | None]:
        backgrounds = textures = None
        if self.backgrounds_dir:
            backgrounds = ImagePool(self.backgrounds_dir, self.image_size, "backgrounds_dir", BACKGROUNDS_HOWTO)
        if self.textures_dir:
            textures = ImagePool(self.textures_dir, (self.texture_size, self.texture_size), "textures_dir",
                                 TEXTURES_HOWTO + " Texformer keeps the names containing 'nongrey': set "
                                 "`texture_filter` to '' to keep every file.", name_contains=self.texture_filter)
        return {"backgrounds": backgrounds, "textures": textures}

    def split_identities(self, pids: Sequence[Hashable]) -> tuple[list, list]:
        """(train, val) pids: a seeded permutation, `val_fraction` of them (at least one) to val."""
        pids = sorted(pids, key=pid_sort_key)
        if self.val_fraction == 0 or len(pids) < 2:
            return pids, []
        n_val = min(len(pids) - 1, max(1, round(len(pids) * self.val_fraction)))
        order = np.random.default_rng(self.split_seed).permutation(len(pids))
        val = set(order[:n_val].tolist())
        return [p for i, p in enumerate(pids) if i not in val], [p for i, p in enumerate(pids) if i in val]

    # -- Lightning ---------------------------------------------------------------------------
    @property
    def num_identities(self) -> int:
        """Identities of the training split (person_id of training items is in [0, this))."""
        if "train" not in self.datasets:
            self.setup("fit")
        return self.datasets["train"].num_identities

    def uv_maps(self, size: int = 128) -> dict[str, torch.Tensor]:
        """UV-space maps of the SMPL model: texture_mask (1, T, T), face_hands_mask (T, T) bool,
        position_code (3, T, T) in [-1, 1] (the Texformer query colour code). Needs the model file."""
        if self.topology.body is None:
            raise ValueError("uv_maps() needs `smpl_model_path`: the face / hand regions and the position code "
                             "come from the SMPL model, not from the UV file alone")
        from zoo.render.body_maps import body_uv_maps

        maps = body_uv_maps(self.topology.body, size)
        return {"texture_mask": maps["mask"], "face_hands_mask": maps["face_hands"],
                "position_code": maps["position_code"]}

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        if split not in self.datasets:
            self.setup("fit" if split in ("train", "val") else "test")
        dataset = self.datasets.get(split)
        if dataset is None:
            return []
        if not shuffle:  # evaluation: each process a disjoint share, no padded duplicates
            return DataLoader(dataset, batch_size=self.batch_size, sampler=EvalSampler(dataset),
                              num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        drop = self.drop_last and len(dataset) >= self.batch_size
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # the run's seed_everything seed
        # each item's random choices come from its draw: exact resume with any num_workers
        return ResumableLoader(dataset, self.batch_size, shuffle=True, seed=seed, with_draws=True,
                               num_workers=self.num_workers, drop_last=drop)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class Market1501DataModule(SMPLFitDataModule):
    """Market-1501 pedestrian crops with Texformer's SMPL fits (Texformer / RefineTex setting).

    train / val: `out_dict_train` split by identity (val: fixed pairs, first two images of a
    person); test: `eval_list.pkl` (Texformer's evaluation images) or `out_dict_test`. Items and
    keys: `zoo.datamodules.datasets.smpl_market.SMPLMarket`.

    Args:
        root: the SMPLMarket folder (train_test_img_paths_pid.pkl, eval_list.pkl, SMPL_RSC/,
            part_seg_EANet/ and the images at the listed relative paths).
        smpl_model_path: the user's SMPL model (.pkl / .npz); None: faces and UVs come from the
            UV file alone (then render_parts must be "release" and `uv_maps()` is unavailable).
        smpl_uv_path: SMPL UV layout (smpl_uv.obj, or .npz); None: `zoo_home()/body/smpl/smpl_uv.obj`.
        backgrounds_dir: folder of background .jpg frames (any depth), resized to image_size and
            h-flipped at random in training -> `background` (3, H, W); None: no key.
        textures_dir: folder of SMPL-UV texture images (SURREAL's in Texformer) for the face
            structure loss -> `reference_texture` (3, T, T); None: no key.
        batch_size: 16 in Texformer / RefineTex. num_workers: DataLoader workers.
        val_fraction: fraction of the training identities held out for validation (0: none).
        split_seed: seed of that identity split.
        image_size: (H, W), 128x64 (Market-1501 crops, Texformer's input).
        texture_size: side of `reference_texture` (128: Texformer's UV map).
        texture_filter: keep texture files whose name contains this (Texformer: "nongrey"; "" all).
        items_per: "person" (one random pair per identity per epoch, Texformer's epoch, so 200
            epochs mean what they mean in the papers) or "image".
        pairs: add a second image of the same person (`novel_` keys) in train / val.
        test_pairs: the same for the test split (novel-view evaluation).
        render_parts: "release" (SMPL_RSC/parts) or "mesh" (needs smpl_model_path).
        drop_last: drop the last incomplete training batch (as Texformer; not when the training
            set is smaller than a batch).
        test_split: "eval_list" or "out_dict_test".
    """

    def __init__(self, root: str, smpl_model_path: str | None = None, smpl_uv_path: str | None = None,
                 backgrounds_dir: str | None = None, textures_dir: str | None = None, batch_size: int = 16,
                 num_workers: int = 0, val_fraction: float = 0.05, split_seed: int = 0,
                 image_size: Sequence[int] = (128, 64), texture_size: int = 128, texture_filter: str = "nongrey",
                 items_per: str = "person", pairs: bool = True, test_pairs: bool = True,
                 render_parts: str = "release", drop_last: bool = True, test_split: str = "eval_list") -> None:
        super().__init__(root, smpl_model_path, smpl_uv_path, backgrounds_dir, textures_dir, batch_size, num_workers,
                         val_fraction, split_seed, image_size, texture_size, texture_filter, items_per, pairs,
                         test_pairs, render_parts, drop_last)
        if render_parts not in ("release", "mesh"):
            raise ValueError(f"render_parts must be 'release' or 'mesh', got {render_parts!r}")
        if test_split not in ("eval_list", "out_dict_test"):
            raise ValueError(f"test_split must be 'eval_list' or 'out_dict_test', got {test_split!r}")
        self.test_split = test_split

    def setup(self, stage: str | None = None) -> None:
        index = read_market_index(self.root)
        pools = self._pools()
        common = dict(topology=self.topology, image_size=self.image_size, render_parts=self.render_parts,
                      index=index, **pools)
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            train_ids, val_ids = self.split_identities(list(index["out_dict_train"]))
            self.datasets["train"] = SMPLMarket(self.root, "train", identities=train_ids, items_per=self.items_per,
                                                pairs=self.pairs, random=True, **common)
            self.datasets["val"] = (SMPLMarket(self.root, "train", identities=val_ids, items_per=self.items_per,
                                               pairs=self.pairs, random=False, **common) if val_ids else None)
        if stage in (None, "test", "predict") and "test" not in self.datasets:
            split = "eval" if self.test_split == "eval_list" else "test"
            self.datasets["test"] = SMPLMarket(self.root, split, items_per="image", pairs=self.test_pairs,
                                               random=False, **common)


__all__ = ["Market1501DataModule", "SMPLFitDataModule"]
