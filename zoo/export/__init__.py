"""Avatar assets: textured and rigged GLB (glTF 2.0 written with numpy), motion files, videos.

Layer: beside `zoo.datamodules` (imports `zoo.body` and `zoo.render`); used by the avatar command.
"""
from zoo.export.avatar import (
           export_rigged_glb,
           export_textured_glb,
           motion_frames,
           render_textured,
           save_gif,
           save_mp4,
           turntable,
)
from zoo.export.motion import load_motion, save_motion, walk_cycle

__all__ = [
           "export_rigged_glb",
           "export_textured_glb",
           "load_motion",
           "motion_frames",
           "render_textured",
           "save_gif",
           "save_motion",
           "save_mp4",
           "turntable",
           "walk_cycle",
]
