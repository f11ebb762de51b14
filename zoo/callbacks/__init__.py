"""Lightning callbacks: EMA of weights, and the run guards every `python -m zoo` run gets
(`NonFiniteGuard`, `InterruptCheckpoint`, `CheckpointGuard`, `RNGState`)."""
from zoo.callbacks.checkpoints import CheckpointError, CheckpointGuard
from zoo.callbacks.ema import EMACallback, ExponentialMovingAverage
from zoo.callbacks.interrupt import InterruptCheckpoint
from zoo.callbacks.nonfinite import NonFiniteError, NonFiniteGuard
from zoo.callbacks.rng import RNGState

__all__ = ["CheckpointError", "CheckpointGuard", "EMACallback", "ExponentialMovingAverage", "InterruptCheckpoint",
           "NonFiniteError", "NonFiniteGuard", "RNGState"]
