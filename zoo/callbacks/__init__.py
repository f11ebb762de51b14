"""Lightning callbacks: prediction export."""
from zoo.callbacks.texture_writer import TextureWriter

__all__ = ["TextureWriter"]
