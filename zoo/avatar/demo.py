"""`python -m zoo demo --ckpt X.ckpt`: a Gradio page around the avatar pipeline (extra `[demo]`).

Upload a photo (and optionally a motion: an Anny motion file or an AMASS-style SMPL-X / SMPL+H
`.npz`, retargeted onto Anny); the page shows the mask with the keypoints, the fit overlay, the UV
texture, novel views, the turntable and the motion, a 3D viewer of the textured GLB, and offers
the files (textured and rigged GLB, motion MP4, texture, fit) for download. Photos the pipeline cannot use get their
message on the page. Serves on 127.0.0.1:7860 by default (`--host 0.0.0.0` to share on a network).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


def build_app(ckpt: str | None, config: str | None = None, fit_steps=None, render_size: int = 256,
              work_dir: str | None = None):
    """The Gradio Blocks app (models loaded once, here)."""
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError("the demo needs Gradio: pip install -e '.[demo]'") from error
    from zoo.avatar.methods import TextureFromPhoto
    from zoo.avatar.pipeline import avatar_from_photo
    from zoo.body import AnnyBody
    from zoo.export.motion import load_motion
    from zoo.fit.anny_fit import FitSettings
    from zoo.preprocess import PhotoError, default_backends

    body = AnnyBody().eval()
    texturer = TextureFromPhoto.from_checkpoint(ckpt, config, body)
    detector, segmenter = default_backends()
    settings = FitSettings(steps=tuple(fit_steps)) if fit_steps else FitSettings()
    root = Path(work_dir or tempfile.mkdtemp(prefix="zoo-demo-"))

    def run(photo_path, motion_path=None):
        empty = [None] * 8
        if photo_path is None:
            return ["Upload a photo first.", *empty]
        try:
            motion = load_motion(motion_path, body) if motion_path else None
        except (OSError, ValueError) as error:
            return [f"**Cannot read this motion file:** {error}", *empty]
        out = root / uuid.uuid4().hex[:12]
        photo = Path(photo_path)
        try:
            result = avatar_from_photo(photo, out, body, detector, segmenter, texturer, motion, settings,
                                       progress=False, render_size=render_size)
        except (PhotoError, ValueError) as error:
            return [f"**Cannot make an avatar from this photo:** {error}", *empty]
        f = result.files
        key = photo.stem
        notes = "".join(f"\n- {w}" for w in result.warnings)
        text = (f"**Done.** Keypoint error {result.keypoint_px:.1f} px, fitted silhouette IoU {result.iou:.2f}."
                + (f"\n\nNotes:{notes}" if notes else ""))
        downloads = [f["avatar.glb"], f["rigged.glb"], f["motion.mp4"], f["texture"], f["anny"], f["smpl"]]
        return [text, str(out / "preprocess" / key / "keypoints.png"), f["overlay"], f["texture"], f["views.png"],
                f["turntable.gif"], f["motion.gif"], f["avatar.glb"], downloads]

    with gr.Blocks(title="zoo: photo to avatar") as app:
        gr.Markdown("# Photo to avatar\nUpload a photo of one person (whole body, standing). The zoo finds the "
                    "person (MediaPipe on LiteRT), fits the Anny body, predicts the UV texture and exports a "
                    "textured and a rigged GLB.")
        with gr.Row():
            photo = gr.Image(type="filepath", label="photo", elem_id="photo")
            with gr.Column():
                motion_file = gr.File(label="motion (optional .npz: Anny's format or AMASS SMPL-X / SMPL+H; "
                                      "default: a walk)", file_types=[".npz"], elem_id="motion_file")
                button = gr.Button("Make avatar", variant="primary", elem_id="run")
                message = gr.Markdown(elem_id="message")
        with gr.Row():
            keypoints = gr.Image(label="mask + keypoints", elem_id="keypoints")
            fit = gr.Image(label="body fit", elem_id="fit")
            texture = gr.Image(label="UV texture", elem_id="texture")
        with gr.Row():
            views = gr.Image(label="novel views", elem_id="views")
        with gr.Row():
            turntable = gr.Image(label="turntable", elem_id="turntable")
            motion = gr.Image(label="motion", elem_id="motion")
            model = gr.Model3D(label="3D (textured GLB)", elem_id="model3d")
        files = gr.File(label="downloads", file_count="multiple", elem_id="downloads")
        button.click(run, inputs=[photo, motion_file], outputs=[message, keypoints, fit, texture, views, turntable, motion, model,
                                                  files])
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="texture model checkpoint (e.g. the quick start's last.ckpt)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--fit-steps", type=int, nargs=3, default=None)
    parser.add_argument("--render-size", type=int, default=256)
    parser.add_argument("--work-dir", default=None, help="where results are written (default: a temp folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = build_app(args.ckpt, args.config, args.fit_steps, args.render_size, args.work_dir)
    except (FileNotFoundError, ImportError, ValueError) as error:
        sys.stderr.write(f"demo: {error}\n")
        return 2
    app.queue().launch(server_name=args.host, server_port=args.port, share=False, show_error=True,
                       allowed_paths=[str(Path(args.work_dir).resolve())] if args.work_dir else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
