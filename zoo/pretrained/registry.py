"""Named pretrained modules: metadata as data, weights as local files.

Nothing is ever downloaded. A name resolves to a folder under the zoo cache
(`$ZOO_HOME`, default `~/.cache/zoo`), holding the `config.yaml` + `model.safetensors`
that `save_pretrained` writes. Entries say where the weights come from, so a missing
folder is an error that tells the user how to produce or obtain it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PretrainedEntry:
    """One named pretrained module.

    Args:
        name: registry name, also the folder name under `$ZOO_HOME`.
        class_path: dotted path of the module class the weights belong to.
        description: what the module is and what it was trained on.
        how_to_get: the command that produces the folder, or where to obtain it.
    """

    name: str
    class_path: str
    description: str
    how_to_get: str


REGISTRY: dict[str, PretrainedEntry] = {
    entry.name: entry
    for entry in [
        PretrainedEntry(
            name="reid-synthetic",
            class_path="zoo.modules.reid.SmallReID",
            description="Small ReID network trained by the zoo on the synthetic people identities; "
            "feeds the ReID perceptual / part-style losses and the CosSim metric out of the box.",
            how_to_get="python -m zoo fit --config configs/reid/synthetic.yaml "
            "(its checkpoint callback exports the module to $ZOO_HOME/reid-synthetic)",
        ),
        PretrainedEntry(
            name="reid-pcb-market1501",
            class_path="zoo.modules.reid.PCBReID",
            description="PCB ResNet-50 trained on Market-1501 (the network Texformer's losses use).",
            how_to_get="download the public PCB Market-1501 checkpoint yourself, then "
            "`python -m zoo.pretrained.convert pcb <checkpoint.pth>` writes $ZOO_HOME/reid-pcb-market1501",
        ),
        PretrainedEntry(
            name="reid-resnet50-market1501",
            class_path="zoo.modules.reid.TorchreidResNet50",
            description="torchreid ResNet-50 trained on Market-1501 (the network of Texformer's CosSim-R metric).",
            how_to_get="download a torchreid (KaiyangZhou/deep-person-reid) resnet50 Market-1501 checkpoint "
            "yourself, then `python -m zoo.pretrained.convert resnet50 <checkpoint.pth>` writes "
            "$ZOO_HOME/reid-resnet50-market1501",
        ),
        PretrainedEntry(
            name="texformer-smplmarket",
            class_path="zoo.modules.texformer.TexformerBackbone",
            description="Texformer's released weights (trained on SMPLMarket), converted to TexformerBackbone.",
            how_to_get="download Texformer's released texformer_ep500.pt (xuxy09/Texformer) yourself, then "
            "`python -m zoo.pretrained.convert texformer <texformer_ep500.pt>` writes $ZOO_HOME/texformer-smplmarket",
        ),
        PretrainedEntry(
            name="vqgan-synthetic-rgb-small",
            class_path="zoo.modules.vqgan.VQGAN",
            description="Small VQGAN on RGB UV textures of the synthetic people (CPU-sized).",
            how_to_get="python -m zoo fit --config configs/inpainting/vqgan_small.yaml",
        ),
    ]
}


def zoo_home() -> Path:
    """The zoo cache folder: `$ZOO_HOME`, else `~/.cache/zoo` (never the working directory)."""
    return Path(os.environ.get("ZOO_HOME", Path.home() / ".cache" / "zoo")).expanduser()


def _looks_like_path(text: str) -> bool:
    return os.path.isabs(text) or os.sep in text or text.startswith((".", "~"))


def export_folder(name_or_path: str | os.PathLike) -> Path:
    """Where to save a module: a bare name means `$ZOO_HOME/<name>` (so `from_pretrained(name)`
    finds it); anything with a separator, `~`, `.` or absolute is a path."""
    text = os.fspath(name_or_path)
    return Path(text).expanduser() if _looks_like_path(text) else zoo_home() / text


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Return the folder of a pretrained module given a path or a registry name.

    A path (absolute, or containing a path separator, or an existing folder) is used as is.
    A bare name is looked up under `$ZOO_HOME/<name>`; registry names know how to be produced.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.is_absolute() or os.sep in text or text.startswith(".")
    if path.is_dir() or looks_like_path:
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(
                f"{path} is not a saved zoo module: expected {path / 'config.yaml'} and "
                f"{path / 'model.safetensors'} (written by save_pretrained)"
            )
        return path
    folder = zoo_home() / text
    if (folder / "config.yaml").is_file():
        return folder
    if text in REGISTRY:
        entry = REGISTRY[text]
        raise FileNotFoundError(
            f"pretrained module {text!r} ({entry.description}) is not in the cache: expected "
            f"{folder}/config.yaml and model.safetensors. To get it: {entry.how_to_get}. "
            "Set $ZOO_HOME to use another cache folder."
        )
    known = ", ".join(sorted(REGISTRY)) or "none"
    raise FileNotFoundError(
        f"{text!r} is neither a folder with config.yaml nor a known pretrained name "
        f"(known: {known}); nothing is cached at {folder}"
    )
