"""docs/motion_retarget.png: an AMASS-style SMPL motion (written here in AMASS's layout, z up)
and the same frames retargeted onto Anny (`zoo.export.amass`), side by side.

    python scripts/motion_figure.py [--out docs/motion_retarget.png]

Top row: the SMPL skeleton (the idealised T-pose of `zoo.export.amass.TPOSE_JOINTS`, posed by
forward kinematics) as a stick figure (the person's left in red, right in blue); bottom row: Anny posed by the
retargeted file; both seen from 35 degrees to the person's left.
The motion (AMASS cannot be downloaded here): rest T-pose, arms down, a stride, a squat, a
jumping jack and a turn of the root by 90 degrees with a raised arm.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
Y_UP_FROM_Z_UP = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)
LEFT, RIGHT = {1, 4, 7, 10, 13, 16, 18, 20}, {2, 5, 8, 11, 14, 17, 19, 21}  # SMPL joints by side
YAW = 35.0  # both rows are seen from 35 degrees to the person's left


def _frame(**joints) -> np.ndarray:
    """One AMASS pose row (SMPL+H width 156): root standing up in AMASS's z-up world plus joint
    rotations given as joint=(axis, degrees) in SMPL's body axes (x: the person's left, y up)."""
    index = {"root": 0, "lhip": 1, "rhip": 2, "lknee": 4, "rknee": 5, "spine": 3, "lsho": 16, "rsho": 17,
             "lelb": 18, "relb": 19}
    pose = np.zeros(156)
    pose[:3] = [math.pi / 2, 0.0, 0.0]  # the body's y axis along the world's z
    for name, (axis, deg) in joints.items():
        vector = np.asarray(axis, dtype=np.float64)
        rotvec = vector / np.linalg.norm(vector) * math.radians(deg)
        if name == "root":  # a turn about the world's up axis, before standing the body up
            from scipy.spatial.transform import Rotation

            rotvec = (Rotation.from_rotvec(rotvec) * Rotation.from_rotvec(pose[:3])).as_rotvec()
        pose[3 * index[name]:3 * index[name] + 3] = rotvec
    return pose


X, Y, Z = (1, 0, 0), (0, 1, 0), (0, 0, 1)
MOTION = [
    _frame(),
    _frame(lsho=(Z, -75), rsho=(Z, 75)),
    _frame(lsho=(Z, -75), rsho=(Z, 75), lhip=(X, -35), rhip=(X, 25), rknee=(X, 30), lelb=(Y, -30)),
    _frame(lsho=(Z, -60), rsho=(Z, 60), lhip=(X, -80), rhip=(X, -80), lknee=(X, 100), rknee=(X, 100)),
    _frame(lsho=(Z, 60), rsho=(Z, -60), lhip=(Z, 25), rhip=(Z, -25)),
    _frame(root=(Z, 90), lsho=(Z, 70), rsho=(Z, 75)),
]
BONES = [(j, p) for j, p in enumerate((-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)) if p >= 0]


def stick_figure(joints: np.ndarray, centre_y: float, height: float, yaw_deg: float = YAW) -> np.ndarray:
    """(22, 3) joints seen from `yaw_deg` (0: the camera on +z, the person's left on the image's
    right; 90: the camera on the person's left), orthographic."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    scale = 0.85 * SIZE / height
    right = np.array([math.cos(math.radians(yaw_deg)), 0.0, -math.sin(math.radians(yaw_deg))])
    to_px = lambda p: ((SIZE - 1) / 2 + float(p @ right) * scale, (SIZE - 1) / 2 - (p[1] - centre_y) * scale)
    for j, p in BONES:
        colour = (200, 60, 60) if j in LEFT else (60, 60, 200) if j in RIGHT else (60, 60, 60)
        draw.line([to_px(joints[p]), to_px(joints[j])], fill=colour, width=4)
    for point in joints:
        x, y = to_px(point)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(0, 0, 0))
    return np.asarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "motion_retarget.png")
    args = parser.parse_args()
    from zoo.body import AnnyBody
    from zoo.body.controls import axis_angle_to_matrix
    from zoo.export import load_motion, render_textured
    from zoo.export.amass import SMPL_BODY_PARENTS, TPOSE_JOINTS

    body = AnnyBody().eval()
    poses = np.stack(MOTION)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "motion.npz"  # AMASS's layout
        np.savez(path, poses=poses, trans=np.zeros((len(poses), 3)), betas=np.zeros(16), mocap_framerate=np.array(30.0))
        motion = load_motion(path, body, fps=30.0)
    # the SMPL skeleton by forward kinematics (y up), independent of the retargeting
    local = axis_angle_to_matrix(torch.tensor(poses[:, :66]).reshape(-1, 22, 3))
    rest = torch.tensor(TPOSE_JOINTS)
    skeletons = []
    for f in range(len(poses)):
        glob, pos = [Y_UP_FROM_Z_UP @ local[f, 0]], [rest[0]]
        for j in range(1, 22):
            p = SMPL_BODY_PARENTS[j]
            glob.append(glob[p] @ local[f, j])
            pos.append(pos[p] + glob[p] @ (rest[j] - rest[p]))
        skeletons.append(torch.stack(pos).numpy())
    grey = torch.full((3, 8, 8), 0.8)
    with torch.no_grad():
        verts = body(pose=motion["pose"]).vertices
    y = verts[..., 1]
    centre = torch.tensor([0.0, float(y.max() + y.min()) / 2, 0.0])
    height = float(y.max() - y.min()) * 1.05
    tops = [stick_figure(s, float(s[:, 1].max() + s[:, 1].min()) / 2, height * 0.95) for s in skeletons]
    bottoms = [render_textured(v, body.faces, body.corner_uvs, grey, YAW, SIZE, centre=centre, height=height)
               for v in verts]
    gap = np.full((SIZE, 4, 3), 255, np.uint8)
    rows = [np.concatenate([x for t in row for x in (t, gap)][:-1], axis=1) for row in (tops, bottoms)]
    picture = np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(args.out)


if __name__ == "__main__":
    main()
