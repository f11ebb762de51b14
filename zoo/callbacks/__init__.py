"""Lightning callbacks: prediction export, and the run guards every `python -m zoo` run gets
(`NonFiniteGuard`, `InterruptCheckpoint`, `CheckpointGuard`, `RNGState`)."""
from zoo.callbacks.checkpoints import CheckpointError, CheckpointGuard
from zoo.callbacks.interrupt import InterruptCheckpoint
from zoo.callbacks.nonfinite import NonFiniteError, NonFiniteGuard
from zoo.callbacks.rng import RNGState
from zoo.callbacks.texture_writer import TextureWriter

__all__ = ["CheckpointError", "CheckpointGuard", "InterruptCheckpoint", "NonFiniteError", "NonFiniteGuard", "RNGState",
           "TextureWriter"]
