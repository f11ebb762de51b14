"""Fetch the packaged MediaPipe models (`python -m zoo.preprocess.fetch`).

The person segmenter and the pose landmarker are Google's Apache-2.0 MediaPipe `.tflite` files,
run with the `ai-edge-litert` runtime (which installs beside wandb and protobuf >= 5, unlike the
`mediapipe` wheels). The files ship inside the `mediapipe` wheel on PyPI: this command asks pip
for that wheel (version pinned below, no dependencies), takes the three files out of it, checks
each against its pinned sha256 and caches them under `$ZOO_HOME/preprocess/mediapipe-<version>/`.
It is an install-time step (`.ci/run` runs it); nothing downloads at run time, and the photo path
says which command to run when the files are missing.

    python -m zoo.preprocess.fetch                  # pip download mediapipe==0.10.21, extract, verify
    python -m zoo.preprocess.fetch --wheel X.whl    # use a wheel you already have (offline)
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from zoo.utils.paths import zoo_home

log = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
# name -> (path inside the wheel, sha256 of the file). The files are identical in every platform
# wheel of this version.
MODEL_FILES: dict[str, tuple[str, str]] = {
    "pose_detection.tflite": ("mediapipe/modules/pose_detection/pose_detection.tflite",
                              "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "pose_landmark_full.tflite": ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    "selfie_segmentation.tflite": ("mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                                   "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
}
FETCH_COMMAND = "python -m zoo.preprocess.fetch"


def models_dir() -> Path:
    """Where the fetched files live: `$ZOO_HOME/preprocess/mediapipe-<version>`."""
    return zoo_home() / "preprocess" / f"mediapipe-{MEDIAPIPE_VERSION}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(name: str) -> Path:
    """The cached file `name` (a key of `MODEL_FILES`), or an error saying which command fetches it."""
    if name not in MODEL_FILES:
        raise ValueError(f"unknown preprocessing model {name!r}; known: {sorted(MODEL_FILES)}")
    path = models_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"preprocessing model not found: {path}. Run `{FETCH_COMMAND}` once (it takes the "
                                f"Apache-2.0 MediaPipe files out of the mediapipe=={MEDIAPIPE_VERSION} wheel on PyPI "
                                "and caches them under $ZOO_HOME); `--wheel <file.whl>` works offline.")
    return path


def extract(wheel: Path, dest: Path | None = None) -> dict[str, Path]:
    """Take the `MODEL_FILES` out of a mediapipe wheel into `dest`, checking every sha256."""
    dest = Path(dest) if dest is not None else models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, (member, sha) in MODEL_FILES.items():
            if member not in names:
                raise ValueError(f"{wheel} has no {member}: is it the mediapipe {MEDIAPIPE_VERSION} wheel?")
            tmp = dest / (name + ".partial")
            tmp.write_bytes(archive.read(member))
            found = _sha256(tmp)
            if found != sha:
                tmp.unlink()
                raise ValueError(f"{member} in {wheel} has sha256 {found}, expected {sha} (mediapipe "
                                 f"{MEDIAPIPE_VERSION}); refusing to cache it")
            tmp.replace(dest / name)
            out[name] = dest / name
    return out


def is_fetched(dest: Path | None = None) -> bool:
    """True when every model file is cached with its pinned sha256."""
    dest = Path(dest) if dest is not None else models_dir()
    return all((dest / n).is_file() and _sha256(dest / n) == sha for n, (_, sha) in MODEL_FILES.items())


def download_wheel(folder: Path) -> Path:
    """`pip download mediapipe==<version> --no-deps` into `folder` (install-time only)."""
    cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(folder)]
    subprocess.run(cmd, check=True)
    wheels = sorted(Path(folder).glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no mediapipe-{MEDIAPIPE_VERSION} wheel in {folder}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.preprocess.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, default=None, help="a mediapipe wheel already on disk (no pip)")
    parser.add_argument("--dest", type=Path, default=None, help="cache folder (default: $ZOO_HOME/preprocess/...)")
    parser.add_argument("--force", action="store_true", help="extract again even when the files are cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dest = args.dest or models_dir()
    if is_fetched(dest) and not args.force:
        log.info("MediaPipe %s models already cached in %s", MEDIAPIPE_VERSION, dest)
        return 0
    if args.wheel is not None:
        files = extract(args.wheel, dest)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            files = extract(download_wheel(Path(tmp)), dest)
    for name, path in files.items():
        log.info("%s -> %s", name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
