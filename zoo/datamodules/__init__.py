"""LightningDataModules; datasets live in zoo.datamodules.datasets."""
from zoo.datamodules.synthetic import PRESETS, SyntheticPeopleDataModule

__all__ = ["PRESETS", "SyntheticPeopleDataModule"]
