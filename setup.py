"""Installable package for the zoo: `pip install -e ".[dev]"`."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

setup(
    name="zoo",
    version="0.1.0",
    description="A PyTorch Lightning model zoo for 3D human appearance from images "
    "(RefineTex, DINAR) built from reusable modules and YAML compositions.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["zoo", "zoo.*"]),
    include_package_data=True,
    install_requires=[
        "torch>=2.15",
        "torchvision>=0.29",
        "pytorch-lightning>=2.2",
        "torchmetrics>=1.3",
        "kornia>=0.7",
        "smplx>=0.1.28",
        "omegaconf>=2.3",
        "jsonargparse[signatures]>=4.27",
        "wandb>=0.16",
        "lpips>=0.1.4",
        "anny>=0.6",
        "safetensors>=0.4",
        "diffusers>=0.27",
        "numpy>=1.24",
        "numba>=0.60",  # the CPU rasteriser kernel (zoo/render/rasterize_cpu.py), compiled on its first call
        "pillow>=9.0",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "imageio-ffmpeg>=0.5",  # MP4 export (zoo.export.save_mp4): the wheel bundles an ffmpeg binary
        "ai-edge-litert>=2.0",  # runs the packaged MediaPipe models of zoo.preprocess (python -m zoo.preprocess.fetch)
    ],
    extras_require={
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "pytest-xdist>=3.5",
            "ruff>=0.6",
            "trimesh>=4.0",
            "embreex>=2.17",
            "scipy>=1.10",
            "pygltflib>=1.16",  # tests read the exported GLB files back
        ],
        # `python -m zoo demo` (a Gradio page); its browser test also needs selenium and Debian's chromium + chromium-driver
        "demo": ["gradio>=4.0", "selenium>=4.10"],
    },
    entry_points={"console_scripts": ["zoo=zoo.cli:main"]},
)
