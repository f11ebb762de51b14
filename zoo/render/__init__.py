"""Non-learned geometry: cameras, the exact rasteriser, UV render, texture sampling, scatter to UV,
DINAR's texture channels / merging (`neural_texture`) and occlusion detector (`occlusion`)."""
from zoo.render.camera import (
    dinar_intrinsics,
    focal_to_fit,
    intrinsics,
    look_at_body,
    rotation_yaw_pitch,
    texformer_intrinsics,
    to_camera,
)
from zoo.render.neural_texture import merge_textures, rgb_texture_channels, texel_view_cosines
from zoo.render.occlusion import limb_gradient_colours, occlusion_mask
from zoo.render.rasterize import Fragments, rasterize
from zoo.render.shading import (
    composite,
    interpolate,
    render_labels,
    render_normals,
    render_over_image,
    render_uv,
    sample_texture,
    vertex_normals,
)
from zoo.render.uv_space import (
    complete_texture_layout,
    dilate_texture,
    fill_texture_gaps,
    partial_texture_layout,
    rasterize_uv_atlas,
    scatter_to_uv,
    soft_paste_mask,
    texture_with_masks,
    uv_attribute_map,
)

__all__ = [
    "Fragments", "rasterize", "interpolate", "render_uv", "sample_texture", "render_normals", "render_over_image",
    "vertex_normals", "render_labels", "composite", "rasterize_uv_atlas", "uv_attribute_map",
    "scatter_to_uv", "fill_texture_gaps", "soft_paste_mask", "texture_with_masks", "complete_texture_layout",
    "partial_texture_layout", "dilate_texture", "intrinsics", "texformer_intrinsics",
    "dinar_intrinsics", "look_at_body",
    "rotation_yaw_pitch", "to_camera", "focal_to_fit",
    "rgb_texture_channels", "texel_view_cosines", "merge_textures", "limb_gradient_colours", "occlusion_mask",
]
