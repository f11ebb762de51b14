"""Synthetic people throughput: generation, loading, and the training step they must feed.

    python benchmarks/synthetic_data.py [--threads 2]

Generation renders a fresh dataset (views/s); loading iterates the cached dataset through a
DataLoader (items/s, including the per-item scatter of the partial texture); the training step
is the quick-start system's forward + backward + Adam step (items/s). Loading must outpace
training for the data never to be the bottleneck; generation happens once, before training.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from zoo.body import AnnyBody
from zoo.datamodules.datasets.synthetic_people import GenerationSettings, SyntheticPeople, generate
from zoo.modules.texture_unet import TextureUNet
from zoo.systems.texture_completion import TextureCompletionSystem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--identities", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    body = AnnyBody()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, tex in [((128, 64), 64), ((256, 256), 128)]:
            settings = GenerationSettings(num_identities=args.identities, views_per_identity=6, image_size=size,
                                          texture_size=tex, store_vertices=False)
            folder = Path(tmp) / f"{size[0]}x{size[1]}"
            start = time.perf_counter()
            generate(body, settings, folder, progress=False)
            gen = settings.num_identities * settings.views_per_identity / (time.perf_counter() - start)

            ds = SyntheticPeople(folder, "train")
            loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)
            start, n = time.perf_counter(), 0
            for _ in range(3):
                for batch in loader:
                    n += batch["image"].shape[0]
            load = n / (time.perf_counter() - start)

            system = TextureCompletionSystem(TextureUNet(extra_channels=0, base_channels=24, depth=3),
                                             use_position_code=False)
            opt = torch.optim.Adam(system.parameters(), lr=1e-3)
            batch = next(iter(loader))
            start, n = time.perf_counter(), 0
            for _ in range(5):
                texture = system(batch["partial"], batch["known_mask"])
                loss = system._losses(batch, texture)["total"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                n += batch["image"].shape[0]
            train = n / (time.perf_counter() - start)
            rows.append((f"{size[0]}x{size[1]} (texture {tex})", gen, load, train))
    print(f"CPU threads: {args.threads}")
    print()
    print("| views | generation views/s | loading items/s | quick-start training items/s | loading / training |")
    print("|---|---|---|---|---|")
    for name, gen, load, train in rows:
        print(f"| {name} | {gen:.1f} | {load:.0f} | {train:.1f} | {load / train:.1f}x |")


if __name__ == "__main__":
    main()
