"""Parameter counts of the RefineTex modules at the paper configuration, next to the paper's.

Builds every module from `refinetex_paper_config()` (the modules' defaults) and prints a table.
Paper figures: RefineTex 8.2 M and Texformer 7.6 M (RefineTex Table 2); the Texformer reference
code has about 7.5 M (implementation notes). Run:

    python benchmarks/refinetex_params.py
"""
from __future__ import annotations

from torch import nn

from zoo.modules.refiners import ConvRefiner
from zoo.modules.refinetex import refinetex_paper_config
from zoo.pretrained.config import import_class


def millions(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main() -> None:
    config = refinetex_paper_config()
    built = {name: import_class(config[name]["class_path"])(**config[name]["init_args"])
             for name in ("backbone", "refiner", "uncertainty")}
    backbone, refiner = built["backbone"], built["refiner"]
    rows = [(f"backbone.{name}", millions(child), None) for name, child in backbone.named_children()]
    rows += [
        ("backbone (Texformer)", millions(backbone), "7.6 (Table 2); ~7.5 reference code"),
        ("refiner (deformable)", millions(refiner), "~0.6 (8.2 - 7.6, not itemised)"),
        ("total: backbone + refiner", millions(backbone) + millions(refiner), "8.2 (Table 2)"),
        ("ablation: Conv Refine", millions(ConvRefiner()), "not given"),
        ("uncertainty head (training only)", millions(built["uncertainty"]), "not counted in 8.2"),
    ]
    print(f"RefineTex parameters, image {config['image_size'][0]}x{config['image_size'][1]}, "
          f"UV {config['uv_size'][0]}x{config['uv_size'][1]}")
    print(f"{'module':<34}{'ours (M)':>10}   paper (M)")
    for name, count, paper in rows:
        print(f"{name:<34}{count:>10.3f}   {paper or ''}")


if __name__ == "__main__":
    main()
