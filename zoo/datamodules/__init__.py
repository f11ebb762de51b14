"""LightningDataModules; datasets live in zoo.datamodules.datasets.

- `SyntheticPeopleDataModule`: the embedded synthetic people (Anny), generated once and cached.
- `SyntheticAvatarDataModule`: (source, target) pairs of synthetic people for DINAR's stage 1.
- `NeuralTexturePairsDataModule`: DINAR's stage-2 pairs (single-view -> merged neural texture).
- `DinarFolderDataModule`: DINAR's input folders (rgb/, segm/, smplx/*.pkl) as avatar sources.
- `Market1501DataModule`: Market-1501 in Texformer's SMPLMarket layout (user-provided).
- `DeepFashionDataModule`: DeepFashion in-shop images with body fits (user-provided).
- `ImageFolderDataModule`: predict on a folder of images with their body fits.
"""
from zoo.datamodules.avatars import SyntheticAvatarDataModule
from zoo.datamodules.deepfashion import DeepFashionDataModule
from zoo.datamodules.dinar_folder import DinarFolderDataModule
from zoo.datamodules.image_folder import ImageFolderDataModule
from zoo.datamodules.market1501 import Market1501DataModule
from zoo.datamodules.neural_texture_pairs import NeuralTexturePairsDataModule
from zoo.datamodules.synthetic import PRESETS, SyntheticPeopleDataModule

__all__ = ["PRESETS", "SyntheticPeopleDataModule", "SyntheticAvatarDataModule", "DinarFolderDataModule",
           "NeuralTexturePairsDataModule", "Market1501DataModule", "DeepFashionDataModule", "ImageFolderDataModule"]
