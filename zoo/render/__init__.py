"""Non-learned geometry: cameras, the exact rasteriser, UV render, texture sampling, scatter to UV."""
from zoo.render.rasterize import Fragments, rasterize

__all__ = ["Fragments", "rasterize"]
