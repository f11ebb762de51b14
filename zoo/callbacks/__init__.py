"""Lightning callbacks (EMA of weights)."""
from zoo.callbacks.ema import EMACallback, ExponentialMovingAverage

__all__ = ["EMACallback", "ExponentialMovingAverage"]
